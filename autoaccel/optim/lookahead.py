"""Lookahead (Zhang, Lucas, Hinton, Ba, "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019).

Algorithm 1 of the paper, exactly: the slow weights start at the parameters of the first step, φ_0 = θ_0. The inner
optimizer takes k steps on the fast weights θ; after every k-th inner step::

    φ ← φ + α (θ − φ)
    θ ← φ

The inner optimizer's state (momentum, Adam moments) is kept across syncs, as in the paper. Two reference
implementations get the timing wrong (torch-optimizer syncs at steps 1, k+1, ...; timm starts φ at θ_k); this one
matches pytorch-optimizer's, which is paper-exact.

The algorithm's output is the slow weights φ: θ is the inner optimizer's exploration away from them, and the
authors' code evaluates φ, "which typically generalize better". ``evaluation_weights()`` swaps φ in for an
evaluation (the trial runner's every evaluation) and θ back on exit.
"""

from __future__ import annotations

from collections.abc import Callable
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

    ``with opt.evaluation_weights(): evaluate(model)`` evaluates the slow weights φ and puts the fast weights θ back
    bit for bit on exit; right after a sync the two coincide, and before the first step φ is the current weights.
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
        self._refuse_while_evaluating("step")
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

    def _output_weights(self) -> dict[torch.Tensor, torch.Tensor]:
        """φ of every parameter that has taken a step (before its first, φ_0 is the parameter itself)."""
        return {p: self.state[p]["slow"] for p in self._params() if "slow" in self.state.get(p, {})}

    def _extra_state(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha, "inner_steps": self.inner_steps}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.k, self.alpha, self.inner_steps = int(extra["k"]), float(extra["alpha"]), int(extra["inner_steps"])

    def _hyperparameters(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha}
