"""open_clip checkpoints loaded by path (clip.load, MODEL.BACKBONE.PATH) against open_clip itself.

Random open_clip models with the architecture of LAION's ViT-B/16 and ViT-H/14 (exact GELU; H/14:
80-wide vision heads) and of open_clip's RN50-quickgelu, at tiny widths and depths, are written as
open_clip's Hugging Face repositories hold them (open_clip_pytorch_model.bin, open_clip_model.safetensors and
open_clip_config.json, the config written by open_clip's own writer), and as plain or nested
state dicts without the config. open_clip reads the same folder back ("local-dir:") as the
reference.
"""

import copy
import json
import re
import shutil

import pytest
import torch

import clip
from dassl.config import ConfigError, get_cfg_default
from tests.test_clip_model import randomized
from trainers.backbone import load_clip_to_cpu

open_clip = pytest.importorskip("open_clip")
safetensors_torch = pytest.importorskip("safetensors.torch")
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME  # noqa: E402
from open_clip.push_to_hf_hub import save_config_for_hf  # noqa: E402

TEXTS = ["a photo of a great white shark.", "a red circle", "Ã¼ber cafÃ© ☕"]

# open_clip's own configs of the LAION models, shrunk: depths 2, small widths with the same head
# layout (B/16: 64-wide heads in both towers; H/14: 80-wide vision heads, 64-wide text heads).
# H/14's vision width 320 is 4 heads of 80, but 5 of 64: OpenAI's rule would silently be wrong.
SHRUNK = {
    "ViT-B-16": dict(
        embed_dim=64,
        vision_cfg=dict(layers=2, width=128, image_size=32),
        text_cfg=dict(width=128, heads=2, layers=2),
    ),
    "ViT-H-14": dict(
        embed_dim=64,
        vision_cfg=dict(layers=2, width=320, image_size=28),
        text_cfg=dict(width=128, heads=2, layers=2),
    ),
    "RN50-quickgelu": dict(
        embed_dim=32,
        vision_cfg=dict(layers=[1, 1, 1, 1], width=8, image_size=64),
        text_cfg=dict(width=64, heads=1, layers=2),
    ),
}
HEADS = {"ViT-B-16": (2, 2), "ViT-H-14": (4, 2), "RN50-quickgelu": (4, 1)}  # (vision, text)
ACTIVATION = {"ViT-B-16": "gelu", "ViT-H-14": "gelu", "RN50-quickgelu": "quick_gelu"}


def tiny_config(name):
    model_cfg = copy.deepcopy(open_clip.get_model_config(name))
    model_cfg["embed_dim"] = SHRUNK[name]["embed_dim"]
    for tower in ("vision_cfg", "text_cfg"):
        model_cfg[tower].update(SHRUNK[name][tower])
    return model_cfg


@pytest.fixture(scope="module", params=list(SHRUNK))
def hub_folder(request, tmp_path_factory):
    """(name, folder): a random tiny model saved as open_clip's Hugging Face repositories hold it."""
    name = request.param
    model_cfg = tiny_config(name)
    assert model_cfg.get("quick_gelu", False) == (ACTIVATION[name] == "quick_gelu")
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**model_cfg)
    model.load_state_dict(randomized(model.state_dict()))
    model.visual.image_mean, model.visual.image_std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    folder = tmp_path_factory.mktemp(name)
    torch.save(model.state_dict(), folder / HF_WEIGHTS_NAME)
    safetensors_torch.save_file(model.state_dict(), str(folder / HF_SAFE_WEIGHTS_NAME))
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=model_cfg)
    return name, folder


@pytest.fixture(scope="module")
def reference(hub_folder):
    """open_clip's model read back from the folder by open_clip, and inputs."""
    _, folder = hub_folder
    model = open_clip.create_model(f"local-dir:{folder}").eval()
    resolution = tiny_config(hub_folder[0])["vision_cfg"]["image_size"]
    images = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))
    text = open_clip.get_tokenizer("ViT-B-16")(TEXTS)
    with torch.no_grad():
        features = model.encode_image(images), model.encode_text(text)
    return images, text, features


def assert_matches(model, reference, atol=1e-5):
    images, text, (image_features, text_features) = reference
    assert torch.equal(clip.tokenize(TEXTS), text)  # integer ids: exact
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), image_features, rtol=0, atol=atol)
        torch.testing.assert_close(model.encode_text(text), text_features, rtol=0, atol=atol)


def config(path, **keys):
    """The default config with MODEL.BACKBONE.PATH and other MODEL.BACKBONE keys set."""
    cfg = get_cfg_default()
    cfg.MODEL.BACKBONE.PATH = str(path)
    for key, value in keys.items():
        cfg.MODEL.BACKBONE[key] = value
    return cfg


@pytest.mark.parametrize("filename", [HF_WEIGHTS_NAME, HF_SAFE_WEIGHTS_NAME])
def test_hub_files_load_with_the_architecture_of_their_config(hub_folder, reference, filename):
    name, folder = hub_folder
    model, _ = clip.load(str(folder / filename), device="cpu")
    vision_heads, text_heads = HEADS[name]
    if name.startswith("RN"):
        assert model.visual.attnpool.num_heads == vision_heads
    else:
        assert model.visual.transformer.resblocks[0].attn.num_heads == vision_heads
    assert model.transformer.resblocks[0].attn.num_heads == text_heads
    activation = type(model.transformer.resblocks[0].mlp.gelu)
    assert activation is (clip.model.QuickGELU if ACTIVATION[name] == "quick_gelu" else torch.nn.GELU)
    assert_matches(model, reference)
    # The trainers' path: MODEL.BACKBONE.PATH alone, float32 on the CPU in eval mode.
    model = load_clip_to_cpu(config(folder / filename))
    assert model.dtype == torch.float32 and not model.training
    assert_matches(model, reference)


