"""clip/clip.py: loading checkpoints (TorchScript archives, state-dict files, cache by name), the
architecture record that plain files need, precision by device, SHA256 verification and its
cache, the offline error, preprocessing. No network: urlopen is replaced by fakes. open_clip's
own checkpoint files: test_clip_open_clip.py."""

import hashlib
import io
import os
import re
import urllib.error
import urllib.request

import pytest
import torch
from PIL import Image

import clip
from clip import clip as clip_loading
from tests.tiny_clip import open_clip_config, save_tiny_clip, tiny_vit_state_dict, write_open_clip_config


def assert_holds(model, state_dict):
    loaded = model.state_dict()
    assert set(loaded) == set(state_dict)
    assert all(torch.equal(loaded[key], value) for key, value in state_dict.items())  # copies, no arithmetic


@pytest.mark.parametrize("resnet", [False, True], ids=["vit", "resnet"])
def test_torchscript_archive_loads_by_path(tmp_path, resnet):
    path = str(tmp_path / "tiny.pt")
    state_dict = save_tiny_clip(path, jit=True, resnet=resnet)
    archive_keys = set(clip_loading.read_state_dict(path))
    assert archive_keys == set(state_dict) | {"input_resolution", "context_length", "vocab_size"}  # as OpenAI's
    model, preprocess = clip.load(path, device="cpu")
    assert_holds(model, state_dict)
    assert not model.training
    assert preprocess(Image.new("RGB", (50, 40))).shape == (
        3,
        model.visual.input_resolution,
        model.visual.input_resolution,
    )


def test_state_dict_files_load_by_path_plain_nested_and_prefixed(tmp_path):
    path = str(tmp_path / "tiny_state_dict.pt")
    state_dict = save_tiny_clip(path)
    assert_holds(clip.load(path, device="cpu")[0], state_dict)
    # an open_clip / DistributedDataParallel training checkpoint
    nested = str(tmp_path / "epoch_1.pt")
    torch.save(
        {"epoch": 1, "name": "tiny", "state_dict": {"module." + key: value for key, value in state_dict.items()}},
        nested,
    )
    assert_holds(clip.load(nested, device="cpu")[0], state_dict)


def test_local_path_is_never_hashed_or_downloaded(tmp_path, monkeypatch):
    path = str(tmp_path / "tiny.pt")
    state_dict = save_tiny_clip(path)

    def forbidden(*args, **kwargs):
        raise AssertionError("a local checkpoint must not be hashed or downloaded")

    monkeypatch.setattr(clip_loading, "_download", forbidden)
    monkeypatch.setattr(clip_loading, "_file_sha256", forbidden)
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    assert_holds(clip.load(path, device="cpu")[0], state_dict)


def test_cpu_load_of_fp16_checkpoint_is_fp32(tmp_path):
    path = str(tmp_path / "tiny_fp16.pt")
    state_dict = {key: value.half() for key, value in save_tiny_clip(path).items()}
    torch.save(state_dict, path)
    model, _ = clip.load(path, device="cpu")
    assert {value.dtype for value in model.state_dict().values()} == {torch.float32}


def test_bad_arguments_and_files_are_reported(tmp_path):
    with pytest.raises(ValueError, match="jit=True is not supported"):
        clip.load("ViT-B/16", jit=True)
    with pytest.raises(
        clip.CLIPWeightsError, match=r"'ViT-Q/99' is neither a model name \(RN50, .*ViT-L/14@336px\) nor an existing"
    ):
        clip.load("ViT-Q/99")
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(clip.CLIPWeightsError, match="notes.pt: not a TorchScript archive, a safetensors file nor a"):
        clip.load(str(not_a_checkpoint))
    optimizer_only = tmp_path / "optimizer.pt"
    torch.save({"lr": 0.1, "step": 3}, optimizer_only)
    with pytest.raises(
        clip.CLIPWeightsError, match=r"optimizer.pt: expected a state dict .* got dict with keys \['lr', 'step'\]"
    ):
        clip.load(str(optimizer_only))


