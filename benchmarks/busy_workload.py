"""A workload with a known amount of compute per epoch, for orchestration benchmarks (imported by Ray workers)."""

from __future__ import annotations

import torch

from autoaccel.config import Hyperparameter
from autoaccel.workloads.quadratic import NoisyQuadratic


class BusyQuadratic(NoisyQuadratic):
    """The quadratic, plus ``work`` 256×256 matrix products per evaluation: fixed work, not a fixed sleep, so that
    contention with the driver shows up in the trials' own times."""

    name = "busy_quadratic"
    options = (*NoisyQuadratic.options, Hyperparameter("work", int, 1000, "matrix products per epoch", 0))

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        a = torch.full((256, 256), 1.0 / 256)
        for _ in range(self.config["work"]):
            a = a @ a
        return super().evaluate(model)
