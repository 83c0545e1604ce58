"""sharpkd: restore video-call frames degraded by low bandwidth, with a distilled real-time network.

    import kd
    restored = kd.sharpen(frame)                    # student, the real-time model
    restored = kd.sharpen(frame, model="teacher")   # best quality, slower
    blurry = kd.degrade(clean, "medium")            # simulate a poor link

The names load their modules on first use (PEP 562), so ``import kd.degrade`` does not pull in torch and
``python -m kd.sharpen`` runs a module the package has not imported already.
"""
import importlib
import sys
import types

# public name -> the module that defines it
_HOMES = {"sharpen": "kd.sharpen", "load": "kd.registry", "degrade": "kd.degrade", "Degradation": "kd.degrade",
          "PRESETS": "kd.degrade", "Received": "kd.degrade"}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'kd' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


class _Package(types.ModuleType):
    """Importing ``kd.sharpen`` (or ``kd.degrade``) binds the module on the package; ``kd.sharpen`` stays the function."""

    def __setattr__(self, name: str, value) -> None:
        if _HOMES.get(name) == f"{self.__name__}.{name}" and isinstance(value, types.ModuleType):
            return  # the module stays reachable as sys.modules["kd.sharpen"] and by `from kd.sharpen import ...`
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
