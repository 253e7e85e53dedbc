"""What a log says about the run that wrote it, besides its result.

- **The model files**: an evaluation (``--eval-only``) logs one line per model file it loaded, and
  a training run one line per model file its final test deployed::

      Model file of MultiModalPromptLearner: OUT/.../seed1/MultiModalPromptLearner/model.pth.tar-20 (sha256 <64 hex>)

  so that a test result is tied to the model it evaluated: the scripts evaluate again when the
  training folder's model is another one now, and ``parse_test_res.py --base2new`` never pairs a
  New with the Base of another model.
- **The request**: every start logs ``Run request: <sha256>``, a fingerprint of its command line
  (without the paths that do not change a result: ``--root``, ``--output-dir``, ``--model-dir``,
  ``--load-epoch``, ``--resume``) and of the contents of its config files. The same request gives
  the same config, so a skipped run is checked without building a config (which imports torch).
- **The effective config**: every log holds the config dump that train.py prints (``** Config **``,
  yacs' text form); a finished run's settings are compared with those asked for now on that text.

This module imports no torch (the scripts call it once per run step): the names of the engine's
checkpoint files are repeated here (tests/test_sweeps.py checks them against dassl.utils).
"""

import hashlib
import os
import os.path as osp
import re
from dataclasses import dataclass, field

# dassl.utils.torchtools' file names (the pointer file names the newest resumable epoch).
POINTER_NAME = "checkpoint"
BEST_MODEL_NAME = "model-best.pth.tar"
EPOCH_FILE = re.compile(r"model\.pth\.tar-(\d+)")
# The line of a training log whose final test used model-best.pth.tar (TEST.FINAL_MODEL best_val).
DEPLOY_BEST_LINE = "Deploy the model with the best val performance"

MODEL_LINE = re.compile(r"^Model file of (\S+): (.*) \(sha256 ([0-9a-f]{64})\)$")
REQUEST_PREFIX = "Run request: "
CONFIG_BANNER = "** Config **"
CONFIG_LINE = re.compile(r"^( *)([A-Za-z0-9_]+):(?: (.*))?$")

# train.py flags that do not change what a run computes (their value is left out of the request).
PATH_FLAGS = ("--root", "--output-dir", "--model-dir", "--load-epoch", "--resume")
FILE_FLAGS = ("--config-file", "--dataset-config-file")

# Config keys that do not change a result: never compared between a finished run and a request.
IGNORED_KEYS = (
    "OUTPUT_DIR",
    "DATASET.ROOT",
    "RESUME",
    "DATALOADER.NUM_WORKERS",
    "TRAIN.PRINT_FREQ",
    "TRAIN.CHECKPOINT_FREQ",
    "TRAIN.RESUME_CHANGED_CONFIG",
    "USE_CUDA",
    "VERBOSE",
)
# ... and, for an evaluation, the keys (or nodes, ending with ".") that only training reads: the
# evaluated model is checked by its file's hash.
TRAINING_ONLY_KEYS = (
    "OPTIM.",
    "TRAIN.",
    "DATALOADER.TRAIN_X.",
    "DATALOADER.TRAIN_U.",
    "DATALOADER.K_TRANSFORMS",
    "MODEL.INIT_WEIGHTS",
    "TEST.FINAL_MODEL",
)


class ModelNotFound(Exception):
    """A training folder holds no model to evaluate; the message says what is missing."""


