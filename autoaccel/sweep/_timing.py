"""A comparison's timing pass: each configuration its final runs will train, timed alone before they start, so that
the verdict can weigh a technique's result against what its steps cost (``autoaccel.run.timing``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .reruns import Point
from .spec import SweepSpec
from .trainable import plan

__all__ = ["cost_key", "time_configurations"]


def cost_key(source_run: str, batch_size: Any) -> str:
    """The timing pass's key for a final run: the tuning run it re-runs, at its batch size."""
    return f"{source_run}@{batch_size}"


def time_configurations(spec: SweepSpec, points: Sequence[Point], say: Callable[[str], None]) -> dict[str, float]:
    """Seconds per training step of each distinct configuration among ``points`` (keyed by :func:`cost_key`), one
    at a time as a Ray task holding a trial's resources, so no other trial shares the machine while it is timed.
    Multi-worker trials are not timed (NaN): their step includes the workers' communication, which one task does
    not have."""
    import ray

    from autoaccel.run.timing import TIMED_STEPS, seconds_per_step

    configs: dict[str, dict[str, Any]] = {}
    for point in points:
        sample, _ = plan(point.as_config(), spec.seeds)
        key = cost_key(point.source_run, point.params.get("budget.batch_size"))
        configs.setdefault(
            key,
            {
                "workload": spec.workload,
                "optimizer": sample.optimizer,
                "budget": {**spec.budget, **sample.budget},
                "seed": point.seed,
                "device": spec.device,
            },
        )
    if spec.workers > 1:
        say(f"timing pass skipped: a {spec.workers}-worker step's cost is not one process's (cost per step n/a)")
        return dict.fromkeys(configs, math.nan)

    @ray.remote
    def timed(config: dict[str, Any]) -> float:
        from .trainable import resolved_device

        return seconds_per_step({**config, "device": resolved_device(config["device"])})

    task = timed.options(num_cpus=spec.resources["cpu"], num_gpus=spec.resources["gpu"])
    say(f"timing pass: {len(configs)} configuration(s), {TIMED_STEPS} steps each, one at a time")
    costs = {}
    for key, config in configs.items():
        costs[key] = ray.get(task.remote(config))  # one after another: nothing else runs beside it
    return costs
