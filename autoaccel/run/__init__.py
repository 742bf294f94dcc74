"""One run: a workload trained with one optimizer config for a budget (a *trial*), resumable, honest about
divergence. Every trial — ``autoaccel train``, a sweep's trial on any node — is :func:`run_trial` or :class:`Trial`.

Public names are imported from their modules on first use, so that ``autoaccel.run.budget`` (what a sweep spec and
the command line validate budgets with) stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name → the module that defines it
_LAZY = {
    "BUDGET": "budget",
    "check_budget": "budget",
    "CHECKPOINT": "checkpoint",
    "check_device": "device",
    "resolve_device": "device",
    "Report": "trial",
    "Trial": "trial",
    "run_data_parallel": "processes",
    "run_trial": "trial",
    "validate_trial_config": "trial",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
