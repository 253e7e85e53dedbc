"""Prompt-learning methods on a frozen CLIP; importing this package registers the trainers.

Every module of this package is imported here, so a method is discovered, not listed: a new
``trainers/<method>.py`` that registers its trainer (``@TRAINER_REGISTRY.register()``) and
defines ``add_config(cfg)`` (its ``TRAINER.<NODE>`` node, a comment per key) needs no other file
edited. Its scripts, recipes and docs are registered by ``scripts/<method>/env.sh``
(``tools/methods.py``); docs/adding_a_method.md walks through a method.

The methods: ``align`` (ALIGN, and its official name MMP), ``zsclip`` (zero-shot CLIP), ``coop``,
``cocoop``, ``maple``, ``ivlp`` (IVLP and language prompting), ``vpt`` and the others beside
them. The shared pieces: ``base`` (``PromptTrainer``: the training step, its loss and gradient
hooks, precision, DDP, checkpoints), ``prompting`` (sentences, contexts, the prompted model and
its training output), ``text`` (templates, frozen class text features, CoOp's context rules),
``deep_prompts`` (deep prompt modules), ``checkpoints`` (loading learned prompts), ``backbone``
(the frozen CLIP), ``ot`` and ``sinkhorn`` (optimal transport, pure tensor code).
"""

import importlib
import pkgutil


def _import_all_modules():
    """Import every module of the package (registering its trainers); the method modules, i.e.
    those with an ``add_config``, in name order."""
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return tuple(sorted((m for m in modules if hasattr(m, "add_config")), key=lambda m: m.__name__))


METHOD_MODULES = _import_all_modules()


def add_method_configs(cfg):
    """Add every method's config node(s) to ``cfg`` (``add_config`` of each method module)."""
    for module in METHOD_MODULES:
        module.add_config(cfg)
