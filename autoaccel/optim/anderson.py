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
descent at frequency < depth. The residual differences are formed in the parameters' dtype (g_i − x_i is exact
there) and only the m × m Gram matrix is accumulated and solved in float64, by truncated eigendecomposition.

Defaults: a window of m + 1 fresh pairs per extrapolation (``frequency = (history + 1) · store_every``, AADL's
consistent setting) with |α_i| ≤ 10, rather than the textbook extrapolation at every step; why, with the
measurements behind it, is in ``docs/optimizers.md``. On a deterministic problem ``frequency=1`` can accelerate more.

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

from autoaccel.config import Hyperparameter, check_all

from ._wrapper import OptimizerWrapper, iter_stack

__all__ = ["ANDERSON_HYPERPARAMETERS", "AndersonAcceleration"]

ANDERSON_HYPERPARAMETERS = (
    Hyperparameter("history", int, 5, "m: older iterate pairs mixed with the newest (AADL history_depth − 2)", 1),
    Hyperparameter(
        "frequency",
        int,
        None,
        "extrapolate every this many steps, a multiple of store_every (null: (history + 1) × store_every)",
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
    Hyperparameter("max_coefficient", float, 10.0, "cap on |α_i|; above it λ is raised (see the ladder)", 1.0),
    Hyperparameter("safeguard", bool, False, "accept an extrapolation only if the closure's loss decreases"),
    Hyperparameter(
        "reset_inner_state", bool, False, "after an accepted jump, clear the base optimizer's momentum/moments"
    ),
    Hyperparameter(
        "restart_average", bool, True, "after an accepted jump, restart the moving average's window at the new point"
    ),
)

# Columns per chunk of the Gram matrix and the window statistics: few enough chunks that the Python loop costs
# little, small enough that a chunk's (m + 1) or w rows stay in cache (scratch blocks of this width are reused).
_CHUNK = 1 << 18
# Relative cutoff of the truncated-SVD solve: directions of ΔF below 1e-6 of the largest carry no signal.
_RCOND = 1e-12


class AndersonAcceleration(OptimizerWrapper):
    """``AndersonAcceleration(torch.optim.Adam(params), history=5, averaging="auto")``.

    With ``safeguard=True`` pass a closure to ``step``: it is forwarded to the inner optimizer as usual and also
    evaluated under ``torch.no_grad()`` at the plain and the extrapolated point, so guard its backward with
    ``if torch.is_grad_enabled(): loss.backward()``.
    """

    state_key = "anderson"
    _transient = ("_scratch_blocks",)

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
        max_coefficient: float = 10.0,
        reset_inner_state: bool = False,
        restart_average: bool = True,
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
                "reset_inner_state": reset_inner_state,
                "restart_average": restart_average,
            },
        )
        if hyper["frequency"] is None:
            hyper["frequency"] = (hyper["history"] + 1) * hyper["store_every"]
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
        self._reset_transient()
        for group in self.param_groups:
            self._init_group(group)

    def _init_group(self, group: dict[str, Any]) -> None:
        # "open": a pair's input was stored in this block; a group added mid-block waits for the next block start.
        self._groups.append({"pairs": 0, "slot": 0, "window_count": 0, "window_slot": 0, "open": 0})

    def _reset_transient(self) -> None:
        self._scratch_blocks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}  # one chunk's rows

    def _buffer(self, p: torch.Tensor, name: str) -> torch.Tensor:
        """The history (x_hist, g_hist) or averaging-window buffer of ``p``, allocated at first use as torch's
        optimizers allocate state: a dtype or device change after construction is respected."""
        state = self.state[p]
        if name not in state:
            rows = self.hyper["averaging_window"] if name == "window" else self.hyper["history"] + 1
            state[name] = p.new_zeros((rows, *p.shape))  # contiguous, whatever p's layout
        return state[name]

    @property
    def needs_closure(self) -> bool:
        return self.hyper["safeguard"] or super().needs_closure

    # -- the step -----------------------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        h = self.hyper
        if h["safeguard"] and closure is None:
            raise ValueError("AndersonAcceleration(safeguard=True).step() needs a closure that returns the loss")
        since = self.steps - h["warmup"]
        block_start = since >= 0 and since % h["store_every"] == 0
        block_end = since >= 0 and (since + 1) % h["store_every"] == 0
        groups = [(g, book) for g, book in zip(self.param_groups, self._groups, strict=True) if g["params"]]
        if block_start:
            with torch.no_grad():
                for group, book in groups:
                    params = group["params"]
                    torch._foreach_copy_([self._buffer(p, "x_hist")[book["slot"]] for p in params], params)
                    book["open"] = 1
        loss = self.optimizer.step(closure)
        with torch.no_grad():
            if h["averaging"] != "off":
                for group, book in groups:
                    self._moving_average(group, book)
            if block_end:
                for group, book in groups:
                    if not book["open"]:
                        continue
                    params = group["params"]
                    torch._foreach_copy_([self._buffer(p, "g_hist")[book["slot"]] for p in params], params)
                    book["slot"] = (book["slot"] + 1) % (h["history"] + 1)
                    book["pairs"] = min(book["pairs"] + 1, h["history"] + 1)
                    book["open"] = 0
                if (since + 1) % h["frequency"] == 0:
                    self._extrapolate(closure)
        self.steps += 1
        return loss

    def _moving_average(self, group: dict[str, Any], book: dict[str, int]) -> None:
        params = group["params"]
        slot = book["window_slot"]
        torch._foreach_copy_([self._buffer(p, "window")[slot] for p in params], params)
        book["window_slot"] = (slot + 1) % self.hyper["averaging_window"]
        book["window_count"] = count = min(book["window_count"] + 1, self.hyper["averaging_window"])
        if count < 2:
            return
        apply = True
        if self.hyper["averaging"] == "auto":
            rsd = self._rsd(params, count)
            apply = math.isnan(rsd) or rsd > self.hyper["rsd_threshold"]
            self.counters["averaging_decisions"] += 1
        if apply:  # the mean, straight into the parameters
            for p in params:
                torch.sum(self.state[p]["window"][:count], dim=0, out=p.data).div_(count)
            self.counters["averaged"] += 1

    def _rsd(self, params: list[torch.Tensor], count: int) -> float:
        """The window's relative standard deviation: ‖σ‖/‖μ‖ (or AADL's max σ / max μ), σ and μ the elementwise
        unbiased standard deviation and mean over the window's rows.

        In column chunks through a scratch block: the chunk's mean in its first row, its deviations below; nothing
        parameter-sized is written (a fresh parameter-sized temporary each step costs more in page faults than the
        arithmetic), and the chunks are large enough that the loop costs little, small enough to stay in cache.
        """
        max_ratio = self.hyper["rsd_criterion"] == "max_ratio"
        mean_sq, top_mean, spread_sq, top_variance = [], [], [], []
        for p in params:
            window = self.state[p]["window"][:count].reshape(count, -1)
            for start in range(0, window.shape[1], _CHUNK):
                block = window[:, start : start + _CHUNK]
                scratch = self._block(p, count + 1, block.shape[1])
                mean, deviations = scratch[0], scratch[1:]
                torch.sum(block, dim=0, out=mean)
                mean.div_(count)
                torch.sub(block, mean, out=deviations)
                if max_ratio:
                    top_mean.append(mean.max())
                    top_variance.append(deviations.square_().sum(dim=0).max())
                else:
                    mean_sq.append(torch.linalg.vector_norm(mean).double().square())
                    spread_sq.append(torch.linalg.vector_norm(deviations).double().square())
        if max_ratio:
            top_std = (torch.stack(top_variance).max() / (count - 1)).sqrt()
            return (top_std / torch.stack(top_mean).max()).item()
        return ((torch.stack(spread_sq).sum() / (count - 1)).sqrt() / torch.stack(mean_sq).sum().sqrt()).item()

    def _block(self, p: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
        """A (rows, columns) scratch block for one chunk's deviations or residuals, in ``p``'s dtype and device."""
        key = (p.device, p.dtype)
        size = (max(self.hyper["averaging_window"], self.hyper["history"]) + 2) * _CHUNK
        if key not in self._scratch_blocks:
            self._scratch_blocks[key] = torch.empty(size, dtype=p.dtype, device=p.device)
        return self._scratch_blocks[key][: rows * columns].view(rows, columns)

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
        if self.hyper["restart_average"]:
            # The jump is not noise: left in the window it raises the RSD, and "auto" averaging would pull the
            # parameters back toward the iterates before it (docs/optimizers.md measures both).
            for _, book, _ in proposals:
                book["window_count"] = book["window_slot"] = 0  # rows [:count] are then the post-jump iterates
        if self.hyper["reset_inner_state"]:
            # The base optimizer's momentum and moments describe the trajectory the jump left; carried on, a
            # heavy-ball velocity keeps pushing along it for ~1/(1 − β) steps. Its optimizer re-creates them lazily.
            base = list(iter_stack(self))[-1]
            for group, _, _ in proposals:
                for p in group["params"]:
                    base.state.pop(p, None)

    def _restore_plain(self, group: dict[str, Any], book: dict[str, int]) -> None:
        newest = (book["slot"] - 1) % (self.hyper["history"] + 1)
        torch._foreach_copy_(group["params"], [self.state[p]["g_hist"][newest] for p in group["params"]])

    def _mixing_weights(self, group: dict[str, Any], book: dict[str, int]) -> torch.Tensor | None:
        """α (float64, on CPU, ordered by slot) or None when the extrapolation must be rejected."""
        count = book["pairs"]
        newest = (book["slot"] - 1) % (self.hyper["history"] + 1)
        older = [i for i in range(count) if i != newest]
        parts = []
        for p in group["params"]:
            state = self.state[p]
            g_hist, x_hist = state["g_hist"][:count].reshape(count, -1), state["x_hist"][:count].reshape(count, -1)
            # In cache-sized column chunks: g_i − x_i is exact in floating point while the two are within a factor
            # 2 (Sterbenz), so the differences keep the parameters' dtype; only the small products go to float64.
            for start in range(0, g_hist.shape[1], _CHUNK):
                stop = start + _CHUNK
                residuals = self._block(p, count, g_hist[:, start:stop].shape[1])
                torch.sub(g_hist[:, start:stop], x_hist[:, start:stop], out=residuals)
                if residuals.dtype in (torch.float16, torch.bfloat16):
                    residuals = residuals.float()
                newest_residual = residuals[newest].clone()
                residuals -= newest_residual  # row `newest` becomes 0: the rest are f_i − f_newest
                parts.append((residuals @ residuals.T, residuals @ newest_residual))
        if not parts:
            return None  # an empty param group
        gram = torch.stack([g.double() for g, _ in parts]).sum(dim=0).cpu()[older][:, older]
        rhs = torch.stack([r.double() for _, r in parts]).sum(dim=0).cpu()[older]
        rcond = max(_RCOND, 10 * torch.finfo(parts[0][0].dtype).eps)
        if not (torch.isfinite(gram).all() and torch.isfinite(rhs).all()):
            return None
        scale = gram.trace().item()
        if scale == 0:
            return None  # the iteration has stopped moving: nothing to extrapolate
        # (ΔFᵀΔF + λ_eff I) α_old = −ΔFᵀ f_new by one symmetric eigendecomposition, so that each rung of the
        # regularization ladder costs O(m²): the smallest λ whose weights respect the cap wins. Eigen-directions
        # below rcond of the largest are rounding noise of the Gram matrix and dropped (truncated SVD).
        eigenvalues, vectors = torch.linalg.eigh(gram)
        keep = eigenvalues > rcond * eigenvalues.max()
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
        """Σ α_i ((1 − β) x_i + β g_i), in the parameters' dtype: with |α_i| ≤ max_coefficient the rounding stays
        within a few ulps of the largest iterate."""
        count, beta = book["pairs"], self.hyper["relaxation"]
        point = []
        for p in group["params"]:
            state = self.state[p]
            weights = alpha.to(device=p.device, dtype=p.dtype)
            mixed = torch.tensordot(weights, state["g_hist"][:count], dims=1)
            if beta != 1.0:
                inputs = torch.tensordot(weights, state["x_hist"][:count], dims=1)
                mixed.mul_(beta).add_(inputs, alpha=1 - beta)
            point.append(mixed)
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
        self.hyper = {"restart_average": False, **extra["hyper"]}  # saved before the restart existed: it did not
        self.steps = int(extra["steps"])
        self.counters = {k: int(v) for k, v in extra["counters"].items()}
        self._groups = [{"open": 0, **{k: int(v) for k, v in book.items()}} for book in extra["groups"]]

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
