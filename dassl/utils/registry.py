"""Name -> object registries (Dassl's ``dassl.utils.registry``)."""

import difflib

__all__ = ["Registry", "UnavailableChoiceError", "check_availability"]


class Registry:
    """Maps an object's ``__name__`` to the object.

    Usage as a decorator::

        BACKBONE_REGISTRY = Registry("BACKBONE")

        @BACKBONE_REGISTRY.register()
        class MyBackbone(nn.Module): ...

    or as a direct call: ``BACKBONE_REGISTRY.register(MyBackbone)``.
    """

    def __init__(self, name):
        self._name = name
        self._obj_map = dict()

    def _do_register(self, name, obj, force=False):
        if name in self._obj_map and not force:
            raise KeyError(f'An object named "{name}" was already registered in "{self._name}" registry')
        self._obj_map[name] = obj

    def register(self, obj=None, force=False):
        if obj is None:
            # Used as a decorator
            def wrapper(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return wrapper

        # Used as a function call
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name):
        if name not in self._obj_map:
            raise KeyError(f'Object name "{name}" does not exist in "{self._name}" registry')
        return self._obj_map[name]

    def registered_names(self):
        return list(self._obj_map.keys())

    def __contains__(self, name):
        return name in self._obj_map


class UnavailableChoiceError(ValueError):
    """A requested name (trainer, dataset, evaluator, ...) is not among the available ones."""


def check_availability(requested, available, what=""):
    """Raise a ValueError naming the available choices (and the closest one) if ``requested`` is not among them.

    ``what`` (e.g. ``"trainer (TRAINER.NAME)"``) prefixes the message with what was looked up.
    """
    if not isinstance(available, (list, tuple)):
        raise TypeError(f"available must be a list or tuple, but got {type(available)}")

    if requested not in available:
        closest = difflib.get_close_matches(requested, available, n=1, cutoff=0.0)
        closest = closest[0] if closest else ""
        message = (
            f"The requested one is expected to belong to {available}, but got [{requested}] (do you mean [{closest}]?)"
        )
        if what:
            message = f"Unknown {what}: {message}"
        raise UnavailableChoiceError(message)
