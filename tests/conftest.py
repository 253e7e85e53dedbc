"""Fixtures shared by the trainer tests (pytest finds them by name; a test module may define its
own fixture of the same name to change it, e.g. a CLIP of other widths).

- ``data_root``: the engine's ToyColors images (3 classes, 8x8 px; tests/engine_toys.py), one
  tree per test module.
- ``clip_path``: the tiny OpenAI-layout CLIP of the trainer tests (3 blocks per tower, text width
  64, vision width 128; tests/deep_prompt_runs.py: save_clip), one file per test module.
"""

import pytest

from tests.deep_prompt_runs import save_clip
from tests.engine_toys import make_toy_images


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(make_toy_images(str(tmp_path_factory.mktemp("data"))))


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return save_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