def test_a_state_dict_that_is_not_clip_names_the_file_and_what_is_missing(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "fc.weight": torch.zeros(10, 4)}, path)
    with pytest.raises(
        clip.CLIPWeightsError,
        match=rf"^{re.escape(str(path))}: not a CLIP state dict in OpenAI's layout: no 'text_projection' "
        r"\(keys found: conv1.weight, fc.weight\)$",
    ):
        clip.load(str(path), device="cpu")
    # A prompt-learner checkpoint given as the backbone by mistake: nested, other keys.
    learner = tmp_path / "model.pth.tar-5"
    torch.save({"state_dict": {"ctx": torch.zeros(4, 64)}, "epoch": 5, "optimizer": {"state": {}}}, learner)
    with pytest.raises(
        clip.CLIPWeightsError, match=rf"^{re.escape(str(learner))}: not a CLIP state dict .* no 'text_projection'"
    ):
        clip.load(str(learner), device="cpu")


def features(model, seed=0):
    """encode_image and encode_text of a tiny CLIP on fixed inputs."""
    generator = torch.Generator().manual_seed(seed)
    resolution = model.visual.input_resolution
    images = torch.randn(2, 3, resolution, resolution, generator=generator)
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(clip.tokenize(["a red circle.", "a photo of a dog."]))


def backbone_config(path, **keys):
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.MODEL.BACKBONE.PATH = str(path)
    for key, value in keys.items():
        cfg.MODEL.BACKBONE[key] = value
    return cfg


