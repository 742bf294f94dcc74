"""What a training loop asks of an optimizer stack, so that it never tests an optimizer's class.

An optimizer may declare any of these; torch's own declare none, and the defaults below apply:

- ``needs_closure`` (default False): ``step`` needs a closure that recomputes the loss, and its gradients when grad
  is enabled (Anderson's safeguard re-evaluates the loss under ``torch.no_grad()``).
- ``micro_batches`` (default 1): the loop cuts each batch into this many parts and calls ``backward`` on each part's
  loss divided by the count before one ``step`` (AdaScale estimates the gradient variance across them).
- ``needs_create_graph`` (default False): the next ``step``'s ``backward`` must keep the graph; asked before every
  step (AdaHessian's Hessian-vector product, on its refresh steps).
- ``averages_gradients`` (default False): under ``torch.distributed``, ``step`` averages the workers' gradients
  itself, so the loop must leave them as each worker computed them (AdaHessian: its Hessian-vector product
  differentiates the worker's own graph-carrying gradient, which an all-reduce would cut off).
- ``set_horizon(total_steps)``: the run's length in optimizer steps, known once the loop knows its budget (Demon's
  T, when the config left it out).
- ``budget_progress`` (default: none, the loop counts its steps): the budget's steps spent so far, when the
  optimizer keeps its own clock. AdaScale does: its scale-invariant steps τ ÷ S, so that the run ends, and the
  learning-rate schedule advances, in scale-invariant iterations, as the paper prescribes.
- ``lr_gain`` (default 1.0): the factor by which the last ``step`` multiplied every param group's learning rate
  (AdaScale's gain r), so that the loop reports the rate that was applied, not only the schedule's.
- ``evaluation_weights()`` (default: a context that changes nothing): a context manager inside which the parameters
  hold the weights the algorithm outputs, put back bit for bit on exit; the loop evaluates inside it. Lookahead's
  output is its slow weights φ. Every other technique here outputs its parameters: Demon, AdaHessian and AdaScale
  update them in place, and Anderson writes its extrapolated point and its moving average into them, so the next
  step starts there (``docs/optimizers.md``, "The weights a run is evaluated on").

:class:`~autoaccel.optim.OptimizerWrapper` forwards each to the optimizer it wraps; a wrapper adds its own.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

__all__ = [
    "averages_gradients",
    "budget_progress",
    "evaluation_weights",
    "lr_gain",
    "micro_batches",
    "needs_closure",
    "needs_create_graph",
    "set_horizon",
]


def needs_closure(optimizer: Any) -> bool:
    return bool(getattr(optimizer, "needs_closure", False))


def micro_batches(optimizer: Any) -> int:
    return int(getattr(optimizer, "micro_batches", 1))


def needs_create_graph(optimizer: Any) -> bool:
    return bool(getattr(optimizer, "needs_create_graph", False))


def averages_gradients(optimizer: Any) -> bool:
    return bool(getattr(optimizer, "averages_gradients", False))


def budget_progress(optimizer: Any) -> float | None:
    return getattr(optimizer, "budget_progress", None)


def lr_gain(optimizer: Any) -> float:
    return float(getattr(optimizer, "lr_gain", 1.0))


def set_horizon(optimizer: Any, total_steps: int) -> None:
    setter = getattr(optimizer, "set_horizon", None)
    if setter is not None:
        setter(total_steps)


def evaluation_weights(optimizer: Any) -> AbstractContextManager[None]:
    """``with evaluation_weights(opt): evaluate(model)``: the model holds the weights ``opt`` outputs meanwhile."""
    context = getattr(optimizer, "evaluation_weights", None)
    return nullcontext() if context is None else context()
