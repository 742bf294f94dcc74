"""Workloads for the sweep tests, imported by Ray workers as ``sweep_workloads:<Class>`` (tests/ is on PYTHONPATH)."""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from autoaccel.config import Hyperparameter
from autoaccel.workloads.quadratic import NoisyQuadratic


class FlakyQuadratic(NoisyQuadratic):
    """Raises once, in epoch 3, the first time any trial trains it: a transient failure (a node hiccup, an OOM)."""

    name = "flaky_quadratic"
    options = (*NoisyQuadratic.options, Hyperparameter("marker", str, "", "file created by the one failure"))

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        self._epochs = getattr(self, "_epochs", 0) + 1
        if self._epochs == 3 and not os.path.exists(self.config["marker"]):
            open(self.config["marker"], "w").close()
            raise RuntimeError("transient failure")
        return super().evaluate(model)


class SlowQuadratic(NoisyQuadratic):
    """Each evaluation takes ``delay`` seconds, so that a test can kill the driver while trials are mid-run."""

    name = "slow_quadratic"
    options = (*NoisyQuadratic.options, Hyperparameter("delay", float, 0.3, "seconds per evaluation", 0.0))

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        time.sleep(self.config["delay"])
        return super().evaluate(model)
