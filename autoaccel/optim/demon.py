"""Demon: decaying momentum (Chen, Wolfe, Li, Kyrillidis, "Demon: Improved Neural Network Training with Momentum
Decay", ICASSP 2022, arXiv:1910.04952).

Demon decays the total future contribution of a gradient, β/(1 − β), linearly to zero over the run::

    β_t / (1 − β_t) = (1 − t/T) · β_init / (1 − β_init)
    β_t = β_init · (1 − t/T) / ((1 − β_init) + β_init · (1 − t/T))

with t the optimizer step (from 0) and T the run's total number of steps. The raw formula is singular just past T
(β = −999 at t ≈ 1.11 T for β_init = 0.9), so t is clamped to [0, T]: β_T = 0 and it stays there.

One global progress counter t drives the schedule (not one per parameter or group) and is saved in the state dict.
Under :class:`~autoaccel.optim.AdaScale` it advances by the gain r each step (scale-invariant iterations), so T is
then counted in scale-1 steps; nested in Lookahead it counts inner steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from autoaccel.config import Hyperparameter, check_all
from autoaccel.errors import ConfigError

from ._stateful import NamespacedStateOptimizer

__all__ = ["DEMON_ADAM_HYPERPARAMETERS", "DEMON_SGD_HYPERPARAMETERS", "DemonAdam", "DemonSGD", "demon_momentum"]

_BETA_INIT = Hyperparameter("beta_init", float, 0.9, "momentum β (Adam β₁) at step 0", 0.0, 1.0, high_open=True)
_TOTAL_STEPS = Hyperparameter(
    "total_steps",
    int,
    None,
    "T: optimizer steps of the whole run (scale-1 steps under AdaScale); null: the training loop sets it",
    1,
    nullable=True,
)
_LR = Hyperparameter("lr", float, None, "learning rate η", 0.0, low_open=True)
_WEIGHT_DECAY = Hyperparameter("weight_decay", float, 0.0, "L2 penalty added to the gradient", 0.0)

DEMON_SGD_HYPERPARAMETERS = (
    _LR,
    _BETA_INIT,
    _TOTAL_STEPS,
    _WEIGHT_DECAY,
    Hyperparameter("nesterov", bool, False, "Nesterov momentum (with the decayed β_t)"),
)
DEMON_ADAM_HYPERPARAMETERS = (
    Hyperparameter("lr", float, 1e-3, "learning rate η", 0.0, low_open=True),
    _BETA_INIT,
    Hyperparameter("beta2", float, 0.999, "second-moment decay β₂", 0.0, 1.0, high_open=True),
    Hyperparameter("eps", float, 1e-8, "denominator term ε", 0.0),
    _TOTAL_STEPS,
    _WEIGHT_DECAY,
    Hyperparameter(
        "variant",
        str,
        "paper",
        "'paper': undampened m = g + β_t m; 'ema': Adam's m = β_t m + (1-β_t) g",
        choices=("paper", "ema"),
    ),
    Hyperparameter("decoupled_weight_decay", bool, False, "AdamW-style decay θ ← θ(1 − η·λ) instead of L2"),
)


def demon_momentum(step: float, total_steps: int, beta_init: float) -> float:
    """β_t of the Demon schedule, with ``step`` clamped to ``[0, total_steps]``."""
    if not (isinstance(total_steps, int | float) and total_steps >= 1):
        raise ValueError(f"demon_momentum: total_steps = {total_steps!r}: must be ≥ 1")
    if not 0.0 <= beta_init < 1.0:
        raise ValueError(f"demon_momentum: beta_init = {beta_init!r}: must be in [0, 1)")
    remaining = 1.0 - min(max(float(step), 0.0), float(total_steps)) / total_steps
    return beta_init * remaining / ((1.0 - beta_init) + beta_init * remaining)


class _DemonSchedule(NamespacedStateOptimizer):
    """The global progress counter and its checkpointing, shared by DemonSGD and DemonAdam."""

    state_key = "demon"

    def _init_schedule(self, total_steps: int | None) -> None:
        # None: the training loop knows the run's length and calls set_horizon before the first step
        self.total_steps: int | None = _TOTAL_STEPS.check(total_steps)
        self._horizon_given = total_steps is not None
        self.progress = 0.0
        # AdaScale sets this to its gain before each step, so that progress counts scale-invariant iterations.
        self.progress_increment = 1.0

    def set_horizon(self, total_steps: int) -> None:
        """T from the training loop's budget, unless the optimizer was built with its own."""
        if not self._horizon_given:
            self.total_steps = _TOTAL_STEPS.check(total_steps)

    def beta(self, group: dict[str, Any]) -> float:
        """The momentum β_t the next step uses for ``group``."""
        if self.total_steps is None:
            raise ConfigError(
                "total_steps", None, "the number of optimizer steps of the run: pass it, or call set_horizon(T) first"
            )
        return demon_momentum(self.progress, self.total_steps, group["beta_init"])

    def _extra_state(self) -> dict[str, Any]:
        return {"progress": self.progress, "total_steps": self.total_steps}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.progress = float(extra["progress"])
        self.total_steps = None if extra["total_steps"] is None else int(extra["total_steps"])

    def statistics(self) -> dict[str, float]:
        return {"demon_beta": self.beta(self.param_groups[0])}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, grads = _grads(group, type(self).__name__)
            if params:
                self._update(group, params, grads, self.beta(group))
        self.progress += self.progress_increment
        return loss

    def _update(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], beta: float
    ) -> None:
        """Apply one step with momentum ``beta`` to the parameters of ``group`` that have gradients."""
        raise NotImplementedError


