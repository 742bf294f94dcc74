"""What one training step of a configuration costs: the timing pass a comparison runs before its final runs.

A comparison that matched only steps would give a technique that costs twice as much per step (AdaHessian's
Hessian-vector product, Anderson's least squares) twice the compute. Wall times of the tuning and final runs cannot
say it: they run side by side and share the machine. The timing pass runs each chosen configuration alone, on the
resources a trial gets, and measures the median seconds of a training step (forward, backward, optimizer step and
the schedule; no evaluation), after a few warm-up steps (allocations, lazy initialisation, caches).
"""

from __future__ import annotations

import itertools
import statistics
import time
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from .trial import Trial

__all__ = ["TIMED_STEPS", "WARMUP_STEPS", "seconds_per_step"]

WARMUP_STEPS = 3
TIMED_STEPS = 20


def seconds_per_step(config: Mapping[str, Any], steps: int = TIMED_STEPS, warmup: int = WARMUP_STEPS) -> float:
    """The median wall time in seconds of one training step of the trial ``config`` (a single-worker trial's: the
    workload, optimizer, budget and device it trains with), over ``steps`` steps after ``warmup``. Steps that
    diverge are timed all the same: the cost of a step does not depend on its numbers."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
        setup = Trial(config).setup
        cuda = setup.device.type == "cuda"
        epochs = (setup.workload.batches(setup.global_batch, setup.generator) for _ in itertools.count())
        # as the trial does: a last batch too small for the optimizer's micro-batches is skipped (a whole batch never
        # is: the trial's setup refuses a batch size below the micro-batches, so this never runs dry)
        batches = (
            b for b in itertools.chain.from_iterable(epochs) if setup.workload.batch_size_of(b) >= setup.micro_batches
        )
        times = []
        for batch in itertools.islice(batches, warmup + steps):
            started = time.perf_counter()
            setup.step(batch)
            if cuda:  # kernels are asynchronous: the step has cost what it costs once they are done
                torch.cuda.synchronize(setup.device)
            times.append(time.perf_counter() - started)
    return statistics.median(times[warmup:])
