"""The verdict's test: is a technique better than its baseline, how sure is that, and what could the runs show?

One verdict row rests on paired log ratios ``d = log(technique ÷ baseline)`` of the final metric, turned so that
``d < 0`` is better whatever the metric's direction (for a metric to maximise, ``log(baseline ÷ technique)``). A run
pair is technique tuning replicate ``i``'s configuration and baseline replicate ``j``'s, both run on seed ``s``. A
failed run is the worst result, never a finite stand-in: ``d = +∞`` when only the technique failed, ``−∞`` when only
the baseline did, ``0`` when both did.

Estimate, interval and two-sided test (level ``α = 1 − ci``), by the tuning replicates ``R`` each side has:

- **R = 1** (a sweep from before replicates, or one replicate asked for): the **exact Wilcoxon signed-rank test over
  seeds** (Wilcoxon 1945), its Hodges–Lehmann estimate (the median of the Walsh averages ``w = (d_a + d_b)/2``,
  ``a ≤ b``) and the exact interval that inverts the same test (Hollander, Wolfe & Chicken, *Nonparametric
  Statistical Methods*, 3rd ed., §3.2). With ``T`` the signed-rank statistic of ``n`` seeds under the null (its
  exact distribution, every sign pattern equally likely) and ``c`` the largest count with ``P(T ≤ c) ≤ α/2``, the
  interval runs from the (c+1)-th smallest Walsh average to the (c+1)-th largest, and
  ``p = min(1, 2·P(T ≤ min(#{w ≥ 0}, #{w ≤ 0})))``, so that ``p ≤ α`` exactly when the interval excludes 0. A
  Walsh average of +∞ and −∞ has no sign and a tie at 0 has none either: both count on each side, which can only
  widen the interval. Ranks need no distribution, and failures take the extreme ranks. The smallest ``p`` over
  ``n`` seeds is ``2/2ⁿ``: below 6 seeds no row can reach 5%, hence :data:`MIN_SEEDS`.
- **R ≥ 2 on both sides: a t over tuning replicates.** ``h_ij``: the Hodges–Lehmann estimate of technique
  replicate ``i`` against baseline replicate ``j`` over their paired seeds; the estimate ``D = mean h_ij``; its
  standard error from how much each side's replicates disagree, ``se² = s²(row means)/R_t + s²(column means)/R_b``
  (a two-sample mean's; the replicate-by-replicate interaction is counted twice, which errs on the wide side),
  with Welch–Satterthwaite's degrees of freedom ``ν``; interval ``D ± t_{1−α/2,ν}·se``, ``p = 2·P(t_ν > |D|/se)``.
  Which configuration each study happened to find is then inside the uncertainty. Every replicate runs the same
  seeds, so a seed's own effect is common to every ``h_ij`` and still cancels (the interval is for these seeds).
  When some ``h_ij`` is infinite (that configuration failed on most seeds) there is no mean: the row falls back to
  the signed-rank test over all its matched runs (technique replicate ``r`` against baseline replicate ``r``), in
  which every failure is the worst result, but tuning luck is no longer a separate term.
- **Equivalence** (two one-sided tests, Schuirmann 1987): with the margin ``m`` and ``Δ = log(1 + m)``,
  ``p_equivalence`` is the larger one-sided ``p`` of the same test against ``θ ≥ Δ`` and against ``θ ≤ −Δ``:
  ``p_equivalence ≤ α`` exactly when the ``1 − 2α`` interval of the ratio lies inside ``(1/(1 + m), 1 + m)``.
- **Correction over every row reported together** (:func:`holm_shaffer`): Holm's step-down (Holm 1979) over the
  two tests of every row, with Shaffer's (1986) count of the hypotheses that can still be true: a row's "no
  difference" and "a difference of at least the margin" cannot both be, so step ``k`` multiplies its ``p`` by the
  number of rows with a test left, not by the number of tests left. The family-wise error (any false claim in the
  table) stays ≤ α whatever the rows' dependence (rows that share a baseline's runs are correlated).
- **Detectable ratio** (:func:`detectable`): the smallest effect the row would find with 80% power, on the log scale
  ``δ = (t_{1−α/(2K),ν} + t_{0.8,ν})·σ̂`` with ``K`` the rows reported together (the Bonferroni level: a row that
  clears it clears Holm's whatever the others show). For the t over replicates ``σ̂ = se`` and ``ν`` as above. For
  the signed-rank test, whose discreteness matters at the levels a correction asks for (10 seeds at 5%/12 reject
  only when at most one small seed points the other way), ``δ = k(n, α/K)·sd(d)``, where ``k`` is the shift in
  standard deviations of normal seed noise at which the exact test rejects with 80% probability, found by bisection
  on 4,000 fixed normal draws (seed 0: the same row states the same number every time); beyond 40 seeds the
  asymptotic ``k = (t_{1−α/(2K),n−1} + t_{0.8,n−1})/√(n·3/π)`` (3/π: the test's efficiency against a t under
  normal errors, Lehmann 1975). ``sd(d)`` is the seeds' standard deviation, or with failures among them
  ``1.4826·MAD(d)``. ``δ = ∞`` when even ``n`` seeds all on one side cannot clear the level (``2/2ⁿ > α/K``; the
  ratio is then 0: no gain could be detected), NaN when most runs failed (no finite spread). The row's
  ``detectable_ratio`` is ``exp(−δ)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MIN_SEEDS",
    "REPLICATES",
    "RUNS",
    "SEEDS",
    "Evidence",
    "detectable",
    "holm_shaffer",
    "location",
    "matched_cells",
    "median_interval",
    "paired_evidence",
    "verdict_rule",
]

MIN_SEEDS = 6  # paired seeds a claim (better, worse, equivalent) needs: below 6, 2/2ⁿ > 5% for the rank test
POWER = 0.8  # the power the detectable ratio is stated at
_EFFICIENCY = 3.0 / math.pi  # the signed-rank test's efficiency against a t under normal errors
_EXACT_POWER = 40  # up to this many seeds the signed-rank test's power is computed on fixed draws, not approximated
_POWER_DRAWS = 4000

SEEDS = "signed-rank over seeds"
REPLICATES = "t over tuning replicates"
RUNS = "signed-rank over runs"  # a replicate whose configuration failed on most seeds: no mean over replicates


@dataclass(frozen=True)
class Evidence:
    """One row's test: ``estimate``, ``low``, ``high`` on the log scale (< 0 better); the two-sided ``p_value`` of
    "no difference" and ``p_equivalence`` of "a difference of at least the margin"; which ``test``; ``n_seeds``
    paired; ``replicates`` (the fewer of the two sides'); ``replicate_spread``, the factor between the largest and
    the smallest replicate ratio (technique replicate r against baseline replicate r; NaN with one replicate);
    ``scale`` (the seeds' sd for a signed-rank test, the standard error for the t), ``df`` and ``floor`` (the
    smallest p the test can give) for :func:`detectable`."""

    estimate: float
    low: float
    high: float
    p_value: float
    p_equivalence: float
    test: str
    n_seeds: int
    replicates: int
    replicate_spread: float
    scale: float
    df: float
    floor: float


def paired_evidence(cells: Mapping[tuple[int, int], np.ndarray], ci: float, margin: float) -> Evidence:
    """The row's test from ``cells``: (technique replicate, baseline replicate) → the paired log ratios over the
    seeds both ran (no NaN; ±∞ for a failure). Replicates are matched by number (technique replicate r with baseline
    replicate r) — or, when one side has a single study (a family whose space fixes its configuration), that study
    with every replicate of the other side: no run is left out."""
    alpha = 1.0 - ci
    delta = math.log1p(margin)
    rows, columns = sorted({i for i, _ in cells}), sorted({j for _, j in cells})
    matched = matched_cells(cells)
    n_seeds = min((d.size for d in cells.values()), default=0)
    h = {key: _hodges_lehmann(d) for key, d in cells.items()}
    spread = _spread([h[key] for key in matched]) if len(matched) > 1 else math.nan
    replicates = max(len(rows), len(columns)) if min(len(rows), len(columns)) == 1 else min(len(rows), len(columns))
    if _by_replicates(cells, h):
        grid = np.array([[h[(i, j)] for j in columns] for i in rows])
        return _replicate_t(grid, alpha, delta, n_seeds, spread)
    pooled = np.concatenate([cells[key] for key in matched]) if matched else np.array([])
    test = SEEDS if replicates < 2 else RUNS
    return _signed_rank(pooled, alpha, delta, test, n_seeds, max(replicates, 1), spread)


def matched_cells(cells: Mapping[tuple[int, int], Any]) -> list[tuple[int, int]]:
    """The (technique replicate, baseline replicate) pairs whose runs a row's outcomes (wins, speed, the pooled
    test) rest on: replicate r with replicate r, or every pair when one side has a single study."""
    rows, columns = {i for i, _ in cells}, {j for _, j in cells}
    if min(len(rows), len(columns), 2) == 1:
        return sorted(cells)
    return sorted((r, r) for r in rows if (r, r) in cells)


def _by_replicates(cells: Mapping[tuple[int, int], np.ndarray], h: Mapping[tuple[int, int], float]) -> bool:
    """The t over replicates applies: two or more studies on at least one side (a side with one study, a fixed
    configuration, has no tuning luck of its own), every pair with seeds and a finite estimate."""
    rows, columns = {i for i, _ in cells}, {j for _, j in cells}
    complete = len(cells) == len(rows) * len(columns)
    return (
        max(len(rows), len(columns)) >= 2
        and complete
        and all(d.size for d in cells.values())
        and all(math.isfinite(v) for v in h.values())
    )


def location(cells: Mapping[tuple[int, int], np.ndarray], by_replicates: bool) -> float:
    """The estimate :func:`paired_evidence` gives, of any paired differences laid out as its ``cells`` (e.g. in the
    metric's units): with ``by_replicates`` (the row's test is the t over replicates) the mean over replicate pairs
    of their Hodges–Lehmann estimates, else the Hodges–Lehmann estimate over the matched runs."""
    if by_replicates:
        return float(np.mean([_hodges_lehmann(d) for d in cells.values()]))
    matched = [cells[key] for key in matched_cells(cells)]
    return _hodges_lehmann(np.concatenate(matched)) if matched else math.nan


# -- the signed-rank test -------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _null_cdf(n: int) -> np.ndarray:
    """``P(T ≤ k)`` for k = 0…n(n+1)/2, T the signed-rank statistic of n values under the null (each rank's sign a
    fair coin): the subset-sum counts of {1…n}, halved at each step so that they stay probabilities."""
    probability = np.zeros(n * (n + 1) // 2 + 1)
    probability[0] = 1.0
    for rank in range(1, n + 1):
        shifted = np.zeros_like(probability)
        shifted[rank:] = probability[:-rank]
        probability = (probability + shifted) / 2.0
    return np.cumsum(probability)


@functools.lru_cache(maxsize=256)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n)


def _walsh(d: np.ndarray) -> tuple[np.ndarray, int]:
    """The sorted Walsh averages (d_a + d_b)/2, a ≤ b, that have a value, and how many have none (+∞ with −∞)."""
    a, b = _pairs(d.size)
    with np.errstate(invalid="ignore"):
        averages = (d[a] + d[b]) / 2.0
    undefined = np.isnan(averages)
    return np.sort(averages[~undefined]), int(undefined.sum())


def _cdf(n: int, count: float) -> float:
    table = _null_cdf(n)
    return float(table[min(int(count), table.size - 1)])


def _critical(n: int, tail: float) -> int:
    """The largest c with P(T ≤ c) ≤ tail (−1 when even T = 0 is more likely than that)."""
    return int(np.searchsorted(_null_cdf(n), tail * (1 + 1e-12), side="right")) - 1


def _signed_rank(
    d: np.ndarray, alpha: float, delta: float, test: str, n_seeds: int, replicates: int, spread: float
) -> Evidence:
    n = d.size
    if n == 0:
        return Evidence(*(math.nan,) * 3, math.nan, math.nan, test, n_seeds, replicates, spread, math.nan, 0, 1.0)
    walsh, undefined = _walsh(d)
    c = _critical(n, alpha / 2.0) - undefined  # an average with no sign counts against every rejection
    low = float(walsh[c]) if c >= 0 else -math.inf
    high = float(walsh[walsh.size - 1 - c]) if c >= 0 else math.inf
    at_least = int((walsh >= 0).sum()) + undefined
    at_most = int((walsh <= 0).sum()) + undefined
    p = min(1.0, 2.0 * _cdf(n, min(at_least, at_most)))
    # equivalence: below +Δ (few averages at or above it) and above −Δ (few at or below it)
    below = _cdf(n, int((walsh >= delta).sum()) + undefined)
    above = _cdf(n, int((walsh <= -delta).sum()) + undefined)
    scale = _seed_sd(d)
    estimate = _median(walsh)
    return Evidence(
        estimate, low, high, p, max(below, above), test, n_seeds, replicates, spread, scale, n - 1, 2.0 / 2.0**n
    )


def _hodges_lehmann(d: np.ndarray) -> float:
    return _median(_walsh(d)[0]) if d.size else math.nan


def _median(ordered: np.ndarray) -> float:
    """The median of sorted values that may hold ±∞ (NaN when its two middle values are −∞ and +∞)."""
    if ordered.size == 0:
        return math.nan
    middle = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[middle])
    a, b = float(ordered[middle - 1]), float(ordered[middle])
    return a if a == b else math.nan if math.isinf(a) and math.isinf(b) else (a + b) / 2.0


def _seed_sd(d: np.ndarray) -> float:
    """The spread of the paired log ratios over seeds: their standard deviation; with failures among them (±∞),
    1.4826 × their median absolute deviation, which is finite while fewer than half failed (∞ after)."""
    if np.isfinite(d).all():
        return float(d.std(ddof=1)) if d.size > 1 else math.nan
    centre = _median(np.sort(d))
    if not math.isfinite(centre):
        return math.inf
    return 1.4826 * _median(np.sort(np.abs(d - centre)))


def _spread(estimates: Sequence[float]) -> float:
    values = np.asarray(estimates, dtype=float)
    if np.isnan(values).any():
        return math.nan
    with np.errstate(invalid="ignore"):
        return float(np.exp(values.max() - values.min())) if np.isfinite(values).all() else math.inf


# -- the t over tuning replicates -----------------------------------------------------------------------------------
def _t_quantile(q: float, df: float) -> float:
    from scipy.special import stdtrit  # scipy comes with scikit-learn; imported here to keep the module light

    return float(stdtrit(df, q))


def _t_tail(t: float, df: float) -> float:
    """P(T_df > t)."""
    from scipy.special import stdtr

    return float(stdtr(df, -t))


def _replicate_t(h: np.ndarray, alpha: float, delta: float, n_seeds: int, spread: float) -> Evidence:

    n_rows, n_columns = h.shape
    estimate = float(h.mean())
    # each side's tuning luck from how much its studies disagree; a side with one study (a fixed configuration)
    # has none: its term is 0 and adds no degrees of freedom
    a = float(h.mean(axis=1).var(ddof=1)) / n_rows if n_rows > 1 else 0.0
    b = float(h.mean(axis=0).var(ddof=1)) / n_columns if n_columns > 1 else 0.0
    se = math.sqrt(a + b)
    terms = [t**2 / (n - 1) for t, n in ((a, n_rows), (b, n_columns)) if n > 1]
    df = (a + b) ** 2 / sum(terms) if a + b > 0 else n_rows + n_columns - 2.0
    replicates = min(n_rows, n_columns) if min(n_rows, n_columns) > 1 else max(n_rows, n_columns)
    if se == 0.0:  # every replicate pair gives the same estimate: no spread to test against
        p = 1.0 if estimate == 0.0 else 0.0
        equivalent = 0.0 if abs(estimate) < delta else 1.0
        return Evidence(
            estimate, estimate, estimate, p, equivalent, REPLICATES, n_seeds, replicates, spread, 0.0, df, 0.0
        )
    half = _t_quantile(1.0 - alpha / 2.0, df) * se
    p = 2.0 * _t_tail(abs(estimate) / se, df)
    below = _t_tail((delta - estimate) / se, df)  # P(t < (D − Δ)/se)
    above = _t_tail((estimate + delta) / se, df)
    return Evidence(
        estimate,
        estimate - half,
        estimate + half,
        min(p, 1.0),
        max(below, above),
        REPLICATES,
        n_seeds,
        replicates,
        spread,
        se,
        df,
        0.0,
    )


# -- over the rows reported together --------------------------------------------------------------------------------
def holm_shaffer(p_difference: Sequence[float], p_equivalence: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down over both tests of every row, with Shaffer's multiplier (see the module docstring): the
    adjusted p-values, in the rows' order; a NaN p (a row with too few seeds to claim anything) stays NaN and
    takes no part."""
    p = np.concatenate([np.asarray(p_difference, dtype=float), np.asarray(p_equivalence, dtype=float)])
    rows = np.concatenate([np.arange(len(p_difference)), np.arange(len(p_equivalence))])
    adjusted = np.full(p.size, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for k, index in enumerate(order):
        left = np.unique(rows[order[k:]]).size  # rows with a test still standing: at most one true null each
        running = max(running, min(1.0, left * p[index]))
        adjusted[index] = running
    return adjusted[: len(p_difference)], adjusted[len(p_difference) :]


def detectable(evidence: Evidence, alpha: float, power: float = POWER) -> float:
    """The smallest log-ratio effect ``δ`` the row finds with probability ``power`` at the two-sided level
    ``alpha`` (the module docstring's formula); ∞ when the test cannot reach that level, NaN when the runs have
    no finite spread (most of them failed)."""
    if evidence.floor > alpha or not evidence.df >= 1:
        return math.inf
    if not math.isfinite(evidence.scale):  # most runs failed: no spread to speak of
        return math.nan
    if evidence.test == REPLICATES:
        return (_t_quantile(1.0 - alpha / 2.0, evidence.df) + _t_quantile(power, evidence.df)) * evidence.scale
    n = int(evidence.df) + 1
    if n <= _EXACT_POWER:
        return _rank_shift(n, _critical(n, alpha / 2.0), power) * evidence.scale
    z = _t_quantile(1.0 - alpha / 2.0, n - 1) + _t_quantile(power, n - 1)
    return z * evidence.scale / math.sqrt(n * _EFFICIENCY)


@functools.lru_cache(maxsize=512)
def _rank_shift(n: int, critical: int, power: float) -> float:
    """The shift, in standard deviations of normal seed noise, at which the signed-rank test of ``n`` seeds that
    rejects when at most ``critical`` Walsh averages are ≥ 0 does so with probability ``power``: bisection on
    fixed draws (4,000 of them, seed 0), so that the same row always states the same number."""
    draws = np.random.default_rng(0).standard_normal((_POWER_DRAWS, n))
    a, b = _pairs(n)

    def rejects(shift: float) -> float:
        shifted = draws - shift
        return float((((shifted[:, a] + shifted[:, b]) >= 0).sum(axis=1) <= critical).mean())

    low, high = 0.0, 1.0
    while rejects(high) < power:  # at most n + 1 doublings: far enough out every draw rejects
        low, high = high, 2.0 * high
    for _ in range(30):
        middle = (low + high) / 2.0
        low, high = (low, middle) if rejects(middle) >= power else (middle, high)
    return high


def verdict_rule(
    ratio_low: float,
    ratio_high: float,
    n_seeds: int,
    p_adjusted: float,
    p_equivalence_adjusted: float,
    alpha: float = 0.05,
) -> str:
    """``better`` / ``worse`` when "no difference" is rejected after the correction (``p_adjusted ≤ alpha``; the
    interval of the ratio then lies below / above 1), else ``equivalent`` when "a difference of at least the
    margin" is, else ``inconclusive``; always ``inconclusive`` with fewer than :data:`MIN_SEEDS` paired seeds."""
    if n_seeds < MIN_SEEDS:
        return "inconclusive"
    if p_adjusted <= alpha and ratio_high < 1.0:
        return "better"
    if p_adjusted <= alpha and ratio_low > 1.0:
        return "worse"
    if p_equivalence_adjusted <= alpha:
        return "equivalent"
    return "inconclusive"


def median_interval(values: np.ndarray, ci: float) -> tuple[float, float, float]:
    """(median, low, high) of values that may hold ±∞: the distribution-free interval of the median from order
    statistics (the sign test's: ``[x_(k), x_(n+1−k)]`` with the largest k whose ``P(Binomial(n, ½) < k) ≤ α/2``;
    with fewer than 6 values that is ``[min, max]``, which covers ``1 − 2/2ⁿ``: 94% at 5); NaNs when empty."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = ordered.size
    if n == 0:
        return math.nan, math.nan, math.nan
    cdf = np.cumsum([math.comb(n, i) for i in range(n + 1)]) / 2.0**n
    k = max(1, int(np.searchsorted(cdf, (1.0 - ci) / 2.0 * (1 + 1e-12), side="right")))
    return _median(ordered), float(ordered[k - 1]), float(ordered[n - k])
