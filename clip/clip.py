"""Loading CLIP weights (OpenAI's published checkpoints, open_clip checkpoints or other local
files) and tokenizing text.

The names CoOp-style trainers call, with OpenAI's signatures and behaviour: `_MODELS`,
`_download`, `available_models`, `load`, `build_model`, `tokenize`. How to provide weights
(online, local path, offline cache, open_clip checkpoints): docs/clip.md.
"""

import contextlib
import functools
import hashlib
import json
import os
import urllib.error
import urllib.request
import warnings
import zipfile

import torch
from tqdm import tqdm

from .architecture import (
    ARCHIVE_ATTRIBUTE_KEYS,
    CLIPWeightsError,
    assumption_note,
    find_open_clip_config,
    infer_dimensions,
    openai_architecture,
    read_open_clip_config,
    resolve_architecture,
    unrecorded_facts,
)
from .model import build_model, convert_weights
from .simple_tokenizer import SimpleTokenizer

# OpenAI's checkpoints; the second-to-last path component of each URL is the file's SHA256.
_MODELS = {
    "RN50": "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": "https://openaipublic.azureedge.net/clip/models/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": "https://openaipublic.azureedge.net/clip/models/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
    "RN50x16": "https://openaipublic.azureedge.net/clip/models/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
    "RN50x64": "https://openaipublic.azureedge.net/clip/models/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
    "ViT-B/32": "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}

CACHE_DIR_ENV = "CLIP_CACHE_DIR"
# CLIP's image normalisation (per RGB channel, on [0, 1] pixels).
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
_CHUNK_BYTES = 1 << 20


class ContextLengthError(ValueError, RuntimeError):
    """A text longer than the context length: a RuntimeError as OpenAI's tokenize raises, and a
    ValueError (bad input)."""


def available_models():
    """Names accepted by `load` (besides local file paths)."""
    return list(_MODELS)


def default_cache_dir():
    """$CLIP_CACHE_DIR if set, else ~/.cache/clip."""
    return os.environ.get(CACHE_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "clip")


# --- Download and hash verification ----------------------------------------------------------
def _sidecar_path(path):
    return path + ".sha256.json"


def _file_sha256(path):
    """SHA256 of a file, remembered in a sidecar file keyed by the file's size and mtime, so an
    unchanged 335 MB checkpoint is hashed once, not on every start."""
    stat = os.stat(path)
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        with open(_sidecar_path(path)) as file:
            remembered = json.load(file)
        if {name: remembered.get(name) for name in key} == key:
            return remembered["sha256"]
    except (OSError, ValueError, KeyError):  # no sidecar yet, or an unreadable one: hash again
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    _remember_sha256(path, digest.hexdigest(), key)
    return digest.hexdigest()


def _remember_sha256(path, sha256, key):
    try:
        with open(_sidecar_path(path), "w") as file:
            json.dump({"sha256": sha256, **key}, file)
    except OSError as error:  # e.g. a read-only shared cache: correct, only slower next time
        warnings.warn(
            f"could not record the SHA256 of {path} in {_sidecar_path(path)} ({error}); "
            f"the file will be hashed again next time",
            stacklevel=2,
        )


def _download(url, root=None):
    """Path of the checkpoint at `url` in the cache directory (root, else $CLIP_CACHE_DIR, else
    ~/.cache/clip), downloaded with a progress bar if it is missing or does not match the
    SHA256 in its URL. Raises RuntimeError when offline (saying which file to put where) or
    when the downloaded file's SHA256 is wrong."""
    root = root or default_cache_dir()
    os.makedirs(root, exist_ok=True)
    filename = os.path.basename(url)
    expected_sha256 = url.split("/")[-2]
    target = os.path.join(root, filename)
    if os.path.isfile(target):
        found_sha256 = _file_sha256(target)
        if found_sha256 == expected_sha256:
            return target
        warnings.warn(
            f"{target} has SHA256 {found_sha256}, expected {expected_sha256}: downloading it again", stacklevel=2
        )

    partial = target + ".part"
    digest = hashlib.sha256()
    with open(partial, "wb") as output:
        try:
            with urllib.request.urlopen(url) as source:
                total = int(source.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, desc=filename, unit="B", unit_scale=True, unit_divisor=1024) as progress:
                    while chunk := source.read(_CHUNK_BYTES):
                        output.write(chunk)
                        digest.update(chunk)
                        progress.update(len(chunk))
        except (urllib.error.URLError, OSError) as error:
            output.close()
            os.remove(partial)
            reason = getattr(error, "reason", error)
            raise CLIPWeightsError(
                f"Could not download {url} ({reason}).\nTo run offline, put the file {filename} "
                f"(SHA256 {expected_sha256}) at {os.path.abspath(target)}; the cache directory is "
                f"${CACHE_DIR_ENV} if set, else ~/.cache/clip. Or pass the path of a local checkpoint "
                f"file instead of the model name (clip.load(path), config MODEL.BACKBONE.PATH)."
            ) from None
    if digest.hexdigest() != expected_sha256:
        os.remove(partial)
        raise CLIPWeightsError(
            f"SHA256 mismatch for {filename} downloaded from {url} to {target}: "
            f"expected {expected_sha256}, got {digest.hexdigest()} (file deleted)"
        )
    os.replace(partial, target)
    stat = os.stat(target)
    _remember_sha256(target, expected_sha256, {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return target


# --- Reading checkpoint files ----------------------------------------------------------------
def _is_torchscript_archive(path):
    """TorchScript archives are zip files with a constants.pkl record (torch.save files have none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())


def _is_safetensors(path):
    """safetensors files start with the length of their JSON header (8 bytes, little endian), then '{'."""
    with open(path, "rb") as file:
        head = file.read(9)
    return len(head) == 9 and head[8:] == b"{" and 0 < int.from_bytes(head[:8], "little") <= os.path.getsize(path)


def _read_safetensors(path):
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CLIPWeightsError(
            f"{path} is a safetensors file: install the safetensors package (pip install -r requirements.txt)"
        ) from None
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CLIPWeightsError(f"{path}: not a readable safetensors file: {error}") from None


def read_state_dict(path):
    """The weights in a checkpoint file, as a state dict.

    Formats: a TorchScript archive (OpenAI's files; only its state dict is read, the TorchScript
    model is not run), a safetensors file, or a torch.save'd state dict, possibly nested under
    "state_dict" (open_clip's training checkpoints). A "module." prefix on every key
    (DistributedDataParallel) is removed.
    """
    if _is_torchscript_archive(path):
        with warnings.catch_warnings():  # the deprecation concerns running TorchScript; only tensors are read
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
            return torch.jit.load(path, map_location="cpu").state_dict()
    if _is_safetensors(path):
        checkpoint = _read_safetensors(path)
    else:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for files it cannot read
            raise CLIPWeightsError(
                f"{path}: not a TorchScript archive, a safetensors file nor a state dict readable by "
                f"torch.load(weights_only=True) ({type(error).__name__}: {error})"
            ) from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise CLIPWeightsError(
            f"{path}: expected a state dict (a dict of tensors, possibly under 'state_dict'), "
            f"got {type(checkpoint).__name__}"
        )
    if not all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        raise CLIPWeightsError(
            f"{path}: expected a state dict (a dict of tensors, possibly under 'state_dict'), "
            f"got dict with keys {list(checkpoint)[:5]}"
        )
    if checkpoint and all(key.startswith("module.") for key in checkpoint):
        checkpoint = {key[len("module.") :]: value for key, value in checkpoint.items()}
    return checkpoint


@contextlib.contextmanager
def _naming(path):
    """Prefix the file's path to the CLIPWeightsErrors raised inside (about its state dict)."""
    try:
        yield
    except CLIPWeightsError as error:
        raise CLIPWeightsError(f"{path}: {error}") from None


def build_model_from_file(path, quick_gelu=None, vision_heads=None, text_heads=None):
    """The CLIP of a checkpoint file (float storage as in the file, CPU, eval mode).

    Its architecture comes from the file's record and the caller (see
    architecture.resolve_architecture): OpenAI's TorchScript archives are OpenAI's architecture;
    other files give it through an open_clip_config.json next to them or the three arguments.
    What neither gives is OpenAI's architecture (QuickGELU, heads of 64), as OpenAI's clip.load
    assumes for every file; one printed line names the assumption and how to override it.
    Errors are CLIPWeightsError naming the file.
    """
    state_dict = read_state_dict(path)
    with _naming(path):
        dims = infer_dimensions(state_dict)
    record, record_name = None, None
    if all(key in state_dict for key in ARCHIVE_ATTRIBUTE_KEYS):
        record, record_name = openai_architecture(dims), "OpenAI's TorchScript archive format"
    elif config_path := find_open_clip_config(path):
        record, record_name = read_open_clip_config(config_path, dims), config_path
    given = dict(quick_gelu=quick_gelu, vision_heads=vision_heads, text_heads=text_heads)
    with _naming(path):
        architecture = resolve_architecture(dims, record, record_name, **given)
        model = build_model(state_dict, **architecture)
    assumed = unrecorded_facts(record, **given)
    if assumed:
        print(assumption_note(path, architecture, assumed))
    return model


def _convert_image_to_rgb(image):
    return image.convert("RGB")


def image_transform(resolution):
    """CLIP's preprocessing for PIL images: bicubic resize of the short side, center crop, RGB,
    [0, 1] tensor (3, resolution, resolution), normalised with CLIP's mean and std."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    return Compose(
        [
            Resize(resolution, interpolation=InterpolationMode.BICUBIC),
            CenterCrop(resolution),
            _convert_image_to_rgb,
            ToTensor(),
            Normalize(IMAGE_MEAN, IMAGE_STD),
        ]
    )


def load(
    name_or_path, device=None, jit=False, download_root=None, *, quick_gelu=None, vision_heads=None, text_heads=None
):
    """(model, preprocess) for a model name (see available_models) or a local checkpoint file, as
    OpenAI's clip.load(jit=False).

    A name is downloaded to (or found in) the cache (download_root, else $CLIP_CACHE_DIR, else
    ~/.cache/clip) and its SHA256 verified; a local path is read as is (never hashed or
    downloaded). device: default "cuda" if available, else "cpu". On the CPU the model is
    float32; on other devices it has OpenAI's mixed fp16 storage (convert_weights). jit=True is
    not supported. quick_gelu / vision_heads / text_heads: the architecture facts that weights do
    not record, for files that do not record them either (see build_model_from_file); None =
    from the file, else OpenAI's (QuickGELU, heads of 64), as OpenAI's clip.load assumes, with a
    printed line that says so.
    """
    if jit:
        raise ValueError(
            "jit=True is not supported: this package builds its own model (which takes "
            "prompts) from the checkpoint's weights; call clip.load(..., jit=False)"
        )
    if name_or_path in _MODELS:
        path = _download(_MODELS[name_or_path], download_root)
    elif os.path.isfile(name_or_path):
        path = name_or_path
    else:
        raise CLIPWeightsError(
            f"{name_or_path!r} is neither a model name ({', '.join(available_models())}) "
            f"nor an existing checkpoint file"
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model_from_file(path, quick_gelu=quick_gelu, vision_heads=vision_heads, text_heads=text_heads)
    model = model.float() if device.type == "cpu" else convert_weights(model.float(), torch.float16)
    return model.to(device), image_transform(model.visual.input_resolution)


@functools.lru_cache(maxsize=1)
def _default_tokenizer():
    return SimpleTokenizer()


def tokenize(texts, context_length=77, truncate=False):
    """texts (a string or a list of strings) -> LongTensor (N, context_length) of token ids:
    start-of-text, the text's tokens, end-of-text, zero padding.

    A text longer than context_length tokens (start and end included) raises ContextLengthError
    (a RuntimeError as OpenAI's, and a ValueError), or with truncate=True is cut to
    context_length tokens whose last one is end-of-text. As in OpenAI's, "<|startoftext|>" and
    "<|endoftext|>" in a text are those tokens."""
    tokenizer = _default_tokenizer()
    if isinstance(texts, str):
        texts = [texts]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = [tokenizer.sot_token_id, *tokenizer.encode(text), tokenizer.eot_token_id]
        if len(tokens) > context_length:
            if not truncate:
                raise ContextLengthError(
                    f"Input text {text!r} is {len(tokens)} tokens long (start and end of "
                    f"text included), more than context_length={context_length}; shorten it "
                    f"or pass truncate=True"
                )
            tokens = tokens[: context_length - 1] + [tokenizer.eot_token_id]
        result[row, : len(tokens)] = torch.tensor(tokens)
    return result
