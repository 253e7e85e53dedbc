"""Unpickling that never runs the file's code.

A pickle rebuilds objects by naming globals (``module.name``) that the standard unpickler imports
and calls, so a file can name ``os.system``. The unpicklers here take a global only from an
allowlist of harmless callables; nothing else the file names is imported or called:

- ``load_torch_file`` reads a torch checkpoint (zip or legacy format: ``torch.load`` reads the
  archive, this module's unpickler the pickle in it). Tensors, parameters and plain containers are
  rebuilt; every other global becomes a ``Placeholder`` class, so that what the file builds from
  it is an inert ``Placeholder`` recording the name, arguments and state the file gave it.
- ``load_allowed_pickle`` reads a plain pickle whose allowlist the caller gives (the dataset caches:
  ``Datum``); any other global is refused (``RefusedGlobalError``) before anything is built from it.
"""

import collections
import pickle
import types

import torch

__all__ = [
    "PLAIN_CONTAINERS",
    "Placeholder",
    "PlaceholderError",
    "RefusedGlobalError",
    "UnsupportedPickleError",
    "find_placeholders",
    "is_placeholder",
    "load_allowed_pickle",
    "load_torch_file",
    "placeholder_names",
]


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle names a global that is not allowed; ``name`` is it (``module.name``)."""

    def __init__(self, name):
        super().__init__(f"it pickles {name}, which is not allowed here")
        self.name = name


class UnsupportedPickleError(pickle.UnpicklingError):
    """The file needs an object that the safe reader does not rebuild where it is needed (a
    placeholder where torch needs a storage, backward hooks on a tensor, ...)."""


class PlaceholderError(TypeError):
    """A placeholder stands where real data is needed; the message says which and where."""


class Placeholder:
    """An object the file pickled, not rebuilt.

    ``pickled_name`` is the global it was built from (``module.qualname``, set on the subclass
    made for each global), ``args`` / ``kwargs`` the arguments the file gave it, ``state`` its
    pickled state (often its ``__dict__``) and ``contents`` the items and ``(key, value)`` pairs
    the file added to it. Only the unpickler sets these; the object has no behaviour.
    """

    pickled_name = "?"

    # Every opcode that would build an object (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ) calls the
    # class, or its __new__: both only record what the file passed.
    def __new__(cls, *args, **kwargs):
        placeholder = super().__new__(cls)
        placeholder.args, placeholder.kwargs = args, kwargs
        placeholder.state, placeholder.contents = None, []
        return placeholder

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):  # BUILD
        self.state = state

    def append(self, item):  # APPEND, APPENDS
        self.contents.append(item)

    def extend(self, items):  # APPENDS
        self.contents.extend(items)

    def __setitem__(self, key, value):  # SETITEM, SETITEMS
        self.contents.append((key, value))

    def __repr__(self):
        return f"<placeholder for {self.pickled_name}>"


def _placeholder_class(name):
    # The qualname is no class in any source file, so that torch's check of a pickled module's
    # source (legacy format) finds none instead of comparing against this module's code.
    return type("Placeholder", (Placeholder,), {"pickled_name": name, "__qualname__": f"Placeholder[{name}]"})


def is_placeholder(value):
    """Whether ``value`` is a placeholder, or a placeholder class (a global the file only named)."""
    return isinstance(value, Placeholder) or (isinstance(value, type) and issubclass(value, Placeholder))


def _children(value, path):
    """(child, path) of a container or a placeholder; ``path`` reads like the expression that
    reaches the child."""
    if isinstance(value, Placeholder):
        for name in ("args", "kwargs", "state", "contents"):
            yield getattr(value, name), f"{path}.{name}"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key, f"{path} (a key)"
            yield item, f"{path}[{key!r}]"
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            yield item, f"{path}[{index}]"


def _walk(value, path, into_placeholders):
    """(path, placeholder) of every placeholder in the containers of ``value``, in order; with
    ``into_placeholders`` also those in the arguments, state and contents of placeholders."""
    seen = set()  # a pickle can share a container, or make one contain itself
    stack = [(value, path)]
    while stack:
        value, path = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if is_placeholder(value):
            yield path, value
            if not into_placeholders:
                continue
        stack.extend(reversed(list(_children(value, path))))


def find_placeholders(value, path=""):
    """[(path, placeholder)] of the placeholders in ``value``'s dicts, lists, tuples and sets (not
    those inside a placeholder), e.g. ``[("['scheduler']['successor']", <placeholder for ...>)]``."""
    return list(_walk(value, path, into_placeholders=False))


def placeholder_names(value):
    """The distinct ``pickled_name`` of every placeholder in ``value``, nested ones included, in
    the order they are found."""
    return list(dict.fromkeys(placeholder.pickled_name for _, placeholder in _walk(value, "", True)))


# ---------------------------------------------------------------------------- the allowlists

# Plain containers, as pickles name them (sets below protocol 4, bytes below protocol 3).
PLAIN_CONTAINERS = {
    ("builtins", "dict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytes"): bytes,
    ("builtins", "bytearray"): bytearray,
    ("collections", "OrderedDict"): collections.OrderedDict,
}

# Module names of pickles written by Python 2 (the standard unpickler maps them the same way).
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _require(condition, what):
    if not condition:
        raise UnsupportedPickleError(what)


def _no_hooks(backward_hooks):
    # torch pickles an empty OrderedDict here; hooks are code, never data.
    _require(isinstance(backward_hooks, dict) and not backward_hooks, "a tensor pickled with backward hooks")
    return collections.OrderedDict()


def _rebuild_tensor(storage, storage_offset, size, stride):
    """torch's ``_rebuild_tensor`` (files of torch < 1.0), for a real storage only."""
    _require(isinstance(storage, torch.storage.TypedStorage), "a tensor whose storage is not a torch storage")
    return torch._utils._rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """torch's ``_rebuild_tensor_v2`` (how ``torch.save`` pickles a tensor), checked first."""
    _require(isinstance(storage, torch.storage.TypedStorage), "a tensor whose storage is not a torch storage")
    _require(isinstance(requires_grad, bool), "a tensor whose requires_grad is not a bool")
    _require(metadata is None or isinstance(metadata, dict), "a tensor whose metadata is not a dict")
    hooks = _no_hooks(backward_hooks)
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    """torch's ``_rebuild_parameter`` (how ``torch.save`` pickles an ``nn.Parameter``), checked first."""
    _require(isinstance(data, torch.Tensor), "a parameter whose data is not a tensor")
    _require(isinstance(requires_grad, bool), "a parameter whose requires_grad is not a bool")
    return torch._utils._rebuild_parameter(data, requires_grad, _no_hooks(backward_hooks))


