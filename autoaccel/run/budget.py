"""A trial's budget: how long it trains (epochs or optimizer steps), at which batch size, and the learning-rate
schedule over its steps. Torch-free: sweep specs validate budgets before anything heavy is imported."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from autoaccel.config import Hyperparameter, check_all
from autoaccel.errors import ConfigError

__all__ = ["BUDGET", "SCHEDULES", "check_budget", "lr_factor"]

# The schedules torch ships, as multipliers of the base learning rate over the budget (after any warm-up):
# cosine = CosineAnnealingLR(T_max = the budget, eta_min 0); step = MultiStepLR at 1/2 and 3/4 of the budget (the
# ResNet schedule of He et al. 2016, Demon's step baseline); linear = LinearLR(1 → 0 over the budget);
# onecycle = OneCycleLR's learning rate (pct_start 0.3, div_factor 25, final_div_factor 1e4, cosine annealing; the
# base learning rate is its max_lr; momentum is not cycled); exponential = ExponentialLR stepped once per epoch.
SCHEDULES = ("constant", "cosine", "step", "linear", "onecycle", "exponential")
STEP_MILESTONES = (0.5, 0.75)
STEP_GAMMA = 0.1  # step's factor when the budget leaves gamma out
ONECYCLE = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1.0e4}
_GAMMA_SCHEDULES = ("step", "exponential")

BUDGET = (
    Hyperparameter("epochs", int, None, "training epochs (or give steps)", 1, nullable=True),
    Hyperparameter("steps", int, None, "optimizer steps (the last epoch may be partial)", 1, nullable=True),
    Hyperparameter("batch_size", int, None, "examples per optimizer step (default: the workload's)", 1, nullable=True),
    Hyperparameter(
        "schedule",
        str,
        "constant",
        "learning-rate schedule over the budget (torch's CosineAnnealingLR, MultiStepLR at 1/2 and 3/4, LinearLR to "
        "0, OneCycleLR, ExponentialLR per epoch)",
        choices=SCHEDULES,
    ),
    Hyperparameter(
        "gamma",
        float,
        None,
        "step: the factor at each milestone (default 0.1); exponential: the factor per epoch (required)",
        0.0,
        1.0,
        low_open=True,
        nullable=True,
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
    full = {h.name: checked.get(h.name, h.default) for h in BUDGET}
    schedule, gamma = full["schedule"], full["gamma"]
    if gamma is not None and schedule not in _GAMMA_SCHEDULES:
        raise ConfigError(f"{key}.gamma", gamma, f"only with schedule step or exponential (here: {schedule})")
    if schedule == "exponential" and gamma is None:
        raise ConfigError(f"{key}.gamma", None, "the factor per epoch in (0, 1], required by schedule exponential")
    if schedule == "onecycle" and full["warmup_steps"]:
        allowed = "0 with schedule onecycle (it warms up itself, over its first 30%)"
        raise ConfigError(f"{key}.warmup_steps", full["warmup_steps"], allowed)
    return full


def lr_factor(step: float, total: int, budget: Mapping[str, Any], steps_per_epoch: int) -> float:
    """The learning rate's multiplier after ``step`` steps of the ``total`` a ``budget`` (checked) allows: a linear
    warm-up over ``warmup_steps``, then ``budget["schedule"]`` over the rest. ``step`` may be fractional (an
    optimizer's own clock, AdaScale's τ / S)."""
    warmup, schedule, gamma = budget["warmup_steps"], budget["schedule"], budget["gamma"]
    if gamma is None:  # left out of the budget (a spec's default must not reach a family with another schedule)
        gamma = STEP_GAMMA
    if step < warmup:
        return (step + 1) / warmup
    t, span = step - warmup, max(total - warmup, 1)
    progress = min(t / span, 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "step":
        return gamma ** sum(progress >= m for m in STEP_MILESTONES)
    if schedule == "exponential":
        return gamma ** math.floor(t / steps_per_epoch)
    return _one_cycle(t, span)


def _one_cycle(t: float, total: int) -> float:
    """torch's OneCycleLR (two phases, cosine annealing) as a multiple of its max_lr at step ``t`` of ``total``."""
    start = 1.0 / ONECYCLE["div_factor"]
    end = start / ONECYCLE["final_div_factor"]
    peak = ONECYCLE["pct_start"] * total - 1  # torch's phase boundaries: steps pct_start·total − 1 and total − 1
    if t <= peak:
        low, high, pct = start, 1.0, t / peak
    else:
        low, high, pct = 1.0, end, min((t - peak) / max(total - 1 - peak, 1e-12), 1.0)
    return high + (low - high) / 2.0 * (math.cos(math.pi * pct) + 1.0)
