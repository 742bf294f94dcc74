"""Stable Anderson acceleration with an adaptive moving average (Lupo Pasini, Yin, Reshniak, Stoyanov, "Stable
Anderson Acceleration for Deep Learning", arXiv:2110.14813; reference code ORNL/AADL).

The base optimizer's step, applied ``store_every`` times, is a fixed-point map x ↦ G(x) on each param group's
parameters. Every block of ``store_every`` steps the wrapper stores the pair (x_i, g_i = G(x_i)) with residual
f_i = g_i − x_i, keeping the last m + 1 pairs (m = ``history``). Every ``frequency`` steps it extrapolates (type-II
Anderson, Walker & Ni 2011), per param group::

    α = argmin ‖Σ_i α_i f_i‖² + λ_eff ‖α_old‖²   subject to Σ_i α_i = 1
        (α_old: the weights of the pairs older than the newest; λ_eff = λ · ‖ΔF‖²_F, λ = ``regularization``)
    x_new = Σ_i α_i ((1 − β) x_i + β g_i)            (β = ``relaxation``; β = 1: x_new = Σ α_i g_i)

This equals AADL's x̄ + β f̄ with γ from lstsq(ΔF, f_m). Pairs are stored explicitly, so every column is a true
input/output pair of the iteration whatever ``frequency`` is: AADL's history mixes pre-jump iterates with
iterates computed from the jumped point, which on a deterministic quadratic makes it *worse* than plain gradient
descent at frequency < depth. The small least-squares problem is solved in float64 (the differences of float32
iterates are exact there) by truncated SVD.

Safeguards: λ relative to the data; when the weights exceed ``max_coefficient`` in absolute value (nearly collinear
residuals, typical of stagnating or plain consecutive iterates) λ is raised along a ladder until they do not — a
hard rejection there would leave the next windows just as collinear and AA stuck off; an extrapolation whose
weights or point are not finite is rejected and the plain iterate kept; with ``safeguard=True`` a closure's loss
decides (the extrapolated point must beat the plain iterate on the same closure).

Moving average (the paper's stabilisation for small noisy batches): the last w raw iterates (w =
``averaging_window``) are kept after every base step; with ``averaging="on"`` the parameters are replaced by their
mean μ; with ``"auto"`` only while the relative standard deviation across the window exceeds τ (``rsd_threshold``)::

    RSD = ‖σ‖₂ / ‖μ‖₂                       ("norm_ratio", default: scale-robust; σ, μ elementwise over the window)
    RSD = max_e σ_e / max_e μ_e             ("max_ratio": AADL's form; never fires when all μ_e < 0)

The averaged point is what the iteration produced, so it is what the stored pair records as g_i. Base-optimizer
state (momentum, Adam moments) is kept across extrapolations, as in AADL. BatchNorm buffers are not extrapolated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from ._hyper import Hyperparameter, check_all
from ._wrapper import OptimizerWrapper

__all__ = ["ANDERSON_HYPERPARAMETERS", "AndersonAcceleration"]

ANDERSON_HYPERPARAMETERS = (
    Hyperparameter("history", int, 5, "m: past iterate pairs mixed with the newest (the window size)", 1),
    Hyperparameter(
        "frequency",
        int,
        None,
        "extrapolate every this many steps, a multiple of store_every (null: store_every)",
        1,
        nullable=True,
    ),
    Hyperparameter("relaxation", float, 1.0, "β: weight of g_i against x_i in the mix", 0.0, 1.0, low_open=True),
    Hyperparameter("regularization", float, 0.0, "λ: Tikhonov term, relative to ‖ΔF‖²", 0.0),
    Hyperparameter("store_every", int, 1, "base steps per stored pair (one application of G)", 1),
    Hyperparameter("warmup", int, 0, "base steps before the first pair is stored", 0),
    Hyperparameter("averaging", str, "auto", "moving average of the iterates", choices=("off", "on", "auto")),
    Hyperparameter(
        "averaging_window", int, None, "w: iterates in the moving average (null: max(2, history))", 2, nullable=True
    ),
    Hyperparameter("rsd_threshold", float, 0.1, "τ: average while RSD > τ (averaging = auto)", 0.0, low_open=True),
    Hyperparameter(
        "rsd_criterion",
        str,
        "norm_ratio",
        "RSD form: ‖σ‖/‖μ‖ or AADL's max σ / max μ",
        choices=("norm_ratio", "max_ratio"),
    ),
    Hyperparameter("max_coefficient", float, 1e3, "reject extrapolations with a larger |α_i|", 1.0),
    Hyperparameter("safeguard", bool, False, "accept an extrapolation only if the closure's loss decreases"),
)

# Relative cutoff of the truncated-SVD solve: directions of ΔF below 1e-6 of the largest carry no signal.
_RCOND = 1e-12


class AndersonAcceleration(OptimizerWrapper):
    """``AndersonAcceleration(torch.optim.Adam(params), history=5, averaging="auto")``.

    With ``safeguard=True`` pass a closure to ``step``: it is forwarded to the inner optimizer as usual and also
    evaluated under ``torch.no_grad()`` at the plain and the extrapolated point, so guard its backward with
    ``if torch.is_grad_enabled(): loss.backward()``.
    """

    state_key = "anderson"

    def __init__(
        self,
        optimizer: Optimizer,
        history: int = 5,
        frequency: int | None = None,
        relaxation: float = 1.0,
        regularization: float = 0.0,
        store_every: int = 1,
        warmup: int = 0,
        averaging: str = "auto",
        averaging_window: int | None = None,
        rsd_threshold: float = 0.1,
        safeguard: bool = False,
        rsd_criterion: str = "norm_ratio",
        max_coefficient: float = 1e3,
    ):
        super().__init__(optimizer)
        hyper = check_all(
            ANDERSON_HYPERPARAMETERS,
            {
                "history": history,
                "frequency": frequency,
                "relaxation": relaxation,
                "regularization": regularization,
                "store_every": store_every,
                "warmup": warmup,
                "averaging": averaging,
                "averaging_window": averaging_window,
                "rsd_threshold": rsd_threshold,
                "rsd_criterion": rsd_criterion,
                "max_coefficient": max_coefficient,
                "safeguard": safeguard,
            },
        )
        if hyper["frequency"] is None:
            hyper["frequency"] = hyper["store_every"]
        if hyper["frequency"] % hyper["store_every"]:
            raise ValueError(
                f"AndersonAcceleration: frequency = {hyper['frequency']} must be a multiple of "
                f"store_every = {hyper['store_every']} (extrapolation happens when a pair is complete)"
            )
        if hyper["averaging_window"] is None:
            hyper["averaging_window"] = max(2, hyper["history"])
        self.hyper: dict[str, Any] = hyper
        self.steps = 0
        self.counters = {"extrapolations": 0, "accepted": 0, "regularized": 0, "averaging_decisions": 0, "averaged": 0}
        self._groups: list[dict[str, int]] = []
        for group in self.param_groups:
            self._init_group(group)

    def _init_group(self, group: dict[str, Any]) -> None:
        pairs, window = self.hyper["history"] + 1, self.hyper["averaging_window"]
        for p in group["params"]:
            state = self.state[p]
            state["x_hist"] = p.new_zeros((pairs, *p.shape))
            state["g_hist"] = p.new_zeros((pairs, *p.shape))
            if self.hyper["averaging"] != "off":
                state["window"] = p.new_zeros((window, *p.shape))
        self._groups.append({"pairs": 0, "slot": 0, "window_count": 0, "window_slot": 0})

    # -- the step -----------------------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        h = self.hyper
        if h["safeguard"] and closure is None:
            raise ValueError("AndersonAcceleration(safeguard=True).step() needs a closure that returns the loss")
        since = self.steps - h["warmup"]
        block_start = since >= 0 and since % h["store_every"] == 0
        block_end = since >= 0 and (since + 1) % h["store_every"] == 0
        if block_start:
            with torch.no_grad():
                for group, book in zip(self.param_groups, self._groups, strict=True):
                    slot = book["slot"]
                    torch._foreach_copy_([self.state[p]["x_hist"][slot] for p in group["params"]], group["params"])
        loss = self._inner_step(closure)
        with torch.no_grad():
            if h["averaging"] != "off":
                for group, book in zip(self.param_groups, self._groups, strict=True):
                    self._moving_average(group, book)
            if block_end:
                for group, book in zip(self.param_groups, self._groups, strict=True):
                    slot = book["slot"]
                    torch._foreach_copy_([self.state[p]["g_hist"][slot] for p in group["params"]], group["params"])
                    book["slot"] = (slot + 1) % (h["history"] + 1)
                    book["pairs"] = min(book["pairs"] + 1, h["history"] + 1)
                if (since + 1) % h["frequency"] == 0:
                    self._extrapolate(closure)
        self.steps += 1
        return loss

    def _moving_average(self, group: dict[str, Any], book: dict[str, int]) -> None:
        params = group["params"]
        slot = book["window_slot"]
        torch._foreach_copy_([self.state[p]["window"][slot] for p in params], params)
        book["window_slot"] = (slot + 1) % self.hyper["averaging_window"]
        book["window_count"] = count = min(book["window_count"] + 1, self.hyper["averaging_window"])
        if count < 2:
            return
        windows = [self.state[p]["window"][:count] for p in params]
        if self.hyper["averaging"] == "on":
            means = [w.mean(dim=0) for w in windows]
            apply = True
        else:
            stats = [torch.var_mean(w, dim=0, correction=1) for w in windows]
            means = [mean for _, mean in stats]
            apply = self._relative_std([var for var, _ in stats], means) > self.hyper["rsd_threshold"]
            self.counters["averaging_decisions"] += 1
        if apply:
            torch._foreach_copy_(params, means)
            self.counters["averaged"] += 1

    def _relative_std(self, variances: list[torch.Tensor], means: list[torch.Tensor]) -> float:
        if self.hyper["rsd_criterion"] == "max_ratio":
            top_std = torch.stack([v.max() for v in variances]).max().sqrt()
            top_mean = torch.stack([m.max() for m in means]).max()
            return (top_std / top_mean).item()
        var_sum = torch.stack([v.sum(dtype=torch.float64) for v in variances]).sum()
        mean_sq = torch.stack([m.double().square().sum() for m in means]).sum()
        rsd = (var_sum.sqrt() / mean_sq.sqrt()).item()
        return math.inf if math.isnan(rsd) else rsd

    def _extrapolate(self, closure: Callable[[], Any] | None) -> None:
        proposals = []
        for group, book in zip(self.param_groups, self._groups, strict=True):
            if book["pairs"] < 2:
                continue
            alpha = self._mixing_weights(group, book)
            self.counters["extrapolations"] += 1
            if alpha is None:
                continue
            point = self._mix(group, book, alpha)
            if point is not None:
                proposals.append((group, book, point))
        if not proposals:
            return
        if self.hyper["safeguard"]:
            plain_loss = _loss(closure)
        for group, _, point in proposals:
            torch._foreach_copy_(group["params"], point)
        if self.hyper["safeguard"]:
            new_loss = _loss(closure)
            if not (math.isfinite(new_loss) and new_loss < plain_loss):
                for group, book, _ in proposals:
                    self._restore_plain(group, book)
                return
        self.counters["accepted"] += len(proposals)

    def _restore_plain(self, group: dict[str, Any], book: dict[str, int]) -> None:
        newest = (book["slot"] - 1) % (self.hyper["history"] + 1)
        torch._foreach_copy_(group["params"], [self.state[p]["g_hist"][newest] for p in group["params"]])

    def _mixing_weights(self, group: dict[str, Any], book: dict[str, int]) -> torch.Tensor | None:
        """α (float64, on CPU, ordered by slot) or None when the extrapolation must be rejected."""
        count = book["pairs"]
        newest = (book["slot"] - 1) % (self.hyper["history"] + 1)
        older = [i for i in range(count) if i != newest]
        gram = torch.zeros(len(older), len(older), dtype=torch.float64)
        rhs = torch.zeros(len(older), dtype=torch.float64)
        grams, rhss = [], []
        for p in group["params"]:
            state = self.state[p]
            residuals = (state["g_hist"][:count].double() - state["x_hist"][:count].double()).reshape(count, -1)
            diffs = residuals[older] - residuals[newest]
            grams.append(diffs @ diffs.T)
            rhss.append(diffs @ residuals[newest])
        gram += torch.stack(grams).sum(dim=0).cpu()
        rhs += torch.stack(rhss).sum(dim=0).cpu()
        if not (torch.isfinite(gram).all() and torch.isfinite(rhs).all()):
            return None
        scale = gram.trace().item()
        if scale == 0:
            return None  # the iteration has stopped moving: nothing to extrapolate
        # (ΔFᵀΔF + λ_eff I) α_old = −ΔFᵀ f_new by one symmetric eigendecomposition, so that each rung of the
        # regularization ladder costs O(m²): the smallest λ whose weights respect the cap wins. Directions below
        # _RCOND of the largest eigenvalue are noise and dropped (truncated SVD).
        eigenvalues, vectors = torch.linalg.eigh(gram)
        keep = eigenvalues > _RCOND * eigenvalues.max()
        projected = (vectors.T @ rhs)[keep]
        basis = vectors[:, keep]
        for relative in _ladder(self.hyper["regularization"]):
            solution = -basis @ (projected / (eigenvalues[keep] + relative * scale))
            alpha = torch.zeros(count, dtype=torch.float64)
            alpha[older] = solution
            alpha[newest] = 1.0 - solution.sum()
            if torch.isfinite(alpha).all() and alpha.abs().max() <= self.hyper["max_coefficient"]:
                if relative > self.hyper["regularization"]:
                    self.counters["regularized"] += 1
                return alpha
        return None

    def _mix(self, group: dict[str, Any], book: dict[str, int], alpha: torch.Tensor) -> list[torch.Tensor] | None:
        count, beta = book["pairs"], self.hyper["relaxation"]
        point = []
        for p in group["params"]:
            state = self.state[p]
            weights = alpha.to(p.device)
            mixed = torch.tensordot(weights, state["g_hist"][:count].double(), dims=1)
            if beta != 1.0:
                inputs = torch.tensordot(weights, state["x_hist"][:count].double(), dims=1)
                mixed.mul_(beta).add_(inputs, alpha=1 - beta)
            point.append(mixed.to(p.dtype))
        finite = torch.stack([torch.isfinite(x).all() for x in point]).all()
        return point if finite.item() else None

    # -- checkpointing and reports ------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {
            "hyper": dict(self.hyper),
            "steps": self.steps,
            "counters": dict(self.counters),
            "groups": [dict(book) for book in self._groups],
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        if len(extra["groups"]) != len(self._groups):
            raise ValueError(
                f"AndersonAcceleration.load_state_dict: state for {len(extra['groups'])} param groups, "
                f"the optimizer has {len(self._groups)}"
            )
        if extra["hyper"]["history"] != self.hyper["history"] or (
            extra["hyper"]["averaging_window"] != self.hyper["averaging_window"]
        ):
            raise ValueError(
                "AndersonAcceleration.load_state_dict: the checkpoint's history/averaging_window "
                f"({extra['hyper']['history']}/{extra['hyper']['averaging_window']}) differ from this optimizer's "
                f"({self.hyper['history']}/{self.hyper['averaging_window']}); build it with the same values"
            )
        self.hyper = dict(extra["hyper"])
        self.steps = int(extra["steps"])
        self.counters = {k: int(v) for k, v in extra["counters"].items()}
        self._groups = [{k: int(v) for k, v in book.items()} for book in extra["groups"]]

    def statistics(self) -> dict[str, float]:
        c = self.counters
        return {
            "aa_extrapolations": float(c["extrapolations"]),
            "aa_regularized_fraction": c["regularized"] / c["extrapolations"] if c["extrapolations"] else 0.0,
            "aa_accepted_fraction": c["accepted"] / c["extrapolations"] if c["extrapolations"] else 0.0,
            "aa_averaging_fraction": c["averaged"] / max(c["averaging_decisions"], 1)
            if self.hyper["averaging"] == "auto"
            else float(self.hyper["averaging"] == "on"),
        }

    def _hyperparameters(self) -> dict[str, Any]:
        return dict(self.hyper)


def _ladder(regularization: float) -> list[float]:
    """λ itself, then 1e-12, 1e-10, ..., 1e2 (relative to ‖ΔF‖²) above it: at 1e2 α is within 1% of the plain step."""
    return [regularization] + [10.0**e for e in range(-12, 3, 2) if 10.0**e > regularization]


def _loss(closure: Callable[[], Any] | None) -> float:
    with torch.no_grad():
        value = closure()
    return float(value)