def test_plain_and_nested_files_without_the_config_need_the_keys(hub_folder, reference, tmp_path, capsys):
    name, folder = hub_folder
    vision_heads, text_heads = HEADS[name]
    state_dict = torch.load(folder / HF_WEIGHTS_NAME, weights_only=True)
    plain = tmp_path / f"{name}.pt"
    shutil.copy(folder / HF_WEIGHTS_NAME, plain)
    # Without the keys: OpenAI's architecture, as OpenAI's clip.load assumes, said in one line that
    # names the keys. Right for open_clip's -quickgelu models; LAION's exact GELU (and ViT-H/14's
    # 80-wide heads) need the keys: the assumption gives other features.
    capsys.readouterr()
    assumed = load_clip_to_cpu(config(plain))
    note = capsys.readouterr().out
    assert note.startswith(f"Note: {plain} does not record its architecture: assuming OpenAI's (activation QuickGELU")
    assert "MODEL.BACKBONE.ACTIVATION gelu (LAION's" in note and note.count("\n") == 1
    if name == "RN50-quickgelu":
        assert_matches(assumed, reference)
    else:
        with pytest.raises(AssertionError):
            assert_matches(assumed, reference, atol=1e-3)
    keys = dict(ACTIVATION=ACTIVATION[name], VISION_HEADS=vision_heads, TEXT_HEADS=text_heads)
    assert_matches(load_clip_to_cpu(config(plain, **keys)), reference)

    # open_clip's training checkpoint: nested, DistributedDataParallel prefix, optimiser state.
    nested = tmp_path / "epoch_3.pt"
    prefixed = {f"module.{key}": value for key, value in state_dict.items()}
    torch.save({"epoch": 3, "name": "run", "state_dict": prefixed, "optimizer": {"state": {}}}, nested)
    assert_matches(load_clip_to_cpu(config(nested, **keys)), reference)
    safetensors = tmp_path / "weights.safetensors"
    safetensors_torch.save_file(state_dict, str(safetensors))
    quick_gelu = ACTIVATION[name] == "quick_gelu"
    model, _ = clip.load(
        str(safetensors), device="cpu", quick_gelu=quick_gelu, vision_heads=vision_heads, text_heads=text_heads
    )
    assert_matches(model, reference)

    # The wrong activation or head count gives other features: these settings matter.
    other = "quick_gelu" if ACTIVATION[name] == "gelu" else "gelu"
    wrong = load_clip_to_cpu(config(plain, **dict(keys, ACTIVATION=other)))
    with pytest.raises(AssertionError):
        assert_matches(wrong, reference, atol=1e-3)


def test_the_config_must_describe_these_weights_and_openai_architecture(hub_folder, tmp_path):
    name, folder = hub_folder
    weights = tmp_path / HF_WEIGHTS_NAME
    shutil.copy(folder / HF_WEIGHTS_NAME, weights)
    hub_config = json.loads((folder / "open_clip_config.json").read_text())
    config_path = tmp_path / "open_clip_config.json"

    def write_changed(tower, **options):
        changed = copy.deepcopy(hub_config)
        changed["model_cfg"][tower].update(options)
        config_path.write_text(json.dumps(changed))

    write_changed("text_cfg", layers=3)
    with pytest.raises(
        clip.CLIPWeightsError, match=rf"^{re.escape(str(config_path))}: text_cfg.layers = 3, but the weights next to it"
    ):
        clip.load(str(weights), device="cpu")
    write_changed("text_cfg", pool_type="last")
    with pytest.raises(clip.CLIPWeightsError, match=r"text_cfg.pool_type = 'last' is not supported: .*OpenAI's archi"):
        clip.load(str(weights), device="cpu")
    write_changed("vision_cfg", head_width=48)
    with pytest.raises(clip.CLIPWeightsError, match=r"vision head_width 48 / text heads \d+ do not divide the widths"):
        clip.load(str(weights), device="cpu")
    config_path.write_text("{not json")
    with pytest.raises(clip.CLIPWeightsError, match=r"open_clip_config.json: not a readable open_clip model config"):
        clip.load(str(weights), device="cpu")
    config_path.write_text(json.dumps(hub_config))
    other = "quick_gelu" if ACTIVATION[name] == "gelu" else "gelu"
    with pytest.raises(
        clip.CLIPWeightsError,
        match=rf"ACTIVATION \(clip.load's quick_gelu\) gives {other}, but .*json says {ACTIVATION[name]}$",
    ):
        load_clip_to_cpu(config(weights, ACTIVATION=other))


def test_bad_backbone_keys_are_config_errors(tmp_path):
    with pytest.raises(
        ConfigError, match=r"MODEL.BACKBONE.ACTIVATION = 'relu' is invalid: use quick_gelu, gelu, or ''"
    ):
        load_clip_to_cpu(config(tmp_path / "any.pt", ACTIVATION="relu"))
    with pytest.raises(ConfigError, match=r"MODEL.BACKBONE.TEXT_HEADS = -1 is invalid"):
        load_clip_to_cpu(config(tmp_path / "any.pt", TEXT_HEADS=-1))
