"""A trial's budget: how long it trains (epochs or optimizer steps), at which batch size, and the learning-rate
schedule over its steps. Torch-free: sweep specs validate budgets before anything heavy is imported."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from autoaccel.config import Hyperparameter, check_all
from autoaccel.errors import ConfigError

__all__ = ["BUDGET", "check_budget", "lr_factor"]

BUDGET = (
    Hyperparameter("epochs", int, None, "training epochs (or give steps)", 1, nullable=True),
    Hyperparameter("steps", int, None, "optimizer steps (the last epoch may be partial)", 1, nullable=True),
    Hyperparameter("batch_size", int, None, "examples per optimizer step (default: the workload's)", 1, nullable=True),
    Hyperparameter(
        "schedule", str, "constant", "learning-rate schedule over the steps", choices=("constant", "cosine")
    ),
    Hyperparameter("warmup_steps", int, 0, "linear warm-up steps before the schedule", 0),
)


def check_budget(budget: Mapping[str, Any] | None, key: str = "budget", complete: bool = True) -> dict[str, Any]:
    """``budget`` checked against :data:`BUDGET` and converted; with ``complete``, exactly one of epochs or steps
    and every other key at its default. ``key`` names it in errors (``budget``, or where a space sampled it)."""
    if budget is not None and not isinstance(budget, Mapping):
        raise ConfigError(key, budget, "a mapping of " + ", ".join(h.name for h in BUDGET))
    checked = check_all(BUDGET, dict(budget or {}), prefix=f"{key}.")
    given = [name for name in ("epochs", "steps") if checked.get(name) is not None]
    if len(given) > 1:
        raise ConfigError(key, dict(budget or {}), "exactly one of epochs or steps, not both")
    if complete and not given:
        raise ConfigError(key, dict(budget or {}), "exactly one of epochs or steps")
    if not complete:
        return checked
    return {h.name: checked.get(h.name, h.default) for h in BUDGET}


def lr_factor(step: int, total: int, warmup: int, cosine: bool) -> float:
    """The learning rate's multiplier at ``step`` of ``total``: linear warm-up, then constant or cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
