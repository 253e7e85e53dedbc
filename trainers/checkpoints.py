"""Loading learned prompts: this project's prompt-only checkpoints and upstream full-model files.

Every method registers one learner module (its checkpoint folder) and saves only its learned
tensors. The upstream codebases (MaPLe, IVLP, VPT, ALIGN's official code) save the whole model
instead: the learned tensors under ``prompt_learner.``, beside the frozen CLIP. Both kinds load
through ``load_learned_weights``, for ``--eval-only --model-dir`` and for ``MODEL.INIT_WEIGHTS``.
"""

from dassl.config import ConfigError
from dassl.utils import load_checkpoint

# Class-dependent buffers that upstream checkpoints carry: rebuilt for the current class names, so
# that a learner trained on base classes evaluates on new ones.
CLASS_BUFFERS = ("token_prefix", "token_suffix")
FULL_MODEL_PREFIX = "prompt_learner."


def learned_state(state_dict, upstream_keys=None, ignored=()):
    """The learner's entries of a checkpoint state dict, as {learner key: tensor}.

    Args:
        state_dict: a checkpoint's ``state_dict``: this project's (the learner's own keys) or an
            upstream full-model one (learned keys under ``prompt_learner.``, frozen CLIP beside).
        upstream_keys: optional function mapping a full-model key outside ``prompt_learner.`` to a
            learner key, or None for a frozen entry (methods whose upstream keeps prompts inside
            the CLIP blocks, e.g. IVLP's ``...resblocks.{k}.VPT_shallow``).
        ignored: prefixes of learner keys that upstream files carry but the method does not learn
            (KgCoOp's unused ``bias_vectors`` and ``meta_net.``, PromptSRC's second image tower
            ``ZS_image_encoder.``); such entries are left out.
    Returns:
        (state, frozen, dropped): the learned entries without the class-dependent buffers, the
        number of frozen entries of a full-model file that were left out (0 for this project's
        files), and the sorted keys left out because of ``ignored``.
    """
    full_model = any(key.startswith(FULL_MODEL_PREFIX) for key in state_dict) or (
        upstream_keys is not None and any(upstream_keys(key) is not None for key in state_dict)
    )
    state, frozen, dropped = {}, 0, []
    for key, value in state_dict.items():
        if full_model:
            if key.startswith(FULL_MODEL_PREFIX):
                key = key[len(FULL_MODEL_PREFIX) :]
            else:
                key = upstream_keys(key) if upstream_keys is not None else None
                if key is None:
                    frozen += 1
                    continue
        if key.startswith(tuple(ignored)):
            dropped.append(key)
        elif key not in CLASS_BUFFERS:
            state[key] = value
    return state, frozen, sorted(dropped)


def load_learned_state(learner, state, source, config_keys):
    """Copy ``state`` ({learner key: tensor}) into ``learner``, every key and shape checked.

    Each tensor is copied into the learner's own tensor, so it takes the learner's dtype: a
    checkpoint written under another precision loads.

    Raises:
        ConfigError: keys missing or unexpected, or shapes that differ; the message names the
            file, the keys, and ``config_keys`` (the settings that decide the shapes).
    """
    expected = learner.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shapes = [
        f"{key} {tuple(state[key].shape)} in the file, {tuple(expected[key].shape)} in the model"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"learned tensors missing from the file: {missing}")
    if unexpected:
        problems.append(f"entries the model does not have: {unexpected}")
    if wrong_shapes:
        problems.append("shapes differ: " + "; ".join(wrong_shapes))
    if problems:
        raise ConfigError(
            f"{source} does not match the model built from the config ({'; '.join(problems)}). "
            f"Use the config the checkpoint was trained with (check {', '.join(config_keys)})."
        )
    learner.load_state_dict(state)


def load_learned_weights(learner, path, config_keys, upstream_keys=None, ignored=()):
    """Load the learned tensors of the checkpoint file ``path`` into ``learner``; returns its epoch.

    ``path`` is a file written by this project or by the upstream code (see ``learned_state``).
    Prints how many frozen entries of a full-model file, and which ``ignored`` entries, were left
    out.
    """
    checkpoint = load_checkpoint(path)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise ConfigError(f'"{path}" is not a model checkpoint (expected a dict with a "state_dict")')
    state, frozen, dropped = learned_state(state_dict, upstream_keys, ignored)
    if frozen:
        print(f"Official full-model checkpoint: ignoring {frozen} frozen CLIP entries")
    if dropped:
        shown = ", ".join(dropped[:4]) + (f" and {len(dropped) - 4} more" if len(dropped) > 4 else "")
        print(f"Upstream checkpoint: ignoring {len(dropped)} entries the method does not learn ({shown})")
    load_learned_state(learner, state, f'"{path}"', config_keys)
    return checkpoint.get("epoch")
