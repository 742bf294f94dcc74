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

"norm_ratio" is evaluated as (w − 1)‖σ‖² = Σ_r ‖x_r‖² − w‖μ‖², with each row's ‖x_r‖² kept from when it was
written, so a step reads the window once (for μ); where rounding of that difference could put the RSD on the
wrong side of τ, it is computed from the deviations instead. Either way the decision is the same.

The averaged point is what the iteration produced, so it is what the stored pair records as g_i. It is also the
algorithm's output, and so are an accepted extrapolation and, while neither applies, the plain iterate: each is
written into the parameters and the next base step starts from it (unlike Polyak–Ruppert averaging or SWA, whose
average is read out beside an iteration that goes on unaveraged). A run evaluates the parameters, with no swap (the
default ``evaluation_weights()``).

Base-optimizer state (momentum, Adam moments) is kept across extrapolations, as in AADL. BatchNorm buffers are not
extrapolated.
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
    _transient = ("_scratch_blocks", "_sums")

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
        self._window_squares: list[torch.Tensor | None] = []  # per group: ‖x_r‖² of each window row
        self._reset_transient()
        for group in self.param_groups:
            self._init_group(group)

    def _init_group(self, group: dict[str, Any]) -> None:
        # "open": a pair's input was stored in this block; a group added mid-block waits for the next block start.
        self._groups.append({"pairs": 0, "slot": 0, "window_count": 0, "window_slot": 0, "open": 0})
        self._window_squares.append(torch.zeros(self.hyper["averaging_window"], dtype=torch.float64))

    def _reset_transient(self) -> None:
        self._scratch_blocks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}  # one chunk's rows
        self._sums: dict[torch.Tensor, torch.Tensor] = {}  # per parameter: its window's sum (averaging = auto)

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
        self._refuse_while_evaluating("step")
        h = self.hyper
        if h["safeguard"] and closure is None:
            raise ValueError("AndersonAcceleration(safeguard=True).step() needs a closure that returns the loss")
        since = self.steps - h["warmup"]
        block_start = since >= 0 and since % h["store_every"] == 0
        block_end = since >= 0 and (since + 1) % h["store_every"] == 0
        groups = [(g, book) for g, book in zip(self.param_groups, self._groups, strict=True) if g["params"]]
        indices = {id(book): i for i, book in enumerate(self._groups)}
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
                    self._moving_average(indices[id(book)], group, book)
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

    def _moving_average(self, index: int, group: dict[str, Any], book: dict[str, int]) -> None:
        params = group["params"]
        slot = book["window_slot"]
        torch._foreach_copy_([self._buffer(p, "window")[slot] for p in params], params)
        auto = self.hyper["averaging"] == "auto"
        # each row's ‖x_r‖², kept beside the row: the "norm_ratio" RSD then needs no second pass over the window
        if auto and self.hyper["rsd_criterion"] == "norm_ratio":
            self._row_squares(index, params)[slot] = torch.stack([_squared_norm(p) for p in params]).sum()
        book["window_slot"] = (slot + 1) % self.hyper["averaging_window"]
        book["window_count"] = count = min(book["window_count"] + 1, self.hyper["averaging_window"])
        if count < 2:
            return
        if not auto:
            for p in params:
                torch.sum(self.state[p]["window"][:count], dim=0, out=p.data).div_(count)
            self.counters["averaged"] += 1
            return
        sums = [self._window_sum(p) for p in params]
        for p, total in zip(params, sums, strict=True):
            torch.sum(self.state[p]["window"][:count], dim=0, out=total)
        rsd = None
        if self.hyper["rsd_criterion"] == "norm_ratio":
            rsd = self._rsd_from_sums(params, sums, self._row_squares(index, params)[:count].sum(), count)
        if rsd is None:
            rsd = self._rsd(params, count)
        self.counters["averaging_decisions"] += 1
        if math.isnan(rsd) or rsd > self.hyper["rsd_threshold"]:  # the mean, straight into the parameters
            for p, total in zip(params, sums, strict=True):
                torch.div(total, count, out=p.data)
            self.counters["averaged"] += 1

    def _row_squares(self, index: int, params: list[torch.Tensor]) -> torch.Tensor:
        """‖x_r‖² of the group's window rows, over all its parameters (float64, one per row, on the parameters'
        device); recomputed from the rows for a checkpoint saved before they were kept."""
        squares = self._window_squares[index]
        if squares is None:
            rows = [self._buffer(p, "window").reshape(self.hyper["averaging_window"], -1) for p in params]
            squares = torch.stack([torch.stack([_squared_norm(row) for row in window]) for window in rows]).sum(0)
        if squares.device != params[0].device:
            squares = squares.to(params[0].device)
        self._window_squares[index] = squares
        return squares

    def _window_sum(self, p: torch.Tensor) -> torch.Tensor:
        """A reused buffer for Σ_r x_r of ``p``'s window (not state: it is rewritten before every use)."""
        total = self._sums.get(p)
        if total is None or total.dtype != p.dtype or total.device != p.device:
            self._sums[p] = total = torch.empty_like(p, memory_format=torch.contiguous_format)
        return total

    def _rsd_from_sums(
        self, params: list[torch.Tensor], sums: list[torch.Tensor], rows_sq: torch.Tensor, count: int
    ) -> float | None:
        """‖σ‖/‖μ‖ from the window sums and the rows' kept ‖x_r‖²: (c − 1)‖σ‖² = Σ_r ‖x_r‖² − c‖μ‖², one pass
        over the sums instead of two over the window. None when that difference of near-equal terms cannot tell
        the RSD from τ (then the caller computes it from the deviations themselves)."""
        mean_sq = torch.stack([_squared_norm(total) for total in sums]).sum() / count**2
        mean_sq, rows_sq = torch.stack([mean_sq, rows_sq]).tolist()  # one host sync
        spread_sq = (rows_sq - count * mean_sq) / (count - 1)
        if not (math.isfinite(spread_sq) and math.isfinite(mean_sq)) or mean_sq == 0:
            return None
        # Each squared norm is within 64 ulps (see _squared_norm) and the window's sum adds about one ulp per row;
        # the band bounds both terms' rounding with a factor 2 to spare, and only inside it is the exact RSD needed.
        eps = max(torch.finfo(p.dtype).eps for p in params)
        band = (256 + 4 * count) * eps * (rows_sq + count * mean_sq) / ((count - 1) * mean_sq)
        rsd_sq, tau_sq = max(spread_sq, 0.0) / mean_sq, self.hyper["rsd_threshold"] ** 2
        return None if abs(rsd_sq - tau_sq) <= band else math.sqrt(rsd_sq)

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
        weighted = []
        for group, book in zip(self.param_groups, self._groups, strict=True):
            if book["pairs"] < 2:
                continue
            alpha = self._mixing_weights(group, book)
            self.counters["extrapolations"] += 1
            if alpha is not None:
                weighted.append((group, book, alpha))
        if not weighted:
            return
        if self.hyper["safeguard"]:
            plain_loss = _loss(closure)  # the parameters are still the plain iterate
        proposals = []
        for group, book, alpha in weighted:
            if self._mix(group, book, alpha):
                proposals.append((group, book))
            else:
                self._restore_plain(group, book)
        if not proposals:
            return
        if self.hyper["safeguard"]:
            new_loss = _loss(closure)
            if not (math.isfinite(new_loss) and new_loss < plain_loss):
                for group, book in proposals:
                    self._restore_plain(group, book)
                return
        self.counters["accepted"] += len(proposals)
        if self.hyper["restart_average"]:
            # The jump is not noise: left in the window it raises the RSD, and "auto" averaging would pull the
            # parameters back toward the iterates before it (docs/optimizers.md measures both).
            for _, book in proposals:
                book["window_count"] = book["window_slot"] = 0  # rows [:count] are then the post-jump iterates
        if self.hyper["reset_inner_state"]:
            # The base optimizer's momentum and moments describe the trajectory the jump left; carried on, a
            # heavy-ball velocity keeps pushing along it for ~1/(1 − β) steps. Its optimizer re-creates them lazily.
            base = list(iter_stack(self))[-1]
            for group, _ in proposals:
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
                # rows 0..count − 1: the residuals, then f_i − f_newest; row count: f_newest (no allocation)
                block = self._block(p, count + 1, g_hist[:, start:stop].shape[1])
                torch.sub(g_hist[:, start:stop], x_hist[:, start:stop], out=block[:count])
                block[count].copy_(block[newest])
                if block.dtype in (torch.float16, torch.bfloat16):
                    block = block.float()
                block[:count] -= block[count]  # row `newest` becomes 0
                parts.append(_gram(block))  # [:count, :count] = ΔFᵀΔF, [:count, count] = ΔFᵀ f_newest
        if not parts:
            return None  # an empty param group
        products = torch.stack([part.double() for part in parts]).sum(dim=0).cpu()
        gram, rhs = products[older][:, older], products[older, count]
        rcond = max(_RCOND, 10 * torch.finfo(parts[0].dtype).eps)
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

    def _mix(self, group: dict[str, Any], book: dict[str, int], alpha: torch.Tensor) -> bool:
        """Set the parameters to Σ α_i ((1 − β) x_i + β g_i), in their dtype (with |α_i| ≤ max_coefficient the
        rounding stays within a few ulps of the largest iterate); False if the point is not finite. The plain
        iterate they held is g_newest, kept in the history for :meth:`_restore_plain`."""
        count, beta = book["pairs"], self.hyper["relaxation"]
        params = group["params"]
        weights = alpha.tolist()
        # row by row over all parameters at once, into the parameters: a tensordot over the slot axis reads the
        # history more slowly, and a fresh parameter-sized result costs page faults
        _weighted_sum(params, weights, [self.state[p]["g_hist"] for p in params], count)
        if beta != 1.0:
            torch._foreach_mul_(params, beta)
            for i in range(count):
                rows = [self.state[p]["x_hist"][i] for p in params]
                torch._foreach_add_(params, rows, alpha=(1 - beta) * weights[i])
        # min and max propagate NaN and ±inf and cannot overflow; isfinite(p).all() is twenty times slower on CPU
        extremes = [torch.stack(torch.aminmax(p)) for p in params if p.numel()]
        return not extremes or bool(torch.isfinite(torch.stack(extremes)).all())

    # -- checkpointing and reports ------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {
            "hyper": dict(self.hyper),
            "steps": self.steps,
            "counters": dict(self.counters),
            "groups": [dict(book) for book in self._groups],
            "window_squares": [None if t is None else t.detach().cpu().clone() for t in self._window_squares],
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
        # kept since the RSD is computed from them; a checkpoint from before recomputes them from the rows
        saved = extra.get("window_squares") or [None] * len(self._groups)
        self._window_squares = [None if t is None else t.clone() for t in saved]

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


