"""A workload's own code run once, before any sweep starts: setup, model, one batch, loss, backward, one optimizer
step per configuration, one ``evaluate()``.

A mistake in a user's workload (a model whose output does not fit the targets, NaN in the data, a declared metric
``evaluate()`` does not return) would otherwise surface inside every Ray trial, as retries, tracebacks and trials
called "diverged" that blame the optimizer. Here it is one :class:`WorkloadError` naming the workload, the method
and what was expected. It runs on the CPU: a sweep's driver holds no GPU, and one batch is cheap there.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from autoaccel.errors import ConfigError, DataError
from autoaccel.optim import build_optimizer
from autoaccel.workloads import Workload, get_workload

from .trial import _Setup, validate_trial_config

__all__ = ["WorkloadError", "dry_run"]


class WorkloadError(ConfigError):
    """A workload's own code does not do what the protocol asks (one line: workload, method, what was expected)."""

    def __init__(self, workload: str, method: str, message: str) -> None:
        self.workload, self.method, self.message = workload, method, message
        super().__init__(f"workload {workload}", method, message)

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return type(self), (self.workload, self.method, self.message)

    def __str__(self) -> str:
        return f"workload {self.workload}: {self.method} {self.message}"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text[:400]}"


def _call(name: str, method: str, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``; what it raises becomes one WorkloadError (bad input it raised itself passes as is)."""
    try:
        return function(*args)
    except (ConfigError, DataError):
        raise
    except Exception as error:  # the user's code: any exception, named once
        raise WorkloadError(name, method, f"raised {_one_line(error)}") from None


def dry_run(
    workload: Mapping[str, Any],
    optimizers: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any]]],
    budget: Mapping[str, Any],
    metrics: Sequence[str] = (),
    workers: int = 1,
) -> int:
    """Run ``workload``'s code once on the CPU; raise :class:`WorkloadError` (or the DataError its data check
    raises) at the first thing that is not as the protocol asks. Returns the optimizer steps taken.

    ``optimizers``: (what it is, e.g. "family adam's first draw"; the optimizer config; budget overrides) — each takes
    one step on a fresh model from its first batch. ``metrics``: what the sweep ranks, besides the workload's
    declared ``metric`` and ``metrics``, that ``evaluate()`` must return. With ``workers`` > 1 (a data-parallel
    trial), a configuration only that many workers can build (AdaScale counts their gradients) takes no step here:
    the space's check built it as they will.
    """
    with _random_state_kept():
        return _dry_run(dict(workload), optimizers, budget, metrics, workers)


@contextlib.contextmanager
def _random_state_kept() -> Iterator[None]:
    """The caller's random streams as they were: a trial seeds Python's, NumPy's and torch's, and the driver that
    runs this check samples and names things after it (CUDA's are left alone: reading them would start CUDA)."""
    python, numpy, torch_cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(torch_cpu)


def _dry_run(
    spec: dict[str, Any],
    optimizers: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any]]],
    budget: Mapping[str, Any],
    metrics: Sequence[str],
    workers: int,
) -> int:
    instance = get_workload(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    name = instance.name
    _call(name, "setup()", instance.setup, torch.device("cpu"))
    _call(name, "check_data()", instance.check_data)  # now on the loaded data: the default checks its tensors
    size = _call(name, "train_size()", instance.train_size)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise WorkloadError(name, "train_size()", f"returned {size!r}; expected the number of examples, an int ≥ 1")
    model, steps = None, 0
    for label, optimizer, overrides in optimizers:
        kept = {k: v for k, v in budget.items() if k not in ("epochs", "steps")}
        config = {"workload": spec, "optimizer": dict(optimizer), "budget": {**kept, **overrides, "steps": 1}}
        if workers > 1 and not _builds_alone(optimizer):
            continue  # a configuration for several workers' gradients
        setup = _call(name, "model()", _Setup, validate_trial_config({**config, "device": "cpu"})[0], instance)
        model = setup.model
        if not isinstance(model, torch.nn.Module):
            raise WorkloadError(name, "model()", f"returned {type(model).__name__}; expected a torch nn.Module")
        batches = _call(name, "batches()", instance.batches, setup.global_batch, setup.generator)
        batch = _call(name, "batches()", next, iter(batches), None)
        if batch is None:
            raise WorkloadError(name, "batches()", f"yielded no batch of {setup.global_batch}; expected one or more")
        try:
            loss = instance.loss(model, batch)
        except (ConfigError, DataError):
            raise
        except Exception as error:  # the user's code: what it raised, and the shapes that met there
            shapes = _shapes(model, batch)
            raise WorkloadError(name, "loss()", f"raised {_one_line(error)}; expected a scalar loss{shapes}") from None
        _check_loss(name, loss)
        model.zero_grad()
        loss = _call(name, f"loss() with one optimizer step ({label})", setup.step, batch)
        if not math.isfinite(float(loss)):
            raise WorkloadError(name, "loss()", f"is {float(loss)} at one optimizer step ({label}); expected finite")
        steps += 1
    if model is None:  # no configuration to step with here: the model as a trial starts it
        model = _call(name, "model()", instance.model)
        if not isinstance(model, torch.nn.Module):
            raise WorkloadError(name, "model()", f"returned {type(model).__name__}; expected a torch nn.Module")
    model.eval()
    evaluated = _call(name, "evaluate()", instance.evaluate, model)
    _check_metrics(instance, evaluated, metrics)
    return steps


def _builds_alone(optimizer: Mapping[str, Any]) -> bool:
    """Whether one process can build the configuration (AdaScale over one gradient per step needs more workers)."""
    try:
        build_optimizer([torch.zeros(1, requires_grad=True)], copy.deepcopy(dict(optimizer)))
    except (ValueError, TypeError):
        return False
    return True


def _shapes(model: torch.nn.Module, batch: Any) -> str:
    """The first batch's tensor shapes and the model's output shape for its first tensor, in words (or nothing)."""
    tensors = [t for t in batch if isinstance(t, torch.Tensor)] if isinstance(batch, tuple | list) else []
    if not tensors:
        return ""
    text = f" (the first batch holds {', '.join(str(tuple(t.shape)) for t in tensors)}"
    try:
        with torch.no_grad():
            output = model(tensors[0])
        text += f"; model(batch[0]) is {tuple(output.shape)}"
    except Exception:  # a model that takes the batch otherwise: the shapes of the batch say enough
        pass
    return text + ")"


def _check_loss(name: str, loss: Any) -> None:
    if not isinstance(loss, torch.Tensor):
        raise WorkloadError(name, "loss()", f"returned {type(loss).__name__}; expected a scalar torch tensor")
    if loss.ndim != 0:
        shape = tuple(loss.shape)
        raise WorkloadError(name, "loss()", f"returned a tensor of shape {shape}; expected a scalar (the batch mean)")
    if not loss.requires_grad:
        raise WorkloadError(name, "loss()", "returned a tensor without a graph; expected one computed from the model")
    if not torch.isfinite(loss.detach()):
        raise WorkloadError(name, "loss()", f"is {loss.item()} on the first batch of a new model; expected finite")


def _check_metrics(workload: Workload, evaluated: Any, ranked: Sequence[str]) -> None:
    name = workload.name
    if not isinstance(evaluated, Mapping):
        raise WorkloadError(name, "evaluate()", f"returned {type(evaluated).__name__}; expected a dict of floats")
    declared = dict.fromkeys([*workload.metrics, workload.metric, *(m for m in ranked if m in workload.metrics)])
    missing = [m for m in declared if m not in evaluated]
    if missing:
        returned = ", ".join(map(str, evaluated)) or "nothing"
        allowed = f"expected every declared metric ({', '.join(declared)}); missing {', '.join(missing)}"
        raise WorkloadError(name, "evaluate()", f"returned {returned}; {allowed}")
    for key in declared:
        try:
            float(evaluated[key])
        except (TypeError, ValueError):
            value = evaluated[key]
            raise WorkloadError(name, "evaluate()", f"returned {key} = {value!r}; expected a number") from None
