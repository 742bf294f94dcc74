"""A noisy, ill-conditioned linear least-squares problem: the fast workload for tests and for Anderson's averaging.

    f(w) = 1/(2n) Σᵢ (aᵢᵀw − yᵢ)²,   aᵢ ~ N(0, diag(λ)),  λ log-spaced in [1/κ, 1],  yᵢ = aᵢᵀw* + σ εᵢ

The Hessian is ≈ diag(λ) with condition number κ. A mini-batch of size B gives an unbiased gradient whose noise
variance scales as 1/B; with B = n (one batch per epoch) every step is the same deterministic gradient step.
The primary metric is the relative suboptimality (f(w) − f*)/(f(0) − f*) on the training objective, whose
minimiser f* is solved exactly once; ``val_loss`` is the mean squared error on held-out samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from autoaccel.config import Hyperparameter

from ._base import InMemoryBatches, Workload

__all__ = ["NoisyQuadratic"]


class NoisyQuadratic(Workload):
    name = "quadratic"
    task = "regression"
    summary = "noisy ill-conditioned least squares; batch noise ∝ 1/batch size, deterministic at full batch"
    options = (
        Hyperparameter("dim", int, 20, "number of weights", 1),
        Hyperparameter("samples", int, 512, "training samples n", 1),
        Hyperparameter("condition", float, 100.0, "condition number κ of the Hessian", 1.0),
        Hyperparameter("noise", float, 0.1, "label noise σ", 0.0),
        Hyperparameter("data_seed", int, 0, "seed of the problem instance", 0),
    )
    metric = "val_suboptimality"
    mode = "min"
    metrics = ("val_loss", "val_suboptimality")
    default_batch_size = 32

    @property
    def target(self) -> float:
        return 1e-2

    def setup(self, device: torch.device) -> None:
        if getattr(self, "_train", None) is not None and self.device == device:
            return
        super().setup(device)
        c = self.config
        g = torch.Generator().manual_seed(c["data_seed"])
        scale = torch.logspace(0.0, -torch.tensor(c["condition"]).log10().item(), c["dim"], dtype=torch.float64).sqrt()
        w_star = torch.randn(c["dim"], 1, generator=g, dtype=torch.float64)

        def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            a = torch.randn(n, c["dim"], generator=g, dtype=torch.float64) * scale
            return a, a @ w_star + c["noise"] * torch.randn(n, 1, generator=g, dtype=torch.float64)

        a, y = draw(c["samples"])
        a_val, y_val = draw(max(c["samples"] // 4, 1))
        w_opt = torch.linalg.lstsq(a, y).solution
        self._f_star = _objective(a, y, w_opt)
        self._f_zero = _objective(a, y, torch.zeros_like(w_opt))
        self._full = (a.float().to(device), y.float().to(device))
        self._val = (a_val.float().to(device), y_val.float().to(device))
        self._train = InMemoryBatches(*self._full)

    def model(self) -> nn.Module:
        return nn.Linear(self.config["dim"], 1, bias=False)

    def train_size(self) -> int:
        return len(self._train)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        return self._train(batch_size, generator)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        a, y = batch
        return 0.5 * (model(a) - y).square().mean()

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        w = model.weight.detach().double().T.cpu()
        a, y = (t.double().cpu() for t in self._full)
        gap = (_objective(a, y, w) - self._f_star) / (self._f_zero - self._f_star)
        a_val, y_val = self._val
        return {"val_loss": (model(a_val) - y_val).square().mean().item(), "val_suboptimality": max(gap, 0.0)}


def _objective(a: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> float:
    return 0.5 * (a @ w - y).square().mean().item()
