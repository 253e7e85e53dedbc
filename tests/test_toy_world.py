"""The toy world: ToyShapes dataset tree, its loader, and the committed tiny CLIP.

tools/toy_world.py renders the tree, datasets/toy_shapes.py loads it, and
tools/pretrain_toy_clip.py pretrains (deterministically) the checkpoint in tools/assets/.
"""

import filecmp
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clip
from dassl.data.datasets import DatasetLayoutError
from dassl.utils import read_json
from datasets.toy_shapes import CLASSNAMES, COLOURS, NUM_BASE, SHAPES, ToyShapes, class_pairs
from tools import pretrain_toy_clip, toy_world

CHECKPOINT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "tools", "assets", "toy_clip.pt")
TINY_SPLITS = {"train": 2, "val": 1, "test": 1}


def toy_cfg(root, num_shots=-1, subsample="all", seed=1):
    dataset = SimpleNamespace(ROOT=root, NUM_SHOTS=num_shots, SUBSAMPLE_CLASSES=subsample)
    return SimpleNamespace(DATASET=dataset, SEED=seed)


def tree_files(dataset_dir):
    """Relative paths of every file under ``dataset_dir``, sorted."""
    return sorted(
        osp.relpath(osp.join(folder, name), dataset_dir) for folder, _, names in os.walk(dataset_dir) for name in names
    )


@pytest.fixture(scope="module")
def demo_tree(tmp_path_factory):
    """The full tree the demo uses (default seed and sizes)."""
    root = str(tmp_path_factory.mktemp("toy_data"))
    toy_world.write_toy_world(root, toy_world.DEFAULT_SEED)
    return root


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Single-threaded torch: on a busy 2-core machine two threads make these tiny ops ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_clip():
    return clip.load(CHECKPOINT, device="cpu")[0]


# --- classes ----------------------------------------------------------------------------------


def test_class_order_puts_every_attribute_in_base_and_only_novel_pairs_in_new():
    pairs = class_pairs()
    assert len(pairs) == len(set(pairs)) == len(COLOURS) * len(SHAPES) == 36
    assert NUM_BASE == 18
    base, new = pairs[:NUM_BASE], pairs[NUM_BASE:]
    assert {colour for colour, _ in base} == set(COLOURS)
    assert {shape for _, shape in base} == set(SHAPES)
    assert not set(base) & set(new)
    # Balanced: every colour and every shape has three classes in each half.
    for half in (base, new):
        assert all(sum(c == colour for c, _ in half) == 3 for colour in COLOURS)
        assert all(sum(s == shape for _, s in half) == 3 for shape in SHAPES)
    assert CLASSNAMES[0] == "red circle" and CLASSNAMES[NUM_BASE] == "red star"


# --- the rendered tree ------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_another_seed_other_images(tmp_path):
    dirs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        dirs[name] = toy_world.write_toy_world(str(tmp_path / name), seed, TINY_SPLITS)
    files = tree_files(dirs["a"])
    assert len(files) == 36 * 4 + 1
    assert files == tree_files(dirs["b"]) == tree_files(dirs["c"])
    match, mismatch, errors = filecmp.cmpfiles(dirs["a"], dirs["b"], files, shallow=False)
    assert len(match) == len(files) and not mismatch and not errors

    images = [f for f in files if f.endswith(".png")]
    _, differ, _ = filecmp.cmpfiles(dirs["a"], dirs["c"], images, shallow=False)
    assert len(differ) == len(images)
    json_a, json_c = (osp.join(dirs[k], "split_zhou_ToyShapes.json") for k in "ac")
    assert filecmp.cmp(json_a, json_c, shallow=False)  # the split lists paths, not pixels


def test_tree_layout_counts_and_split_file(demo_tree):
    dataset_dir = osp.join(demo_tree, "toy_shapes")
    image_dir = osp.join(dataset_dir, "images")
    assert sorted(os.listdir(dataset_dir)) == ["images", "split_zhou_ToyShapes.json"]
    assert sorted(os.listdir(image_dir)) == sorted(c.replace(" ", "_") for c in CLASSNAMES)
    for folder in os.listdir(image_dir):
        assert sorted(os.listdir(osp.join(image_dir, folder))) == [f"{i:04d}.png" for i in range(56)]

    split = read_json(osp.join(dataset_dir, "split_zhou_ToyShapes.json"))
    assert list(split) == ["train", "val", "test"]
    assert [len(split[k]) for k in split] == [36 * 24, 36 * 8, 36 * 24]
    assert split["train"][0] == ["red_circle/0000.png", 0, "red circle"]
    assert split["val"][0] == ["red_circle/0024.png", 0, "red circle"]
    assert split["test"][-1] == ["purple_cross/0055.png", 35, "purple cross"]
    for entries in split.values():
        assert all(CLASSNAMES[label] == name for _, label, name in entries)
    with Image.open(osp.join(image_dir, split["test"][0][0])) as image:
        assert image.mode == "RGB" and image.size == (toy_world.IMAGE_SIZE, toy_world.IMAGE_SIZE)