def _grads(group: dict[str, Any], name: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    params, grads = [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{name} does not support sparse gradients")
        params.append(p)
        grads.append(p.grad)
    return params, grads


class DemonSGD(_DemonSchedule):
    """SGD with Demon momentum: the paper's undampened heavy ball with β_t from :func:`demon_momentum`::

        b_{t+1} = β_t b_t + g_t            (g_t includes the L2 term λθ_t when weight_decay = λ > 0)
        θ_{t+1} = θ_t − η b_{t+1}          (Nesterov: θ_{t+1} = θ_t − η (g_t + β_t b_{t+1}))

    For a constant η this is the paper's v_{t+1} = β_t v_t − η g_t, θ_{t+1} = θ_t + v_{t+1} (v = −η b); like
    ``torch.optim.SGD`` it applies the current η to the whole buffer when a scheduler changes η. It equals
    ``torch.optim.SGD(momentum=β_t, dampening=0)`` step for step, with the same ``momentum_buffer`` state.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        beta_init: float = 0.9,
        total_steps: int | None = None,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        hyper = check_all(
            DEMON_SGD_HYPERPARAMETERS,
            {"lr": lr, "beta_init": beta_init, "weight_decay": weight_decay, "nesterov": nesterov},
        )
        super().__init__(params, hyper)
        self._init_schedule(total_steps)

    def _update(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], beta: float
    ) -> None:
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        decayed, decayed_grads = [], []
        for p, g in zip(params, grads, strict=True):
            state = self.state[p]
            if "momentum_buffer" in state:
                decayed.append(state["momentum_buffer"])
                decayed_grads.append(g)
            else:
                state["momentum_buffer"] = torch.clone(g).detach()
        if decayed:
            torch._foreach_mul_(decayed, beta)
            torch._foreach_add_(decayed, decayed_grads)
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        direction = torch._foreach_add(grads, bufs, alpha=beta) if group["nesterov"] else bufs
        torch._foreach_add_(params, direction, alpha=-group["lr"])


class DemonAdam(_DemonSchedule):
    """Adam with Demon momentum, in the paper's reading (``variant="paper"``) or the common one (``"ema"``).

    ``paper`` (Algorithm 2, undampened first moment; no first-moment bias correction, there is no EMA shrinkage to
    undo)::

        m_t = β_t m_{t−1} + g_t
        v_t = β₂ v_{t−1} + (1 − β₂) g_t²,   v̂_t = v_t / (1 − β₂^t)
        θ_t = θ_{t−1} − η m_t / (√v̂_t + ε)

    Its first steps are ≈ 1/(1 − β_init) times Adam's for the same η: search η lower by about (1 − β_init).

    ``ema`` (β_t plugged into Adam's exponential average)::

        m_t = β_t m_{t−1} + (1 − β_t) g_t,  m̂_t = m_t / (1 − Π_{s≤t} β_s)

    The bias correction uses the exact product of the β's used so far (third-party code uses β_t^t, which is
    wrong while β changes). ``weight_decay`` adds λθ to the gradient (as ``torch.optim.Adam``), or, with
    ``decoupled_weight_decay=True``, shrinks θ by (1 − ηλ) first (as AdamW).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        beta_init: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        total_steps: int | None = None,
        weight_decay: float = 0.0,
        variant: str = "paper",
        decoupled_weight_decay: bool = False,
    ):
        hyper = check_all(
            DEMON_ADAM_HYPERPARAMETERS,
            {
                "lr": lr,
                "beta_init": beta_init,
                "beta2": beta2,
                "eps": eps,
                "weight_decay": weight_decay,
                "variant": variant,
                "decoupled_weight_decay": decoupled_weight_decay,
            },
        )
        super().__init__(params, hyper)
        self._init_schedule(total_steps)

    def _update(
        self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], beta: float
    ) -> None:
        beta2, lr, wd = group["beta2"], group["lr"], group["weight_decay"]
        paper = group["variant"] == "paper"
        exp_avgs, exp_avg_sqs, bias2_sqrt, step_sizes = [], [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if not paper:
                    state["beta1_product"] = 1.0
            state["step"] += 1
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            bias2_sqrt.append(math.sqrt(1.0 - beta2 ** state["step"]))
            if paper:
                step_sizes.append(-lr)
            else:
                state["beta1_product"] *= beta
                step_sizes.append(-lr / (1.0 - state["beta1_product"]))
        if wd != 0:
            if group["decoupled_weight_decay"]:
                torch._foreach_mul_(params, 1.0 - lr * wd)
            else:
                grads = torch._foreach_add(grads, params, alpha=wd)
        if paper:
            torch._foreach_mul_(exp_avgs, beta)
            torch._foreach_add_(exp_avgs, grads)
        else:
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)
