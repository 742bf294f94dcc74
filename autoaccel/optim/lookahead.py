"""Lookahead (Zhang, Lucas, Hinton, Ba, "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019).

Algorithm 1 of the paper, exactly: the slow weights start at the parameters of the first step, φ_0 = θ_0. The inner
optimizer takes k steps on the fast weights θ; after every k-th inner step::

    φ ← φ + α (θ − φ)
    θ ← φ

The inner optimizer's state (momentum, Adam moments) is kept across syncs, as in the paper. Two reference
implementations get the timing wrong (torch-optimizer syncs at steps 1, k+1, ...; timm starts φ at θ_k); this one
matches pytorch-optimizer's, which is paper-exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.optim import Optimizer

from autoaccel.config import Hyperparameter, check_all

from ._wrapper import OptimizerWrapper

__all__ = ["LOOKAHEAD_HYPERPARAMETERS", "Lookahead"]

LOOKAHEAD_HYPERPARAMETERS = (
    Hyperparameter("k", int, 5, "inner (fast) steps between two syncs", 1),
    Hyperparameter("alpha", float, 0.5, "slow step size α (1 recovers the inner optimizer)", 0.0, 1.0, low_open=True),
)


class Lookahead(OptimizerWrapper):
    """Wrap ``optimizer`` with Lookahead: ``Lookahead(torch.optim.SGD(params, lr=0.1), k=5, alpha=0.5)``.

    ``slow_weights()`` is a context manager that swaps the slow weights φ in (for evaluation) and restores the fast
    weights on exit; right after a sync the two coincide.
    """

    state_key = "lookahead"

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5):
        super().__init__(optimizer)
        hyper = check_all(LOOKAHEAD_HYPERPARAMETERS, {"k": k, "alpha": alpha})
        self.k: int = hyper["k"]
        self.alpha: float = hyper["alpha"]
        self.inner_steps = 0

    def _slow_and_fast(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        fast = self._params()
        return [self.state[p]["slow"] for p in fast], fast

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        # φ_0 = θ_0 taken at the first step a parameter takes part in, not at construction (torch's convention for
        # lazy state): weights loaded, or a dtype/device changed, after the optimizer was built are respected.
        params = self._params()
        if len(self.state) < len(params):  # "slow" is the only state, so this is cheap on the hot path
            for p in params:
                if p not in self.state:
                    self.state[p]["slow"] = p.detach().clone(memory_format=torch.preserve_format)
        loss = self.optimizer.step(closure)
        self.inner_steps += 1
        if self.inner_steps % self.k == 0:
            with torch.no_grad():
                slow, fast = self._slow_and_fast()
                torch._foreach_lerp_(slow, fast, self.alpha)
                torch._foreach_copy_(fast, slow)
        return loss

    @contextmanager
    def slow_weights(self) -> Iterator[None]:
        """Evaluate with the slow weights φ: ``with opt.slow_weights(): evaluate(model)`` (before the first step
        they are the current weights)."""
        if not all(p in self.state for p in self._params()):
            yield
            return
        with torch.no_grad():
            slow, fast = self._slow_and_fast()
            backup = [p.detach().clone() for p in fast]
            torch._foreach_copy_(fast, slow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(fast, backup)

    def _extra_state(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha, "inner_steps": self.inner_steps}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.k, self.alpha, self.inner_steps = int(extra["k"]), float(extra["alpha"]), int(extra["inner_steps"])

    def _hyperparameters(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha}