def test_files_hold_exactly_the_in_memory_renders(demo_tree):
    images, labels = toy_world.render_split("val", toy_world.DEFAULT_SEED)
    split = read_json(osp.join(demo_tree, "toy_shapes", "split_zhou_ToyShapes.json"))
    assert [label for _, label, _ in split["val"]] == labels.tolist()
    for k in (0, 143, 287):
        path = osp.join(demo_tree, "toy_shapes", "images", split["val"][k][0])
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), images[k])


def test_cluttered_images_differ_from_clean_renders():
    """The dataset images carry noise and clutter: far more fine detail than clean renders."""
    clutter, _ = toy_world.render_split("val", 1, {"val": 4})
    clean, _ = toy_world.render_clean(1, 4)

    def detail(images):  # mean absolute difference of horizontally adjacent pixels
        return np.abs(np.diff(images.astype(np.float32), axis=2)).mean()

    assert detail(clutter) > 3 * detail(clean)


# --- the dataset loader -----------------------------------------------------------------------


def test_loader_few_shot_and_base_new_halves(demo_tree):
    everything = ToyShapes(toy_cfg(demo_tree))
    assert (len(everything.train_x), len(everything.val), len(everything.test)) == (864, 288, 864)
    assert everything.classnames == list(CLASSNAMES)

    base = ToyShapes(toy_cfg(demo_tree, num_shots=16, subsample="base"))
    assert osp.isfile(osp.join(demo_tree, "toy_shapes", "split_fewshot", "shot_16-seed_1.pkl"))
    assert (len(base.train_x), len(base.val), len(base.test)) == (18 * 16, 18 * 4, 18 * 24)
    assert base.classnames == list(CLASSNAMES[:NUM_BASE])

    new = ToyShapes(toy_cfg(demo_tree, num_shots=16, subsample="new"))
    assert new.classnames == list(CLASSNAMES[NUM_BASE:])
    assert sorted({item.label for item in new.test}) == list(range(18))
    base_pairs = {tuple(name.split()) for name in base.classnames}
    new_pairs = {tuple(name.split()) for name in new.classnames}
    assert {c for c, _ in base_pairs} == set(COLOURS) and {s for _, s in base_pairs} == set(SHAPES)
    assert not base_pairs & new_pairs
    # Same few-shot items whichever half is asked for (one cache, as the CoOp datasets).
    assert {item.impath for item in base.train_x} < {item.impath for item in everything.train_x}


def test_missing_split_file_names_the_generator(tmp_path):
    os.makedirs(tmp_path / "toy_shapes" / "images")
    with pytest.raises(DatasetLayoutError) as error:
        ToyShapes(toy_cfg(str(tmp_path)))
    message = str(error.value)
    assert str(tmp_path / "toy_shapes" / "split_zhou_ToyShapes.json") in message
    assert "python -m tools.toy_world --root" in message


def test_split_file_with_another_label_order_is_rejected(tmp_path):
    dataset_dir = toy_world.write_toy_world(str(tmp_path), 1, TINY_SPLITS)
    split_path = osp.join(dataset_dir, "split_zhou_ToyShapes.json")
    split = read_json(split_path)
    for entries in split.values():
        for entry in entries:
            entry[2] = CLASSNAMES[(entry[1] + 1) % 36]
    with open(split_path, "w") as f:
        import json

        json.dump(split, f)
    with pytest.raises(DatasetLayoutError, match="label order"):
        ToyShapes(toy_cfg(str(tmp_path)))


# --- the tiny CLIP ----------------------------------------------------------------------------


def test_contrastive_loss_matches_a_loop_over_pairs():
    torch.manual_seed(0)
    image = F.normalize(torch.randn(2, 5, 8), dim=-1)
    text = F.normalize(torch.randn(2, 5, 8), dim=-1)
    logit_scale = torch.tensor(2.0)
    expected = []
    for g in range(2):
        for i in range(5):
            logits_i = torch.exp(logit_scale) * (image[g, i] @ text[g].T)
            logits_t = torch.exp(logit_scale) * (text[g, i] @ image[g].T)
            expected.append(-torch.log_softmax(logits_i, 0)[i] / 2 - torch.log_softmax(logits_t, 0)[i] / 2)
    actual = pretrain_toy_clip.contrastive_loss(image, text, logit_scale)
    torch.testing.assert_close(actual, torch.stack(expected).mean())


def test_dihedral_matches_numpy_rotations_and_flips():
    images = torch.arange(8 * 2 * 3 * 3, dtype=torch.float32).view(8, 2, 3, 3)
    codes = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    actual = pretrain_toy_clip.dihedral(images, codes)
    for i, code in enumerate(codes.tolist()):
        expected = np.rot90(images[i].numpy(), k=code % 4, axes=(1, 2))
        expected = expected[:, :, ::-1] if code >= 4 else expected
        np.testing.assert_array_equal(actual[i].numpy(), expected)