def _gram(block: torch.Tensor, piece: int = 1 << 14) -> torch.Tensor:
    """block @ blockᵀ for a short, wide block, as a batch of products over column pieces: one matrix product with
    a tiny output and a huge inner dimension runs on one thread several times slower (measured), and the partial
    sums round less."""
    rows, width = block.shape
    whole = width - width % piece
    gram = torch.zeros(rows, rows, dtype=block.dtype, device=block.device)
    if whole:
        pieces = block[:, :whole].view(rows, whole // piece, piece).transpose(0, 1)
        gram += torch.bmm(pieces, pieces.transpose(1, 2)).sum(dim=0)
    if whole < width:
        rest = block[:, whole:]
        gram += rest @ rest.T
    return gram


def _weighted_sum(out: list[torch.Tensor], weights: list[float], histories: list[torch.Tensor], count: int) -> None:
    """out[k] = Σ_i w_i · histories[k][i] over the rows 0..count − 1."""
    torch._foreach_copy_(out, [h[0] for h in histories])
    torch._foreach_mul_(out, weights[0])
    for i in range(1, count):
        torch._foreach_add_(out, [h[i] for h in histories], alpha=weights[i])


def _squared_norm(x: torch.Tensor) -> torch.Tensor:
    """‖x‖² in float64, from float32 norms of 4096-element rows, at the cost of one float32 pass: a float32 norm over
    millions of elements is off by up to 1e-3 relative (measured), these by about 1e-8 on random data and by up to
    64 ulps on rows of near-equal values, whose rounding errors all point one way."""
    flat = x.detach().reshape(-1)
    if flat.numel() == 0:
        return torch.zeros((), dtype=torch.float64, device=x.device)
    whole = flat.numel() - flat.numel() % 4096
    dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else None  # no half-precision overflow
    parts = [torch.linalg.vector_norm(flat[:whole].view(-1, 4096), dim=1, dtype=dtype)] if whole else []
    if whole < flat.numel():
        parts.append(torch.linalg.vector_norm(flat[whole:], dtype=dtype).reshape(1))
    return torch.cat(parts).double().square().sum()


def _loss(closure: Callable[[], Any] | None) -> float:
    with torch.no_grad():
        value = closure()
    return float(value)
