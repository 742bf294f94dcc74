"""Which workloads exist: the built-in table, user registrations, entry points and ``module:Class`` names.

A user's workload is found in any process (a Ray worker too) when it is declared as an entry point in the group
``autoaccel.workloads`` of its package, or named ``"package.module:ClassName"`` in a spec; ``register_workload``
covers the current process only.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from autoaccel.errors import ConfigError

from ._base import Workload

__all__ = ["WORKLOADS", "check_reaches_workers", "get_workload", "register_workload", "workload_class"]

_BUILTIN = {
    "admissions_mlp": "autoaccel.workloads.admissions:AdmissionsMLP",
    "burgers_pinn": "autoaccel.workloads.burgers:BurgersPINN",
    "image_classification": "autoaccel.workloads.images:ImageClassification",
    "quadratic": "autoaccel.workloads.quadratic:NoisyQuadratic",
}
_REGISTERED: dict[str, type[Workload]] = {}


def register_workload(cls: type[Workload]) -> type[Workload]:
    """Class decorator: make ``cls`` available by ``cls.name`` in this process."""
    if not (isinstance(cls, type) and issubclass(cls, Workload)):
        raise TypeError(f"register_workload expects a Workload subclass, got {cls!r}")
    _REGISTERED[cls.name] = cls
    return cls


def _load(path: str, name: str) -> type[Workload]:
    module, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as error:
        raise ConfigError("workload.name", name, f"an importable 'module:Class' ({error})") from error
    if not (isinstance(cls, type) and issubclass(cls, Workload)):
        raise ConfigError("workload.name", name, "a subclass of autoaccel.workloads.Workload")
    return cls


def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="autoaccel.workloads")}


def names() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTERED, *_plugins()})


def workload_class(name: Any) -> type[Workload]:
    """The class for ``name``: registered, built in, an entry point, or ``"module:Class"``."""
    if isinstance(name, str):
        if name in _REGISTERED:
            return _REGISTERED[name]
        path = _BUILTIN.get(name) or _plugins().get(name) or (name if ":" in name else None)
        if path:
            return _load(path, name)
    raise ConfigError("workload.name", name, "one of " + ", ".join(names()) + ", or 'package.module:ClassName'")


def check_reaches_workers(name: Any) -> None:
    """Raise ConfigError when ``name`` is known to this process only, through :func:`register_workload`: every Ray
    worker looks the name up in its own process, and would fail there, once per trial. The error says what to name
    instead: the class's ``"module:Class"`` (its module must be importable; a class defined in ``__main__``, a
    notebook or a script, is in none)."""
    if not isinstance(name, str) or name not in _REGISTERED or name in _BUILTIN or name in _plugins():
        return
    cls = _REGISTERED[name]
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        where = "__main__ (a notebook or a script)" if cls.__module__ == "__main__" else "a function"
        allowed = (
            f"a workload Ray's workers can import: {cls.__qualname__} is defined in {where}, where they cannot find "
            f"it; put the class in a module beside the spec or the notebook (e.g. mywork.py) and name it "
            f"'mywork:{cls.__name__}'"
        )
    else:
        allowed = (
            "a workload Ray's workers can import, not one registered in this process only: name it "
            f"'{cls.__module__}:{cls.__qualname__}' (or declare the entry point autoaccel.workloads)"
        )
    raise ConfigError("workload.name", name, allowed)


def get_workload(name: str, **options: Any) -> Workload:
    """The workload ``name`` with its options validated (no data is loaded until ``setup``)."""
    return workload_class(name)(**options)


class _Table:
    """``WORKLOADS[name]`` → class, iterating over every known name (loads classes lazily)."""

    def __getitem__(self, name: str) -> type[Workload]:
        return workload_class(name)

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __contains__(self, name: object) -> bool:
        return name in names()


WORKLOADS = _Table()
