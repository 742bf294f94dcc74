"""The workload protocol: what one trial trains, declared once, so the training loop knows nothing specific.

A workload (after AlgoPerf's ``Workload``) declares its options, its data, model, loss, evaluation metrics, the
primary metric with its mode, and a target value for time-to-target. Construction validates options only (cheap, no
I/O: sweeps validate every spec before Ray starts); :meth:`Workload.setup` loads the data onto a device.

The trial calls, in order: ``setup(device)``, ``model()`` (after seeding), then per epoch ``batches(batch_size,
generator)`` → ``loss(model, batch)`` (``split(batch, n)`` for gradient accumulation) and ``evaluate(model)``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from autoaccel.config import Hyperparameter, check_all
from autoaccel.errors import ConfigError, DataError

__all__ = ["InMemoryBatches", "Workload", "options_table"]


class Workload(abc.ABC):
    """One training problem. Subclass, declare the class attributes, implement the five methods, register it.

    ``metrics`` names every key :meth:`evaluate` returns (always including ``val_loss`` and ``metric``);
    ``worst`` is the finite value a diverged trial reports for its metrics (never NaN, so samplers and
    schedulers can rank it).
    """

    name: ClassVar[str]
    task: ClassVar[str]  # regression | classification | pde
    summary: ClassVar[str]
    options: ClassVar[tuple[Hyperparameter, ...]] = ()
    metric: ClassVar[str]
    mode: ClassVar[str]  # min | max
    metrics: ClassVar[tuple[str, ...]]
    default_batch_size: ClassVar[int] = 32

    def __init__(self, **options: Any) -> None:
        given = check_all(self.options, options, prefix="workload.")
        self.config: dict[str, Any] = {h.name: given.get(h.name, h.default) for h in self.options}
        self.device = torch.device("cpu")
        self.check_options()

    def check_options(self) -> None:  # noqa: B027 (a hook: most workloads have no cross-option rule)
        """Cross-option checks (raise :class:`ConfigError`); per-option ranges are in ``options``."""

    def check_data(self) -> None:
        """What can be known about the data without training (raise :class:`~autoaccel.errors.DataError` naming the
        file, line and column): a sweep runs it before Ray starts, so bad data fails once, in seconds, instead of
        inside every trial, and then again after :meth:`setup` (``autoaccel.run.dry_run``).

        The default finds the loaded tensors the workload holds (its attributes: :class:`InMemoryBatches`, tensors,
        tuples of tensors; none before ``setup``) and refuses a floating-point one with NaN or ±inf: trained on, it
        would make every trial "diverge" and blame the optimizer. Override it to check data held otherwise (a
        ``Dataset``, files), or to skip a check too costly for very large data."""
        for attribute, value in vars(self).items():
            tensors = value.tensors if isinstance(value, InMemoryBatches) else value
            tensors = (tensors,) if isinstance(tensors, torch.Tensor) else tensors
            if not isinstance(tensors, tuple | list):
                continue
            for i, tensor in enumerate(tensors):
                if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                    bad = ~torch.isfinite(tensor)
                    if bad.any():
                        where = tuple(int(j) for j in bad.nonzero()[0])
                        raise DataError(
                            f"workload {self.name}: self.{attribute}[{i}] holds {tensor[where].item()} at index "
                            f"{where[0] if len(where) == 1 else where} ({int(bad.sum())} non-finite value(s) in all); "
                            "expected finite numbers (clean or drop those examples in setup())"
                        )

    @property
    @abc.abstractmethod
    def target(self) -> float:
        """The metric value that counts as "reached" for time- and steps-to-target."""

    @property
    def worst(self) -> float:
        return 0.0 if self.mode == "max" else 1.0e6

    def setup(self, device: torch.device) -> None:
        """Load or generate the data (idempotent); called once per trial before anything else."""
        self.device = device

    @abc.abstractmethod
    def model(self) -> nn.Module:
        """A freshly initialised model (the caller has seeded torch)."""

    @abc.abstractmethod
    def train_size(self) -> int:
        """Number of training examples (collocation points for a PINN) in one epoch."""

    @abc.abstractmethod
    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        """One epoch of training batches in an order drawn from ``generator`` alone (exact resume relies on it)."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The mean training loss of ``batch`` (a scalar with a graph)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics: every name in ``metrics``; the model is in eval mode and grad may be on or off."""

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.train_size() / batch_size)

    def batch_size_of(self, batch: Any) -> int:
        """Examples in ``batch`` (default: the length of its first tensor)."""
        return len(batch[0])

    def split(self, batch: Any, parts: int) -> list[Any]:
        """``batch`` cut into ``parts`` micro-batches whose mean losses average to the batch's loss.

        The default cuts every tensor of a tuple batch along dimension 0.
        """
        pieces = [t.tensor_split(parts) for t in batch]
        return [tuple(p[i] for p in pieces) for i in range(parts)]

    def option_error(self, key: str, allowed: str) -> ConfigError:
        return ConfigError(f"workload.{key}", self.config[key], allowed)


class InMemoryBatches:
    """Index batches over tensors that live on the device: no DataLoader, no worker processes.

    One ``torch.randperm`` per epoch from a CPU generator, then ``index_select`` per batch (a gather on the device).
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __call__(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.randperm(len(self), generator=generator).to(self.tensors[0].device)
        for index in order.split(batch_size):
            yield tuple(t.index_select(0, index) for t in self.tensors)


def options_table(workload: type[Workload]) -> list[Mapping[str, Any]]:
    """Each option of a workload class: key, default, what is allowed, help (for listings)."""
    return [{"key": h.name, "default": h.default, "allowed": h.allowed(), "help": h.help} for h in workload.options]
