"""AdaHessian (Yao, Gholami, Shen, Mustafa, Keutzer, Mahoney, "ADAHESSIAN: An Adaptive Second Order Optimizer for
Machine Learning", AAAI 2021, arXiv:2006.00719).

Each Hessian refresh draws Rademacher probes z (i.i.d. ±1, from the optimizer's own generator) and estimates the
Hessian diagonal by Hutchinson's method, averaged over ``n_samples`` probes::

    D = E[z ⊙ Hz]                                     (Hz: a Hessian-vector product, by double backward)
    D^(s) = mean over the kernel of |D|               (spatial averaging: tensors of ≥ 3 dims, i.e. conv kernels)

and every step updates, with decoupled weight decay λ and Hessian power k::

    m_t = β₁ m_{t−1} + (1 − β₁) g_t,           m̂_t = m_t / (1 − β₁^t)
    v_r = β₂ v_{r−1} + (1 − β₂) D^(s) ⊙ D^(s), v̂_r = v_r / (1 − β₂^r)      (r = number of Hessian refreshes)
    θ_{t+1} = θ_t − η (m̂_t / ((√v̂_r)^k + ε) + λ θ_t)

With ``update_each = u > 1`` the Hessian is refreshed every u steps and v is updated only then, so v's bias
correction counts refreshes r, not steps t (pytorch-optimizer counts t and takes ≈1.8× too large steps at u = 4).
Spatial averaging follows the authors' image-classification code (mean of |z ⊙ Hz| over the kh × kw kernel of 4-d
conv weights; tensors of ≤ 2 dims are not averaged), extended to every tensor of ≥ 3 dims (Conv1d/Conv3d kernels),
which the reference implementations crash on.

The backward pass before a refresh step must build the graph: ``loss.backward(create_graph=True)``
(``needs_create_graph`` says whether the next step refreshes). Parameters whose gradient does not depend on any
parameter (a constant gradient) have a zero Hessian row and get D = 0 instead of crashing the double backward;
their step is then η m̂/ε, as the rule says for zero curvature: give them their own group with a smaller lr.
After the Hessian-vector product the gradients are detached, which frees the double-backward graph at once.

Under ``torch.distributed`` (data-parallel workers, without DDP's gradient averaging, which cannot carry the graph)
``step()`` averages the workers' gradients and Hessian estimates itself (``averages_gradients``); the probes agree
because every worker's generator starts from the same ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from autoaccel.config import Hyperparameter, check_all

from ._data_parallel import average_
from ._stateful import NamespacedStateOptimizer

__all__ = ["ADAHESSIAN_HYPERPARAMETERS", "AdaHessian"]

ADAHESSIAN_HYPERPARAMETERS = (
    Hyperparameter("lr", float, 0.15, "learning rate η", 0.0, low_open=True),
    Hyperparameter("beta1", float, 0.9, "gradient momentum β₁", 0.0, 1.0, high_open=True),
    Hyperparameter("beta2", float, 0.999, "Hessian-diagonal RMS decay β₂", 0.0, 1.0, high_open=True),
    Hyperparameter("eps", float, 1e-4, "denominator term ε", 0.0),
    Hyperparameter("weight_decay", float, 0.0, "decoupled weight decay λ (θ ← θ − ηλθ)", 0.0),
    Hyperparameter("hessian_power", float, 1.0, "Hessian power k of the denominator", 0.0, 1.0),
    Hyperparameter("update_each", int, 1, "refresh the Hessian estimate every this many steps", 1),
    Hyperparameter("n_samples", int, 1, "Hutchinson probes per refresh", 1),
    Hyperparameter("spatial_averaging", bool, True, "average |D| over conv kernels (tensors of ≥ 3 dims)"),
    Hyperparameter("seed", int, None, "seed of the probe generator (null: torch.initial_seed())", 0, nullable=True),
)

_GROUP_KEYS = ("lr", "beta1", "beta2", "eps", "weight_decay", "hessian_power", "spatial_averaging")


class AdaHessian(NamespacedStateOptimizer):
    """``AdaHessian(model.parameters(), lr=0.15)``; call ``loss.backward(create_graph=True)`` before ``step()``."""

    state_key = "adahessian"
    _transient = ("_scratch_buffers", "_sign_tables")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.15,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        hessian_power: float = 1.0,
        update_each: int = 1,
        n_samples: int = 1,
        spatial_averaging: bool = True,
        seed: int | None = None,
    ):
        if not (isinstance(betas, tuple | list) and len(betas) == 2):
            raise ValueError(f"AdaHessian: betas = {betas!r}: must be a pair (beta1, beta2)")
        hyper = check_all(
            ADAHESSIAN_HYPERPARAMETERS,
            {
                "lr": lr,
                "beta1": betas[0],
                "beta2": betas[1],
                "eps": eps,
                "weight_decay": weight_decay,
                "hessian_power": hessian_power,
                "update_each": update_each,
                "n_samples": n_samples,
                "spatial_averaging": spatial_averaging,
                "seed": seed,
            },
        )
        super().__init__(params, {k: hyper[k] for k in _GROUP_KEYS})
        self.update_each: int = hyper["update_each"]
        self.n_samples: int = hyper["n_samples"]
        self.seed: int = torch.initial_seed() if hyper["seed"] is None else hyper["seed"]
        self.steps = 0
        self._generators: dict[str, torch.Generator] = {}

    # -- the Hutchinson estimate --------------------------------------------------------------------------------
    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            self._generators[key] = gen
        return self._generators[key]

    def _scratch(self, p: torch.Tensor) -> torch.Tensor:
        """A flat buffer of a whole number of probe bytes (≥ ``p.numel()`` entries) kept between steps (not state:
        never saved): ``p``'s probe, then its estimate z ⊙ Hz, then its update's denominator. Fresh buffers each
        step cost more in page faults than the arithmetic (docs/performance.md)."""
        buffers: dict[torch.Tensor, torch.Tensor] = self.__dict__.setdefault("_scratch_buffers", {})
        found = buffers.get(p)
        if found is None or found.dtype != p.dtype or found.device != p.device:
            buffers[p] = found = torch.empty((p.numel() + 7) // 8 * 8, dtype=p.dtype, device=p.device)
        return found

    def _rademacher(self, p: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """A Rademacher probe (±1 entries) in ``p``'s shape, written into ``out`` (a flat buffer as
        :meth:`_scratch` makes; by default ``p``'s own), eight entries per random byte: the bits of 64-bit random
        words pick rows of a 256 × 8 table of signs. One random number per 64 entries, where
        ``torch.randint(0, 2)`` drew one per entry and dominated the step (docs/performance.md)."""
        n, rows = p.numel(), (p.numel() + 7) // 8
        words = torch.randint(
            -(2**63), 2**63 - 1, ((n + 63) // 64,), generator=self._generator(p.device), device=p.device
        )
        flat = self._scratch(p) if out is None else out
        torch.index_select(self._signs(p), 0, words.view(torch.uint8)[:rows].to(torch.int32), out=flat.view(rows, 8))
        return flat[:n].view(p.shape)

    def _signs(self, p: torch.Tensor) -> torch.Tensor:
        """The 256 × 8 table: row b holds 2·bit_i(b) − 1 for its bits i = 0…7."""
        tables: dict[tuple, torch.Tensor] = self.__dict__.setdefault("_sign_tables", {})
        key = (p.device, p.dtype)
        if key not in tables:
            bits = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1
            tables[key] = (bits * 2 - 1).to(device=p.device, dtype=p.dtype)
        return tables[key]

    def _refresh_due(self, params: list[torch.Tensor]) -> bool:
        """A scheduled refresh, or a parameter that has no Hessian estimate yet."""
        return self.steps % self.update_each == 0 or any(p not in self.state for p in params)

    averages_gradients = True  # under torch.distributed: see the module's docstring

    @property
    def needs_create_graph(self) -> bool:
        """Whether the next ``step()`` refreshes the Hessian (so its backward needs ``create_graph=True``).

        Counts the trainable parameters (``requires_grad``); one that never receives a gradient keeps this True.
        """
        params = [p for group in self.param_groups for p in group["params"] if p.requires_grad]
        return self._refresh_due(params)

    def _hessian_diagonal(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        grads = [p.grad for p in params]
        with_graph = [i for i, g in enumerate(grads) if g.requires_grad]
        if not with_graph:
            raise RuntimeError(
                "AdaHessian needs Hessian-vector products: run the backward pass as "
                "loss.backward(create_graph=True) before step() (none of the gradients carries a graph)"
            )
        estimates: list[torch.Tensor | None] = [None] * len(params)
        inputs = [params[i] for i in with_graph]
        outputs = [grads[i] for i in with_graph]
        with torch.enable_grad():
            for sample in range(self.n_samples):
                # the first probe is drawn into the scratch buffer that then holds the estimate; later ones apart
                probes = [
                    self._rademacher(p, None if sample == 0 else torch.empty_like(self._scratch(p))) for p in inputs
                ]
                hvps = torch.autograd.grad(
                    outputs, inputs, grad_outputs=probes, retain_graph=sample < self.n_samples - 1, allow_unused=True
                )
                for i, z, hz in zip(with_graph, probes, hvps, strict=True):
                    if hz is None:
                        continue
                    term = z.mul_(hz)  # the probe is not needed again: reuse its buffer
                    if self.n_samples > 1:
                        term.div_(self.n_samples)
                    estimates[i] = term if estimates[i] is None else estimates[i].add_(term)
        for p in params:
            p.grad = p.grad.detach()
        # A parameter whose gradient is constant (or unused by the HVP) has a zero Hessian row.
        return [torch.zeros_like(p) if d is None else d for p, d in zip(params, estimates, strict=True)]

    @staticmethod
    def _spatial_average(d: torch.Tensor) -> torch.Tensor:
        """|D| averaged over a kernel's spatial dims (tensors of ≥ 3 dims), in place: ``d`` is a scratch buffer."""
        if d.dim() < 3:
            return d
        dims = tuple(range(2, d.dim()))
        return d.abs_().mean(dim=dims, keepdim=True).expand_as(d)

    # -- the update ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError("AdaHessian does not support sparse gradients")
        refresh = bool(params) and self._refresh_due(params)
        estimates = self._hessian_diagonal(params) if refresh else []
        # Data-parallel: every worker drew the same probes z (same seed), so the mean of their z ⊙ H_w z is the
        # estimate for the mean loss; it goes with the gradients through one all-reduce.
        average_([p.grad for p in params] + estimates)
        diagonal = dict(zip(params, estimates, strict=True)) if refresh else {}
        for group in self.param_groups:
            self._update_group(group, diagonal)
        self.steps += 1
        return loss

    def _update_group(self, group: dict[str, Any], diagonal: dict[torch.Tensor, torch.Tensor]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        beta1, beta2, lr, k = group["beta1"], group["beta2"], group["lr"], group["hessian_power"]
        exp_avgs, exp_hess, bias1, bias2 = [], [], [], []
        refreshed_v, refreshed_d = [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["hessian_step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_hessian_diag_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            if p in diagonal:
                state["hessian_step"] += 1
                d = diagonal[p]
                refreshed_v.append(state["exp_hessian_diag_sq"])
                refreshed_d.append(self._spatial_average(d) if group["spatial_averaging"] else d)
            exp_avgs.append(state["exp_avg"])
            exp_hess.append(state["exp_hessian_diag_sq"])
            bias1.append(1.0 - beta1 ** state["step"])
            bias2.append(math.sqrt(1.0 - beta2 ** state["hessian_step"]) ** k)
        grads = [p.grad for p in params]
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        if refreshed_v:
            torch._foreach_mul_(refreshed_v, beta2)
            torch._foreach_addcmul_(refreshed_v, refreshed_d, refreshed_d, 1.0 - beta2)
        # the denominator in the scratch buffers: the estimates in them are folded into exp_hess by now
        denom = [self._scratch(p)[: p.numel()].view(p.shape) for p in params]
        torch._foreach_copy_(denom, exp_hess)
        torch._foreach_sqrt_(denom)
        if k != 1.0:
            torch._foreach_pow_(denom, k)
        torch._foreach_div_(denom, bias2)
        torch._foreach_add_(denom, group["eps"])
        if group["weight_decay"] != 0:
            torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
        torch._foreach_addcdiv_(params, exp_avgs, denom, [-lr / b for b in bias1])

    # -- checkpointing ------------------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "update_each": self.update_each,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "generators": {device: gen.get_state() for device, gen in self._generators.items()},
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.steps = int(extra["steps"])
        self.update_each = int(extra["update_each"])
        self.n_samples = int(extra["n_samples"])
        self.seed = int(extra["seed"])
        self._generators = {}
        # A data-parallel worker resumes from rank 0's checkpoint, whose probes were drawn on rank 0's GPU: a single
        # saved GPU generator belongs to this optimizer's single GPU, whatever its index.
        saved_gpus = [d for d in extra["generators"] if torch.device(d).type == "cuda"]
        own_gpus = {p.device for group in self.param_groups for p in group["params"] if p.device.type == "cuda"}
        moved = {saved_gpus[0]: next(iter(own_gpus))} if len(saved_gpus) == 1 and len(own_gpus) == 1 else {}
        for device, gen_state in extra["generators"].items():
            if torch.device(device).type == "cuda" and not torch.cuda.is_available():
                continue  # a GPU checkpoint resumed on CPU: the probes restart from the seed
            self._generator(torch.device(moved.get(device, device))).set_state(gen_state.cpu())