def test_short_captions_and_trained_rows_give_the_full_models_text_features(toy_clip):
    """Pretraining encodes captions cut after their end-of-text token, embedding only the rows
    it trains: the same features as the 77-token captions through the model's own embedding."""
    tokens = pretrain_toy_clip.caption_tokens(pretrain_toy_clip.TEMPLATES)[:3].flatten(0, 1)
    full = clip.tokenize([t.format(name) for name in CLASSNAMES[:3] for t in pretrain_toy_clip.TEMPLATES])
    assert tokens.shape[1] < 77 and torch.equal(full[:, : tokens.shape[1]], tokens)
    embeddings = pretrain_toy_clip.CaptionEmbeddings(toy_clip.token_embedding, tokens)
    with torch.no_grad():
        short = toy_clip.encode_text(tokens, prompt_embeddings=embeddings(tokens))
        torch.testing.assert_close(short, toy_clip.encode_text(full), rtol=1e-5, atol=1e-5)


def test_random_prompt_vectors_barely_move_the_committed_models_features(toy_clip):
    """What the prompted half of pretraining is for: prompt learners start from features close
    to the plain ones (mean cosine > 0.99 in both towers; 0.95 and 0.91 for a model pretrained
    on plain inputs only)."""
    generator = torch.Generator().manual_seed(0)
    images, _ = toy_world.render_split("val", toy_world.DEFAULT_SEED, {"val": 1})
    pixels = pretrain_toy_clip.to_pixels(images)
    plain = pretrain_toy_clip.caption_tokens(("a photo of a {}.",))[:, 0]
    prompted = pretrain_toy_clip.caption_tokens(("X X of a {}.",))[:, 0]
    embeddings = pretrain_toy_clip.CaptionEmbeddings(toy_clip.token_embedding, prompted)
    with torch.no_grad():
        image_pairs = (
            toy_clip.encode_image(pixels),
            pretrain_toy_clip.encode_prompted_images(toy_clip, pixels, generator),
        )
        text_pairs = (
            toy_clip.encode_text(plain),
            pretrain_toy_clip.encode_prompted_captions(toy_clip, embeddings, prompted, generator),
        )
    for a, b in (image_pairs, text_pairs):
        assert F.cosine_similarity(a, b, dim=-1).mean() > 0.99


def test_pretraining_is_deterministic_from_its_seed():
    runs = [pretrain_toy_clip.pretrain(seed, steps=2, renders_per_class=2, log_every=0) for seed in (5, 5, 6)]
    states = [run.state_dict() for run in runs]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not torch.equal(states[0]["visual.proj"], states[2]["visual.proj"])


def test_committed_checkpoint_is_small_fp16_and_loads(toy_clip):
    assert osp.getsize(CHECKPOINT) < 10 * 2**20
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    assert {value.dtype for value in state.values()} == {torch.float16}
    assert clip.model.infer_dimensions(state) == pretrain_toy_clip.ARCHITECTURE
    assert toy_clip.visual.input_resolution == toy_world.IMAGE_SIZE


def test_zero_shot_accuracy_matches_clip_forward(toy_clip):
    images, labels = toy_world.render_split("val", toy_world.DEFAULT_SEED, {"val": 3})
    accuracy = pretrain_toy_clip.zero_shot_accuracy(toy_clip, images, labels)
    tokens = clip.tokenize([pretrain_toy_clip.ZERO_SHOT_TEMPLATE.format(name) for name in CLASSNAMES])
    with torch.no_grad():
        logits, _ = toy_clip(pretrain_toy_clip.to_pixels(images), tokens)
    for half, classes in (("base", range(0, NUM_BASE)), ("new", range(NUM_BASE, 36))):
        correct = [
            classes[int(logits[i, list(classes)].argmax())] == labels[i]
            for i in range(len(labels))
            if labels[i] in classes
        ]
        assert accuracy[half] == pytest.approx(100.0 * np.mean(correct))


def read_items(items):
    """uint8 images (N, H, W, 3) and labels (N,) of a list of Datum."""
    images = np.stack([np.asarray(Image.open(item.impath).convert("RGB")) for item in items])
    return images, np.array([item.label for item in items])


def test_zero_shot_accuracy_on_the_demo_test_set_leaves_room_to_learn(demo_tree, toy_clip):
    """Zero-shot inside 25-75% on both halves; a 16-shot linear probe gains >= 10 points on base."""
    dataset = ToyShapes(toy_cfg(demo_tree))
    test_images, test_labels = read_items(dataset.test)
    accuracy = pretrain_toy_clip.zero_shot_accuracy(toy_clip, test_images, test_labels)
    assert 25 <= accuracy["base"] <= 75 and 25 <= accuracy["new"] <= 75, accuracy

    train_images, train_labels = read_items(dataset.train_x)
    keep = pretrain_toy_clip.first_base_shots(train_labels, 16)
    assert np.bincount(train_labels[keep]).tolist() == [16] * NUM_BASE
    probe = pretrain_toy_clip.linear_probe_accuracy(
        toy_clip, train_images[keep], train_labels[keep], test_images, test_labels
    )
    assert probe >= accuracy["base"] + 10, (probe, accuracy)