def file_sha256(path):
    """The sha256 of a file's contents (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_file_line(name, path):
    """The log line that identifies the model file ``path`` of the registered model ``name``."""
    return f"Model file of {name}: {path} (sha256 {file_sha256(path)})"


def _selected(key, selection):
    return any(key == wanted or (wanted.endswith(".") and key.startswith(wanted)) for wanted in selection)


def request_fingerprint(argv):
    """The fingerprint (sha256 hex) of a train.py command line ``argv`` (without the program):
    its tokens, less the values of PATH_FLAGS, with each config file replaced by a hash of its
    contents. Two requests with the same fingerprint build the same config (same code)."""
    tokens, index = [], 0
    while index < len(argv):
        token = argv[index]
        flag, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if flag in PATH_FLAGS or flag in FILE_FLAGS:
            if not equals:
                index += 1
                value = argv[index] if index < len(argv) else ""
            if flag in FILE_FLAGS:
                try:
                    tokens += [flag, file_sha256(value)]
                except OSError:
                    tokens += [flag, "unreadable " + value]
        else:
            tokens.append(token)
        index += 1
    return hashlib.sha256("\0".join(tokens).encode()).hexdigest()


def request_line(argv):
    return REQUEST_PREFIX + request_fingerprint(argv)


def flat_config(lines):
    """{full key: value as printed} of yacs' text form of a config (``str(cfg)``, two spaces per
    level); reading stops at the first line of another form."""
    lines = list(lines)
    flat, path = {}, []  # path: [(indent, name)] of the open nodes
    for number, line in enumerate(lines):
        match = CONFIG_LINE.match(line.rstrip("\n"))
        if match is None:
            break
        indent, name, value = len(match.group(1)), match.group(2), match.group(3)
        while path and path[-1][0] >= indent:
            path.pop()
        following = CONFIG_LINE.match(lines[number + 1].rstrip("\n")) if number + 1 < len(lines) else None
        if following is not None and len(following.group(1)) > indent:  # a node: its keys follow
            path.append((indent, name))
        else:
            flat[".".join([p for _, p in path] + [name])] = (value or "").strip()
    return flat


@dataclass(frozen=True)
class LogFacts:
    """What ``read_log_facts`` found in a log.

    models: {registered model name: (sha256, path)}, the last line per name. request: the
    fingerprint, or None (a log of an older version). config: {key: value as printed}, or None
    when the log holds no config dump. deployed_best: a training log whose final test used
    model-best.pth.tar.
    """

    models: dict = field(default_factory=dict)
    request: str | None = None
    config: dict | None = None
    deployed_best: bool = False


def read_log_facts(path):
    """The LogFacts of the log file ``path``. Raises OSError when it cannot be read."""
    models, request, config_lines, deployed_best = {}, None, None, False
    state = "before"  # before the config dump, "banner" on its closing rule, "config" inside it, "after"
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if state == "before" and line.strip() == CONFIG_BANNER:
                state = "banner"
                continue
            if state == "banner":
                state, config_lines = "config", []
                continue
            if state == "config":
                if CONFIG_LINE.match(line):
                    config_lines.append(line)
                    continue
                state = "after"
            stripped = line.strip()
            if stripped.startswith(REQUEST_PREFIX):
                request = stripped[len(REQUEST_PREFIX) :].strip()
            elif stripped == DEPLOY_BEST_LINE:
                deployed_best = True
            else:
                match = MODEL_LINE.match(stripped)
                if match:
                    models[match.group(1)] = (match.group(3), match.group(2))
    config = flat_config(config_lines) if config_lines else None
    return LogFacts(models, request, config, deployed_best)


def _other_method(key, method_node):
    """A key of another method's node (TRAINER.<NODE>.KEY with NODE not ``method_node``)."""
    parts = key.split(".")
    return method_node is not None and len(parts) > 2 and parts[0] == "TRAINER" and parts[1] != method_node


def settings_differences(saved, current, eval_only=False, method_node=None):
    """[(key, value in the finished run, value now)] of the keys that change a result: not
    IGNORED_KEYS; for an evaluation, not TRAINING_ONLY_KEYS either; with ``method_node`` (the
    trainer's node under TRAINER, e.g. "ALIGN"), not the keys of the other methods' nodes (every
    config holds them all; OPTS for one method must not set the others apart). Keys missing on
    one side are not compared (a key added to the code since cannot have been set then)."""
    skipped = IGNORED_KEYS + (TRAINING_ONLY_KEYS if eval_only else ())
    return [
        (key, saved[key], value)
        for key, value in current.items()
        if key in saved and saved[key] != value and not _selected(key, skipped) and not _other_method(key, method_node)
    ]


def has_checkpoint(folder):
    """A learner folder holds a checkpoint to resume from: the pointer file, or a model.pth.tar-N
    (as the engine's has_checkpoint)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return POINTER_NAME in names or any(EPOCH_FILE.fullmatch(name) for name in names)


def deployed_model(train_dir, learner, result_log):
    """(path, epoch or None) of the model whose test gave a training run's result: model-best.pth.tar
    when that test deployed the best val model (no epoch), else the epoch the pointer names.

    result_log: the run's result log (tools.results.logs.read_run). Raises ModelNotFound.
    """
    folder = osp.join(train_dir, learner)
    if read_log_facts(result_log).deployed_best:
        path = osp.join(folder, BEST_MODEL_NAME)
        if not osp.isfile(path):
            raise ModelNotFound(
                f"{osp.basename(result_log)} in {train_dir} deployed the best val model, but {path} is missing"
            )
        return path, None
    pointer = osp.join(folder, POINTER_NAME)
    try:
        with open(pointer, errors="replace") as f:
            saved = f.readline().strip()
    except OSError:
        raise ModelNotFound(f"no trained model in {train_dir} (missing {pointer})") from None
    match = EPOCH_FILE.fullmatch(saved)
    if saved != BEST_MODEL_NAME and match is None:
        raise ModelNotFound(f"unexpected checkpoint name '{saved}' in {pointer}")
    path = osp.join(folder, saved)
    if not osp.isfile(path):
        raise ModelNotFound(f"no trained model in {train_dir}: {pointer} names {saved}, which is missing")
    return path, int(match.group(1)) if match else None
