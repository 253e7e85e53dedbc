"""The learning rate of every epoch of a short ALIGN run through train.py, against the closed form
of the shipped recipe's schedule (SGD 0.0025, one constant warmup epoch at 1e-5, then cosine over
OPTIM.MAX_EPOCH with the warmup recounted). Read from the public behaviour only (the iteration lines
of log.txt), so that it holds whatever ALIGN's internals look like; it catches a scheduler stepped
every batch instead of every epoch, or not at all. (The lr after the run is no check: stepped every
batch, cosine over MAX_EPOCH epochs of 3 batches comes back to the same value, being periodic.)"""

import math
import os.path as osp
import re

import pytest

from tests.engine_toys import make_toy_images, run_train_py
from tests.tiny_clip import save_tiny_clip

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECIPE = osp.join(REPO, "configs/trainers/ALIGN/vit_b16_c2_ep20_batch4_2ctx.yaml")
EPOCHS = 4
BATCHES = 3  # 12 training images, batch 4 (the recipe's)
LINE = re.compile(r"^epoch \[(\d+)/\d+\] batch \[(\d+)/(\d+)\] .* lr (\S+) eta ", flags=re.M)


def recipe_lr(epoch):
    """The lr of 0-based ``epoch`` (the value it has after ``epoch`` scheduler steps)."""
    if epoch < 1:
        return 1e-5
    return 0.0025 * (1 + math.cos(math.pi * (epoch - 1) / EPOCHS)) / 2


@pytest.fixture(scope="module")
def align_run(tmp_path_factory):
    """The recipe for EPOCHS epochs on the toy images with a tiny CLIP: its log.txt."""
    data_root = make_toy_images(str(tmp_path_factory.mktemp("data")))
    clip_path = str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
    save_tiny_clip(clip_path, seed=1, vision_layers=2, transformer_layers=2)
    out = tmp_path_factory.mktemp("out")
    argv = [
        "--root",
        data_root,
        "--output-dir",
        str(out),
        "--trainer",
        "ALIGN",
        "--seed",
        "1",
        "--config-file",
        RECIPE,
        "DATASET.NAME",
        "ToyColors",
        "USE_CUDA",
        "False",
        "INPUT.SIZE",
        "(32, 32)",
        "INPUT.TRANSFORMS",
        "['normalize']",
        "DATALOADER.NUM_WORKERS",
        "0",
        "DATALOADER.TEST.BATCH_SIZE",
        "9",
        "OPTIM.MAX_EPOCH",
        str(EPOCHS),
        "TRAIN.PRINT_FREQ",
        "1",
        "MODEL.BACKBONE.PATH",
        clip_path,
        "TRAINER.ALIGN.PREC",
        "fp32",
        "TRAINER.ALIGN.TEXT_PROMPT_DEPTH",
        "2",
        "TRAINER.ALIGN.TEXT_PROMPT_NUMBER",
        "2",
        "TRAINER.ALIGN.VISION_PROMPT_NUMBER",
        "2",
    ]
    assert run_train_py(argv) == 0
    return (out / "log.txt").read_text()


def test_every_epoch_trains_at_the_closed_form_lr(align_run):
    log = align_run
    lines = [(int(e), int(b), int(n), float(lr)) for e, b, n, lr in LINE.findall(log)]
    assert len(lines) == EPOCHS * BATCHES and {n for _, _, n, _ in lines} == {BATCHES}
    # The line of a batch is printed after its step. Before the last batch of an epoch no scheduler
    # step is due, so those lines show the lr the epoch trains at; the last batch's line comes after
    # the epoch's step (Dassl's order) and is left out. 4 significant digits are printed.
    for epoch, batch, _, lr in lines:
        if batch < BATCHES:
            assert lr == pytest.approx(recipe_lr(epoch - 1), rel=1e-4), (epoch, batch)