def _latin1_bytes(text, encoding):
    """``_codecs.encode(text, "latin1")``: how protocol 2 pickles ``bytes``; no other codec."""
    _require(isinstance(text, str) and encoding in ("latin1", "latin-1"), "bytes pickled through another codec")
    return text.encode("latin-1")


_TORCH_ALLOWED = {
    **PLAIN_CONTAINERS,
    ("_codecs", "encode"): _latin1_bytes,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


# ---------------------------------------------------------------------------- the unpicklers


class _AllowlistUnpickler(pickle.Unpickler):
    """The standard (C) unpickler, whose globals come from ``allowed`` only."""

    allowed = {}

    def find_class(self, module, name):
        allowed = self.allowed.get((_PYTHON2_MODULES.get(module, module), name))
        if allowed is not None:
            return allowed
        return self.not_allowed(f"{module}.{name}")

    def not_allowed(self, name):
        raise RefusedGlobalError(name)


class _PlaceholderUnpickler(_AllowlistUnpickler):
    """Tensors and plain containers are rebuilt; any other global becomes a placeholder class."""

    allowed = _TORCH_ALLOWED

    def not_allowed(self, name):
        return _placeholder_class(name)


# What ``torch.load(pickle_module=...)`` uses of a pickle module: its name, Unpickler and load.
_PLACEHOLDER_PICKLE = types.SimpleNamespace(
    __name__=__name__,
    Unpickler=_PlaceholderUnpickler,
    load=lambda file, **kwargs: _PlaceholderUnpickler(file, **kwargs).load(),
)


def load_allowed_pickle(file, allowed):
    """``pickle.load(file)`` with globals taken from ``allowed`` ({(module, name): object}) only.

    Raises:
        RefusedGlobalError: the file names another global (``.name``); nothing was built from it.
    """
    unpickler = _AllowlistUnpickler(file)
    unpickler.allowed = allowed
    return unpickler.load()


def load_torch_file(f, map_location=None, **pickle_load_args):
    """``torch.load(f)`` that rebuilds only tensors, parameters and plain containers; every other
    pickled object comes back as an inert ``Placeholder`` (see ``placeholder_names``).

    ``f`` is a zip-format (torch >= 1.6) or legacy-format checkpoint; ``pickle_load_args`` go to
    the unpickler (``encoding="latin1"`` for files pickled by Python 2).

    Raises:
        UnsupportedPickleError: the file needs a real object where the reader has a placeholder
            (a storage, say), or something it refuses (tensor hooks); the message says what.
        Anything ``torch.load`` raises for a damaged file.
    """
    try:
        return torch.load(
            f, map_location=map_location, pickle_module=_PLACEHOLDER_PICKLE, weights_only=False, **pickle_load_args
        )
    except (TypeError, AttributeError) as e:
        # A placeholder was used where torch or a rebuild function needs the real object.
        raise UnsupportedPickleError(f"{type(e).__name__}: {e}") from e