def test_a_plain_openai_state_dict_loads_as_openai_with_one_line(tmp_path, capsys):
    """torch.save(model.state_dict()) of an OpenAI-layout CLIP (a fine-tuned CLIP, a re-saved
    OpenAI file) loads as OpenAI's clip.load loads it: QuickGELU, heads of 64, one line saying so."""
    from trainers.backbone import load_clip_to_cpu

    original = clip.build_model(tiny_vit_state_dict(seed=4, vision_width=128, transformer_width=128))
    assert original.visual.transformer.resblocks[0].attn.num_heads == 2
    path = tmp_path / "finetuned.pt"
    torch.save(original.state_dict(), path)
    expected = features(original)
    capsys.readouterr()
    for load in (lambda: clip.load(str(path), device="cpu")[0], lambda: load_clip_to_cpu(backbone_config(path))):
        model = load()
        line = capsys.readouterr().out
        assert line == (
            f"Note: {path} does not record its architecture: assuming OpenAI's (activation QuickGELU, "
            "vision heads 2, text heads 2, 64 wide), as OpenAI's clip.load does. For other weights set "
            "MODEL.BACKBONE.ACTIVATION gelu (LAION's and most other open_clip models), "
            "MODEL.BACKBONE.VISION_HEADS, MODEL.BACKBONE.TEXT_HEADS (clip.load: quick_gelu=, vision_heads=, "
            "text_heads=), or put the model's open_clip_config.json beside the file\n"
        )
        assert_holds(model, original.state_dict())
        for got, want in zip(features(model), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_the_record_and_the_keys_still_win_over_the_assumption(tmp_path, capsys):
    from trainers.backbone import load_clip_to_cpu

    state_dict = tiny_vit_state_dict(seed=4, vision_width=128, transformer_width=128)
    plain = tmp_path / "plain" / "weights.pt"
    plain.parent.mkdir()
    torch.save(state_dict, plain)
    capsys.readouterr()
    # Explicit keys: exact GELU and 4 text heads, as given; the line names only what was assumed.
    model = load_clip_to_cpu(backbone_config(plain, ACTIVATION="gelu", TEXT_HEADS=4))
    assert type(model.transformer.resblocks[0].mlp.gelu) is torch.nn.GELU
    assert model.transformer.resblocks[0].attn.num_heads == 4
    assert model.visual.transformer.resblocks[0].attn.num_heads == 2
    line = capsys.readouterr().out
    assert "assuming OpenAI's (vision heads 2, 64 wide)" in line and "ACTIVATION" not in line
    model, _ = clip.load(str(plain), device="cpu", quick_gelu=False, vision_heads=1, text_heads=1)
    assert type(model.visual.transformer.resblocks[0].mlp.gelu) is torch.nn.GELU
    assert capsys.readouterr().out == ""  # nothing assumed, nothing said
    # An open_clip_config.json beside the file: its architecture (here exact GELU, 1 text head), silently.
    recorded = tmp_path / "recorded" / "weights.pt"
    recorded.parent.mkdir()
    torch.save(state_dict, recorded)
    write_open_clip_config(str(recorded.parent), open_clip_config(state_dict, quick_gelu=False, text_heads=1))
    model = load_clip_to_cpu(backbone_config(recorded))
    assert type(model.transformer.resblocks[0].mlp.gelu) is torch.nn.GELU
    assert model.transformer.resblocks[0].attn.num_heads == 1
    assert capsys.readouterr().out == ""
    with pytest.raises(clip.CLIPWeightsError, match=r"ACTIVATION \(clip.load's quick_gelu\) gives quick_gelu, but"):
        load_clip_to_cpu(backbone_config(recorded, ACTIVATION="quick_gelu"))


def test_widths_that_openai_rule_cannot_split_still_need_the_keys(tmp_path):
    path = str(tmp_path / "weights.pt")
    state_dict = tiny_vit_state_dict(vision_width=80)  # 80 = 1 head of 80, but no whole number of 64-wide heads
    torch.save(state_dict, path)
    with pytest.raises(clip.CLIPWeightsError) as error:
        clip.load(path, device="cpu")
    message = str(error.value)
    assert message.startswith(
        f"{path}: the weights do not record the vision heads, no open_clip_config.json lies next to them, "
        "and OpenAI's rule (heads of 64) does not fit: set MODEL.BACKBONE.VISION_HEADS (width 80: 64 does not divide it"
    )
    assert message.endswith("(clip.load: vision_heads=)")
    model, _ = clip.load(path, device="cpu", vision_heads=1)
    assert_holds(model, state_dict)


def test_a_setting_that_contradicts_the_file_is_an_error(tmp_path):
    archive = str(tmp_path / "archive.pt")
    save_tiny_clip(archive, jit=True)
    with pytest.raises(
        clip.CLIPWeightsError,
        match=r"MODEL.BACKBONE.ACTIVATION \(clip.load's quick_gelu\) gives gelu, but OpenAI's TorchScript archive "
        r"format says quick_gelu",
    ):
        clip.load(archive, device="cpu", quick_gelu=False)
    assert clip.load(archive, device="cpu", quick_gelu=True, vision_heads=1, text_heads=1)[0] is not None  # agrees
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    save_tiny_clip(str(recorded / "weights.pt"))
    with pytest.raises(
        clip.CLIPWeightsError, match=r"VISION_HEADS \(clip.load's vision_heads\) gives 2, but .*json says 1"
    ):
        clip.load(str(recorded / "weights.pt"), device="cpu", vision_heads=2)


@pytest.mark.parametrize("jit", [False, True], ids=["state_dict", "archive"])
def test_non_cpu_devices_get_openai_mixed_fp16_storage(tmp_path, jit):
    """As OpenAI's clip.load(jit=False) on CUDA, checked on the meta device (no GPU needed):
    fp16 matmul weights and projections, fp32 norms, embeddings and logit scale."""
    path = str(tmp_path / "tiny.pt")
    save_tiny_clip(path, jit=jit)
    model, _ = clip.load(path, device="meta")
    dtypes = {key: value.dtype for key, value in model.state_dict().items()}
    assert {value.device.type for value in model.state_dict().values()} == {"meta"}
    assert model.dtype == torch.float16
    for key in ("visual.conv1.weight", "visual.proj", "text_projection", "transformer.resblocks.0.attn.in_proj_bias"):
        assert dtypes[key] == torch.float16, key
    for key in ("ln_final.weight", "token_embedding.weight", "positional_embedding", "logit_scale"):
        assert dtypes[key] == torch.float32, key


def test_model_names_are_openai_checkpoints_with_their_sha256():
    assert clip.available_models() == [
        "RN50",
        "RN101",
        "RN50x4",
        "RN50x16",
        "RN50x64",
        "ViT-B/32",
        "ViT-B/16",
        "ViT-L/14",
        "ViT-L/14@336px",
    ]
    for url in clip._MODELS.values():
        assert url.startswith("https://openaipublic.azureedge.net/clip/models/") and url.endswith(".pt")
        assert len(url.split("/")[-2]) == 64 and int(url.split("/")[-2], 16) >= 0


# --- Download and verification ---------------------------------------------------------------
class FakeResponse(io.BytesIO):
    def __init__(self, payload):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def serve(monkeypatch, payload):
    """urlopen returns `payload`; returns the list of URLs requested."""
    requested = []

    def fake_urlopen(url, *args, **kwargs):
        requested.append(url)
        return FakeResponse(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


def url_for(payload, filename="Tiny.pt"):
    return f"https://example.invalid/clip/models/{hashlib.sha256(payload).hexdigest()}/{filename}"


def test_download_verifies_caches_and_reuses_the_hash(tmp_path, monkeypatch):
    payload = b"tiny checkpoint bytes" * 1000
    requested, url = serve(monkeypatch, payload), url_for(payload)
    path = clip._download(url, root=str(tmp_path))
    assert path == str(tmp_path / "Tiny.pt") and open(path, "rb").read() == payload
    assert sorted(os.listdir(tmp_path)) == ["Tiny.pt", "Tiny.pt.sha256.json"]  # no .part left
    # Second start: found in the cache, verified from the sidecar without hashing or downloading.
    monkeypatch.setattr(clip_loading.hashlib, "sha256", lambda *a: pytest.fail("re-hashed an unchanged file"))
    assert clip._download(url, root=str(tmp_path)) == path
    assert len(requested) == 1


def test_changed_cached_file_is_rehashed_and_downloaded_again(tmp_path, monkeypatch):
    payload = b"the right bytes"
    requested = serve(monkeypatch, payload)
    path = clip._download(url_for(payload), root=str(tmp_path))
    with open(path, "wb") as file:  # corrupted after verification: size and mtime change
        file.write(b"corrupted")
    with pytest.warns(UserWarning, match=f"Tiny.pt has SHA256 {hashlib.sha256(b'corrupted').hexdigest()}, expected"):
        assert clip._download(url_for(payload), root=str(tmp_path)) == path
    assert len(requested) == 2 and open(path, "rb").read() == payload


def test_wrong_hash_after_download_is_reported(tmp_path, monkeypatch):
    serve(monkeypatch, b"tampered bytes")
    url = url_for(b"expected bytes")
    with pytest.raises(clip.CLIPWeightsError) as error:
        clip._download(url, root=str(tmp_path))
    message = str(error.value)
    assert "SHA256 mismatch for Tiny.pt" in message and str(tmp_path / "Tiny.pt") in message
    assert f"expected {hashlib.sha256(b'expected bytes').hexdigest()}" in message
    assert f"got {hashlib.sha256(b'tampered bytes').hexdigest()}" in message
    assert os.listdir(tmp_path) == []


def test_offline_without_the_file_says_which_file_to_put_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "cache"))
    url = clip._MODELS["ViT-B/16"]
    with pytest.raises(clip.CLIPWeightsError) as error:
        clip.load("ViT-B/16", device="cpu")
    message = str(error.value)
    assert f"Could not download {url} ([Errno -3] Temporary failure in name resolution)" in message
    assert f"put the file ViT-B-16.pt (SHA256 {url.split('/')[-2]}) at {tmp_path / 'cache' / 'ViT-B-16.pt'}" in message
    assert "$CLIP_CACHE_DIR" in message and "MODEL.BACKBONE.PATH" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no urllib traceback
    assert os.listdir(tmp_path / "cache") == []


