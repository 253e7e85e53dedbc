"""What the documentation quotes from the code stays what the code does: where make demo's
default methods come from (docs/scripts.md), the full-disk messages and the CPU half mode's note (docs/engine.md), the
line of a CLIP file loaded as OpenAI's architecture (docs/clip.md)."""

import errno
import io
import os
import os.path as osp
import re

import pytest

from dassl.engine import precision as precision_module
from dassl.utils.logger import Logger, LogWriteError
from dassl.utils.torchtools import CheckpointWriteError, save_checkpoint

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def read(name):
    with open(osp.join(REPO, name), encoding="utf-8") as f:
        return " ".join(f.read().split())  # paragraphs as one line: quotes may wrap


def test_scripts_md_says_where_make_demo_takes_its_methods_from():
    """The demo's methods are the registry's (no list in the docs to keep up to date by hand)."""
    text = read("docs/scripts.md")
    assert "every method whose `scripts/<method>/env.sh` sets `DEMO_SEEDS`" in text
    assert "`python -m tools.methods demo` lists them" in text
    assert 'default `"ZeroshotCLIP ALIGN"`' not in text


class FullFile:
    """A file object whose writes fail with ENOSPC."""

    closed = False

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_the_full_disk_lines_of_engine_md_are_the_code_s(tmp_path):
    text = read("docs/engine.md")
    # The checkpoint line, as the example path gives it.
    documented = re.search(r'Error: Cannot write checkpoint "([^"]+)": No space left on device', text)
    assert documented
    if not osp.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    folder = tmp_path / "MultiModalPromptLearner"
    folder.mkdir()
    (folder / "model.pth.tar-3.tmp").symlink_to("/dev/full")
    with pytest.raises(CheckpointWriteError) as error:
        save_checkpoint({"state_dict": {}, "epoch": 3}, str(folder))
    assert str(error.value) == f'Cannot write checkpoint "{folder / "model.pth.tar-3"}": No space left on device'
    # The log line.
    logger = Logger(str(tmp_path / "log.txt"), console=io.StringIO())
    logger.file.close()
    logger.file = FullFile()
    with pytest.raises(LogWriteError) as error:
        logger.write("epoch [2/3]\n")
    example = str(error.value).replace(str(tmp_path / "log.txt"), "output/run/log.txt")
    assert f"Error: {example}" in text


def test_the_cpu_half_note_of_engine_md_is_the_code_s(monkeypatch, capsys):
    monkeypatch.setenv(precision_module.CPU_HALF_ENV, "1")
    monkeypatch.setattr(precision_module, "_warned_fallbacks", set())
    precision_module.resolve_precision("fp16", "cpu")
    assert capsys.readouterr().out.strip() in read("docs/engine.md")


def test_the_architecture_note_of_clip_md_is_the_code_s():
    from clip.architecture import SETTINGS, assumption_note

    vit_b16 = {"quick_gelu": True, "vision_heads": 12, "text_heads": 8}  # OpenAI's ViT-B/16: widths 768 and 512
    assert assumption_note("/data/finetuned_vit_b16.pt", vit_b16, list(SETTINGS)) in read("docs/clip.md")
