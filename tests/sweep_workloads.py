"""Workloads for the sweep tests, imported by Ray workers as ``sweep_workloads:<Class>`` (tests/ is on PYTHONPATH)."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from pathlib import Path
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


class DyingQuadratic(NoisyQuadratic):
    """The data-parallel worker of rank 1 dies (SIGKILL: no exception, no cleanup) at its first training step while
    the file ``marker`` exists, which it deletes first: once per marker, so a restarted worker group trains on."""

    name = "dying_quadratic"
    options = (*NoisyQuadratic.options, Hyperparameter("marker", str, "", "file whose presence kills rank 1"))

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        import torch.distributed as dist

        marker = self.config["marker"]
        if dist.is_initialized() and dist.get_rank() == 1 and os.path.exists(marker):
            os.remove(marker)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().loss(model, batch)


class PausingQuadratic(NoisyQuadratic):
    """At the first evaluation of the whole sweep (rank 0's, in a multi-worker trial: it alone evaluates) it creates
    the file ``reached`` and waits until the file ``release`` exists: a test looks at the running sweep meanwhile.
    Waiting for a file is waiting for the test's state; the bound only keeps a test that died from holding Ray."""

    name = "pausing_quadratic"
    options = (
        *NoisyQuadratic.options,
        Hyperparameter("reached", str, "", "file created when a trial trains"),
        Hyperparameter("release", str, "", "file whose creation lets it go on"),
    )

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        # in a trial only: the sweep's check runs the workload's code once in the driver, before Ray starts (and
        # before the driver may import Ray: it configures the Ray it starts first)
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized() and not os.path.exists(self.config["reached"]):
            open(self.config["reached"], "w").close()
            deadline = time.monotonic() + 600
            while not os.path.exists(self.config["release"]) and time.monotonic() < deadline:
                time.sleep(0.05)
        return super().evaluate(model)


class GatedQuadratic(NoisyQuadratic):
    """While the file ``closed`` exists in the folder ``gate``, every trial but the first ``free`` (in the order
    they first evaluate) waits at its ``at``-th evaluation, before that epoch's report: a test holds a sweep's later
    trials running, for as long as it needs (one ``ticket-<n>`` file in ``gate`` per trial that evaluated)."""

    name = "gated_quadratic"
    options = (
        *NoisyQuadratic.options,
        Hyperparameter("gate", str, "", "folder of the gate's files"),
        Hyperparameter("free", int, 0, "trials that pass the closed gate", 0),
        Hyperparameter("at", int, 1, "the evaluation (epoch) the others wait at", 1),
    )

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        # in a trial only: the sweep's check runs the workload's code once in the driver, before Ray starts
        ray = sys.modules.get("ray")
        if ray is None or not ray.is_initialized():
            return super().evaluate(model)
        gate = Path(self.config["gate"])
        if not hasattr(self, "_ticket"):
            self._ticket = next(n for n in itertools.count() if _claimed(gate / f"ticket-{n}"))
            self._evaluations = 0
        self._evaluations += 1
        held = self._ticket >= self.config["free"] and self._evaluations == self.config["at"]
        while held and (gate / "closed").exists():
            time.sleep(0.05)
        return super().evaluate(model)


def _claimed(path: Path) -> bool:
    """Whether this process created ``path`` (atomically: of processes racing for it, one does)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
