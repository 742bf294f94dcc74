"""AdaScale SGD (Johnson, Agrawal, Gu, Guestrin, "AdaScale SGD: A User-Friendly Algorithm for Distributed Training",
ICML 2020, arXiv:2007.05105).

Training at scale S (a batch S times the base batch B that the LR schedule was tuned for), each step combines
n ≥ 2 independent gradients g⁽¹⁾…g⁽ⁿ⁾ (accumulated micro-batches and/or data-parallel workers) with mean ḡ::

    σ̂² = (S/n) · (Σᵢ ‖g⁽ⁱ⁾‖² − n ‖ḡ‖²) / (n − 1)       gradient variance of one scale-1 batch (≥ 1e-6)
    μ̂² = ‖ḡ‖² − σ̂²/S                                     squared norm of the true gradient (≥ 0)
    σ̄², μ̄² = debiased exponential averages with θ = max(1 − n/1000, 0) (``smoothing``)
    r_t = (σ̄² + μ̄²) / (σ̄²/S + μ̄²)   ∈ [1, S]             the gain
    θ_{t+1} = θ_t − r_t · lr · ḡ                           (the inner optimizer runs with lr × r_t)
    τ_{t+1} = τ_t + r_t                                    scale-invariant progress

Schedules and stopping use τ (``scale_invariant_steps``), not t; a wrapped Demon optimizer advances its schedule
by r_t per step. Statistics are kept per param group, as in fairscale (``gain(i)``); ``gain()`` combines the groups.

Gradients: each micro-batch loss must be divided by ``num_gradients_to_accumulate`` so that ``.grad`` holds the
mean, and ``step()`` follows exactly that many ``backward()`` calls. Under ``torch.distributed`` the per-worker sums
are all-reduced (n = world size × accumulation). State is plain floats: it loads with ``weights_only=True``.
Not supported yet: AMP loss scaling (the hooks would see scaled gradients and pin the gain at S); after a step
skipped for overflow, ``zero_grad()`` clears the accumulated statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch.optim import Optimizer

from autoaccel.config import Hyperparameter, check_all

from ._data_parallel import worker_count
from ._wrapper import OptimizerWrapper, iter_stack

__all__ = ["ADASCALE_HYPERPARAMETERS", "AdaScale"]

ADASCALE_HYPERPARAMETERS = (
    Hyperparameter(
        "scale",
        float,
        None,
        "S: batch size over the base batch (null: world size × accumulation)",
        1.0,
        nullable=True,
    ),
    Hyperparameter("num_gradients_to_accumulate", int, 1, "backward() calls (micro-batches) per step", 1),
    Hyperparameter(
        "smoothing",
        float,
        None,
        "EMA factor θ of the statistics (null: max(1 − n/1000, 0))",
        0.0,
        1.0,
        high_open=True,
        nullable=True,
    ),
)

_MIN_VARIANCE = 1e-6


class AdaScale(OptimizerWrapper):
    """``AdaScale(torch.optim.SGD(params, lr=0.1, momentum=0.9), num_gradients_to_accumulate=4)``."""

    state_key = "adascale"
    _transient = ("_hooks", "_micro_sqnorm", "_backward_calls")

    def __init__(
        self,
        optimizer: Optimizer,
        scale: float | None = None,
        num_gradients_to_accumulate: int = 1,
        smoothing: float | None = None,
    ):
        super().__init__(optimizer)
        from .adahessian import AdaHessian

        if any(isinstance(layer, AdaHessian) for layer in iter_stack(optimizer)):
            raise TypeError(
                "AdaScale cannot wrap AdaHessian: its gradient hooks would see the Hessian-vector backward "
                "and graph-carrying gradients (allowed inner optimizers: the SGD family)"
            )
        hyper = check_all(
            ADASCALE_HYPERPARAMETERS,
            {"scale": scale, "num_gradients_to_accumulate": num_gradients_to_accumulate, "smoothing": smoothing},
        )
        self.world_size = worker_count()
        self.num_gradients_to_accumulate: int = hyper["num_gradients_to_accumulate"]
        n = self.world_size * self.num_gradients_to_accumulate
        if n < 2:
            raise ValueError(
                "AdaScale needs ≥ 2 gradients per step to estimate their variance: "
                f"num_gradients_to_accumulate = {num_gradients_to_accumulate} with world size {self.world_size}; "
                "accumulate ≥ 2 micro-batches or train data-parallel"
            )
        self.scale: float = float(n) if hyper["scale"] is None else hyper["scale"]
        self.smoothing: float = max(1.0 - n / 1000.0, 0.0) if hyper["smoothing"] is None else hyper["smoothing"]
        self.scale_invariant_steps = 0.0
        # Per group: debiased EMAs of σ² and μ² (biased accumulators and their debias weight), as floats.
        self._ema: list[dict[str, float]] = [{"variance": 0.0, "sqnorm": 0.0, "weight": 0.0} for _ in self.param_groups]
        self._reset_transient()

    def _init_group(self, group: dict[str, Any]) -> None:
        self._ema.append({"variance": 0.0, "sqnorm": 0.0, "weight": 0.0})
        self._micro_sqnorm.append(None)
        self._register_hooks(len(self._ema) - 1, group)

    def _reset_transient(self) -> None:
        """Per-step accumulators and the gradient hooks, which a copy must register on its own parameters."""
        self._micro_sqnorm: list[torch.Tensor | None] = [None] * len(self.param_groups)
        self._backward_calls: dict[torch.Tensor, int] = {}
        self._hooks: list[Any] = []
        for index, group in enumerate(self.param_groups):
            self._register_hooks(index, group)

    def _register_hooks(self, index: int, group: dict[str, Any]) -> None:
        for p in group["params"]:
            if p.requires_grad:
                self._hooks.append(p.register_hook(self._make_hook(index, p)))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients and this step's statistics (e.g. after a step skipped for overflowing gradients)."""
        super().zero_grad(set_to_none=set_to_none)
        self._micro_sqnorm = [None] * len(self._micro_sqnorm)
        self._backward_calls.clear()

    def _make_hook(self, group_index: int, param: torch.Tensor) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            half = grad.dtype in (torch.float16, torch.bfloat16)
            sq = torch.linalg.vector_norm(grad.detach(), dtype=torch.float32 if half else None).square()
            acc = self._micro_sqnorm[group_index]
            self._micro_sqnorm[group_index] = sq if acc is None else acc + sq
            self._backward_calls[param] = self._backward_calls.get(param, 0) + 1

        return hook

    def unhook(self) -> None:
        """Remove the gradient hooks (the optimizer cannot step afterwards)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    # -- the gain -----------------------------------------------------------------------------------------------
    def _check_accumulation(self) -> None:
        world = worker_count()
        if world != self.world_size:
            raise RuntimeError(
                f"AdaScale was built with world size {self.world_size} and steps with {world}: build it after "
                "torch.distributed.init_process_group so that the gradients of all workers are counted"
            )
        calls = set(self._backward_calls.values())
        if calls and calls != {self.num_gradients_to_accumulate}:
            raise RuntimeError(
                f"AdaScale.step() after {sorted(calls)} backward() calls; it expects exactly "
                f"num_gradients_to_accumulate = {self.num_gradients_to_accumulate} between two steps"
            )

    def _update_statistics(self) -> None:
        n = self.world_size * self.num_gradients_to_accumulate
        S = self.scale
        micro, mean = [], []
        for index, group in enumerate(self.param_groups):
            grads = [p.grad for p in group["params"] if p.grad is not None]
            acc = self._micro_sqnorm[index]
            if acc is None or not grads:
                micro.append(torch.zeros((), dtype=torch.float32))
                mean.append(torch.zeros((), dtype=torch.float32))
                continue
            # The hooks saw the gradients of losses divided by the accumulation count: undo that scaling.
            micro.append(acc * self.num_gradients_to_accumulate**2)
            norms = torch._foreach_norm(grads)
            mean.append(torch.linalg.vector_norm(torch.stack([x.double() for x in norms])).square())
        device = self._params()[0].device
        sums = torch.stack([x.to(device) for x in micro + mean]).double()
        if self.world_size > 1:
            dist.all_reduce(sums)  # Σ over workers of the local micro sums; the means are equal on every worker
            sums[len(micro) :] /= self.world_size
        values = sums.tolist()
        for index in range(len(self.param_groups)):
            if self._micro_sqnorm[index] is None:
                continue
            micro_sum, mean_sq = values[index], values[len(micro) + index]
            variance = max((S / n) * (micro_sum - n * mean_sq) / (n - 1), _MIN_VARIANCE)
            sqnorm = max(mean_sq - variance / S, 0.0)
            if not (math.isfinite(variance) and math.isfinite(sqnorm)):
                continue  # an overflowed (e.g. AMP) gradient must not poison the averages
            ema, theta = self._ema[index], self.smoothing
            ema["variance"] = theta * ema["variance"] + (1 - theta) * variance
            ema["sqnorm"] = theta * ema["sqnorm"] + (1 - theta) * sqnorm
            ema["weight"] = theta * ema["weight"] + (1 - theta)

    def _gain_from(self, variance: float, sqnorm: float) -> float:
        return (variance + sqnorm) / (variance / self.scale + sqnorm)

    def gain(self, group_index: int | None = None) -> float:
        """r for one param group, or (``None``) for all groups' statistics combined; 1 before the first step."""
        groups = range(len(self._ema)) if group_index is None else [group_index]
        variance = sqnorm = 0.0
        for i in groups:
            ema = self._ema[i]
            if ema["weight"] > 0:
                variance += ema["variance"] / ema["weight"]
                sqnorm += ema["sqnorm"] / ema["weight"]
        if variance == 0.0 and sqnorm == 0.0:
            return 1.0
        return self._gain_from(variance, sqnorm)

    # -- what the training loop asks --------------------------------------------------------------------------------
    @property
    def micro_batches(self) -> int:
        return self.num_gradients_to_accumulate

    def set_horizon(self, total_steps: int) -> None:
        """A budget of ``total_steps`` steps at this batch is ``total_steps × S`` scale-invariant (scale-1) steps:
        what the inner schedules count, and what τ must reach."""
        super().set_horizon(math.ceil(total_steps * self.scale))

    @property
    def budget_progress(self) -> float:
        """τ ÷ S: the budget spent, in steps at this batch. A training loop that stops when it reaches its step
        budget trains until τ = S × budget, the scale-invariant budget (Johnson et al., Algorithm 1)."""
        return self.scale_invariant_steps / self.scale

    @property
    def lr_gain(self) -> float:
        """The gain r of the last step (all param groups' statistics combined): the loop reports lr × r."""
        return self.gain()

    # -- the step -----------------------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        self._refuse_while_evaluating("step")
        if closure is not None:
            raise ValueError(
                "AdaScale.step() takes no closure: run the accumulated backward() calls first, then step()"
            )
        self._check_accumulation()
        self._update_statistics()
        gains = [self.gain(i) for i in range(len(self.param_groups))]
        total = self.gain()
        for layer in iter_stack(self.optimizer):
            if hasattr(layer, "progress_increment"):
                layer.progress_increment = total
        saved = [group["lr"] for group in self.param_groups]
        for group, r in zip(self.param_groups, gains, strict=True):
            group["lr"] = group["lr"] * r
        try:
            loss = self.optimizer.step()
        finally:
            for group, lr in zip(self.param_groups, saved, strict=True):
                group["lr"] = lr
        self.scale_invariant_steps += total
        self._micro_sqnorm = [None] * len(self._micro_sqnorm)
        self._backward_calls.clear()
        return loss

    # -- checkpointing and reports ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self._backward_calls:
            raise RuntimeError("AdaScale.state_dict() in the middle of an accumulation cycle: save right after step()")
        return super().state_dict()

    def _extra_state(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "num_gradients_to_accumulate": self.num_gradients_to_accumulate,
            "smoothing": self.smoothing,
            "scale_invariant_steps": self.scale_invariant_steps,
            "ema": [dict(e) for e in self._ema],
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.scale = float(extra["scale"])
        self.num_gradients_to_accumulate = int(extra["num_gradients_to_accumulate"])
        self.smoothing = float(extra["smoothing"])
        self.scale_invariant_steps = float(extra["scale_invariant_steps"])
        if len(extra["ema"]) != len(self._ema):
            raise ValueError(
                f"AdaScale.load_state_dict: statistics for {len(extra['ema'])} param groups, "
                f"the optimizer has {len(self._ema)}"
            )
        self._ema = [{k: float(v) for k, v in e.items()} for e in extra["ema"]]

    def statistics(self) -> dict[str, float]:
        return {"adascale_gain": self.gain(), "adascale_scale_invariant_steps": self.scale_invariant_steps}

    def _hyperparameters(self) -> dict[str, Any]:
        return {"scale": self.scale, "num_gradients_to_accumulate": self.num_gradients_to_accumulate}