def test_load_by_name_from_cache_directory_offline(tmp_path, monkeypatch):
    checkpoint = tmp_path / "checkpoint.pt"
    state_dict = save_tiny_clip(str(checkpoint), jit=True)
    payload = checkpoint.read_bytes()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "Tiny.pt").write_bytes(payload)
    monkeypatch.setitem(clip._MODELS, "Tiny", url_for(payload))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded a cached file"))
    monkeypatch.setenv("CLIP_CACHE_DIR", str(cache))
    assert_holds(clip.load("Tiny", device="cpu")[0], state_dict)
    other = tmp_path / "other"
    other.mkdir()
    (other / "Tiny.pt").write_bytes(payload)
    assert_holds(clip.load("Tiny", device="cpu", download_root=str(other))[0], state_dict)  # root wins
    assert (other / "Tiny.pt.sha256.json").exists()


def test_default_cache_directory(monkeypatch):
    monkeypatch.delenv("CLIP_CACHE_DIR", raising=False)
    assert clip_loading.default_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "clip")
    monkeypatch.setenv("CLIP_CACHE_DIR", "/somewhere/else")
    assert clip_loading.default_cache_dir() == "/somewhere/else"


def test_preprocess_resizes_crops_converts_and_normalises():
    preprocess = clip_loading.image_transform(32)
    gray = Image.new("L", (64, 48), color=128)  # converted to RGB; short side 48 -> 32, crop 32 x 32
    pixels = preprocess(gray)
    mean, std = torch.tensor(clip_loading.IMAGE_MEAN), torch.tensor(clip_loading.IMAGE_STD)
    assert pixels.shape == (3, 32, 32)
    assert torch.allclose(pixels, ((128 / 255 - mean) / std)[:, None, None].expand(3, 32, 32), atol=1e-5)
