"""Robustness statistics for the report: which techniques help, across problems, budgets, seeds and batch sizes.

Every function takes plain inputs (mappings, sequences, NumPy arrays or a pandas DataFrame of one row per trial with
the columns of the export's ``runs`` table: ``family``, ``technique``, ``status``, ``seed``, ``final_metric``,
``best_metric``, ``time_to_target_s``, ``steps_to_target``, ``budget.batch_size``, ...; every column name is a
parameter) and returns plain outputs (dicts, NumPy arrays, DataFrames). Definitions and sources
(see ``shared/research/ray_optuna_mlflow.md``, section B):

- **Performance profile** (AlgoPerf, Dahl et al. 2023, after Dolan & Moré 2002; notes B1). With ``t[p, a]`` the time
  to target of algorithm ``a`` on problem ``p`` (``∞`` for a miss): ``r[p, a] = t[p, a] / min_a' t[p, a']`` and
  ``ρ_a(τ) = |{p : r[p, a] ≤ τ}| / n_problems``.
- **Benchmark score** (notes B1, item 4): ``B_a = 1/(τ_max − 1) · ∫_1^τ_max ρ_a(τ) dτ`` with ``τ_max = 4`` on a linear
  τ axis, so ``B ∈ [0, 1]`` and 1 means fastest on every problem. ``ρ_a`` is a step function, so the integral is
  computed exactly: ``B_a = Σ_p max(0, τ_max − r[p, a]) / (n_problems · (τ_max − 1))``.
- **AlgoPerf time per problem** (notes B1, B5.1): the median over studies of the fastest trial that reached the
  target, a miss counting as ``∞`` (also inside the median).
- **Top-k finishes** (Demon, Chen et al., arXiv 1910.04952; notes B4): the percentage of settings (experiments) in
  which a method ranks among the k best.
- **Expected best of k** (Dodge et al. 2019, "Show your work"; the tuning-budget curve of Sivaprasad et al. 2020 and
  the budgets of Crowded Valley, Schmidt et al. 2021; notes B3, B5.2): the expected best value among k configurations
  drawn without replacement from the n random-search trials, exactly via order statistics.
- **Seed robustness** (DeepOBS, notes B2; Crowded Valley re-runs with 10 seeds): mean, std and a Student-t
  confidence interval of the mean over seeds, every seed counted (a failed one as the worst value).
- **Failure accounting** (notes B5.6): diverged, errored, interrupted runs are counted and kept, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from autoaccel import objective
from autoaccel.tracking import STATUSES

__all__ = [
    "algoperf_times",
    "batch_size_robustness",
    "benchmark_score",
    "expected_best_of_k",
    "failure_accounting",
    "performance_profile",
    "seed_robustness",
    "top_k_finishes",
]

MIN_INTERVAL = 3  # finite values an interval over seeds needs

# --------------------------------------------------------------------------------------------------------------------
# helpers


def _as_float(value: Any) -> float:
    """A number, with ``None``, ``pd.NA`` and NaN read as NaN."""
    if value is None or value is pd.NA:
        return math.nan
    return float(value)


def _times_matrix(times: Mapping[str, Sequence[Any]] | pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """(algorithm names, array of shape (n_problems, n_algorithms)); a miss (None, NaN, inf) becomes ``inf``."""
    if isinstance(times, pd.DataFrame):
        names = [str(c) for c in times.columns]
        columns = [times[c].tolist() for c in times.columns]
    else:
        names = [str(k) for k in times]
        columns = [list(v) for v in times.values()]
    if not names:
        raise ValueError("times is empty: give at least one algorithm")
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise ValueError(f"every algorithm needs one time per problem (same problem order); got lengths {lengths}")
    if lengths == {0}:
        raise ValueError("times has no problems")
    matrix = np.array([[_as_float(v) for v in c] for c in columns], dtype=float).T
    matrix[np.isnan(matrix)] = np.inf
    if np.any(matrix <= 0):
        raise ValueError("times to target must be positive (a miss is None, NaN or inf)")
    return names, matrix


def _ratios(matrix: np.ndarray) -> np.ndarray:
    """Performance ratios ``t / min_a t`` per problem; a problem every algorithm missed gives ∞ for all."""
    best = matrix.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # inf/inf on an all-miss problem, replaced right below
        ratios = matrix / best
    ratios[~np.isfinite(matrix)] = np.inf
    return ratios


def _require_rows(df: pd.DataFrame, *columns: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError("the trials table is empty")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; available: {sorted(map(str, df.columns))}")


def _group_keys(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _groups(df: pd.DataFrame, keys: list[str]) -> Iterable[tuple[tuple[Any, ...], pd.DataFrame]]:
    """(key tuple, rows) per group, NaN keys kept as their own group; one group ``()`` when there are no keys."""
    if not keys:
        yield (), df
        return
    for key, rows in df.groupby(keys, dropna=False, sort=True):
        yield (key if isinstance(key, tuple) else (key,)), rows


# --------------------------------------------------------------------------------------------------------------------
# AlgoPerf: performance profiles and the benchmark score


def performance_profile(
    times: Mapping[str, Sequence[Any]] | pd.DataFrame,
    tau_max: float = 4.0,
    taus: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Dolan–Moré performance profiles as used by AlgoPerf (Dahl et al. 2023; notes B1, steps 1–3).

    ``times`` maps algorithm → per-problem times to target (the same problem order for every algorithm), or is a
    DataFrame with one column per algorithm and one row per problem. A miss is ``None``, NaN or ``inf``.

    Definition: ``r[p, a] = t[p, a] / min_a' t[p, a']`` (≥ 1) and ``ρ_a(τ) = |{p : r[p, a] ≤ τ}| / n`` with ``n``
    the number of problems. A miss has ratio ``∞``. A problem that every algorithm missed has ratio ``∞`` for all of
    them: it stays in ``n`` and counts as unsolved, so it lowers every profile (AlgoPerf scores a missed workload
    ``∞`` and keeps it). AlgoPerf also sets ratios above ``τ_max`` to ``∞``; on ``τ ≤ τ_max`` that changes nothing.

    Returns ``{"tau": grid, "rho": {algorithm: ρ on the grid}, "ratios": {algorithm: r per problem},
    "unsolved": [problem indices every algorithm missed], "n_problems": n}``. The default grid is 301 points
    evenly spaced on ``[1, tau_max]``; ``taus`` replaces it.
    """
    if tau_max <= 1:
        raise ValueError(f"tau_max must be > 1, got {tau_max}")
    names, matrix = _times_matrix(times)
    ratios = _ratios(matrix)
    grid = np.linspace(1.0, tau_max, 301) if taus is None else np.asarray(taus, dtype=float)
    # ρ(τ) for every τ at once: (n_problems, n_algorithms, 1) ≤ (n_taus,) → mean over problems.
    rho = (ratios[:, :, None] <= grid[None, None, :]).mean(axis=0)
    return {
        "tau": grid,
        "rho": {name: rho[i] for i, name in enumerate(names)},
        "ratios": {name: ratios[:, i] for i, name in enumerate(names)},
        "unsolved": [int(p) for p in np.flatnonzero(~np.isfinite(matrix).any(axis=1))],
        "n_problems": int(matrix.shape[0]),
    }


def benchmark_score(times: Mapping[str, Sequence[Any]] | pd.DataFrame, tau_max: float = 4.0) -> dict[str, float]:
    """AlgoPerf's integrated benchmark score per algorithm (notes B1, item 4).

    ``B_a = 1/(τ_max − 1) · ∫_1^τ_max ρ_a(τ) dτ`` on a linear τ axis with ``τ_max = 4`` (AlgoPerf's ``r_max``),
    so ``B ∈ [0, 1]``: 1 means fastest on every problem, 0 never within ``τ_max`` of the fastest. Because ``ρ_a`` is a
    right-continuous step function, each problem solved with ratio ``r ≤ τ_max`` contributes exactly
    ``(τ_max − r) / n`` to the integral, so no τ grid (and no grid error) is involved::

        B_a = Σ_p max(0, τ_max − r[p, a]) / (n · (τ_max − 1))

    Misses and problems every algorithm missed contribute 0 (see :func:`performance_profile`).
    """
    if tau_max <= 1:
        raise ValueError(f"tau_max must be > 1, got {tau_max}")
    names, matrix = _times_matrix(times)
    ratios = _ratios(matrix)
    area = np.clip(tau_max - ratios, 0.0, None)  # ∞ ratios give 0
    score = area.sum(axis=0) / (matrix.shape[0] * (tau_max - 1.0))
    return {name: float(score[i]) for i, name in enumerate(names)}


def algoperf_times(
    df: pd.DataFrame,
    problem_col: str = "workload",
    algorithm_col: str = "technique",
    time_col: str = "time_to_target_s",
    study_col: str | None = None,
) -> pd.DataFrame:
    """AlgoPerf's time per (problem, algorithm) from a trials table (notes B1, external tuning; B5.1).

    Per study the time is the fastest trial that reached the target; per problem it is the median over studies, a
    study with no trial reaching the target counting as ``∞`` inside the median. Without ``study_col`` all trials of a
    (problem, algorithm) form one study. A missing time (NaN/None) is a miss (``∞``).

    Returns a DataFrame with one row per problem and one column per algorithm, ready for
    :func:`performance_profile` and :func:`benchmark_score`; a (problem, algorithm) pair with no trials is ``∞``.
    """
    _require_rows(df, problem_col, algorithm_col, time_col, *([study_col] if study_col else []))
    data = df[[problem_col, algorithm_col, time_col] + ([study_col] if study_col else [])].copy()
    data[time_col] = pd.to_numeric(data[time_col], errors="coerce").fillna(np.inf)
    keys = [problem_col, algorithm_col] + ([study_col] if study_col else [])
    per_study = data.groupby(keys, dropna=False)[time_col].min()
    # median over studies; np.median keeps ∞ (a median of [1, ∞, ∞] is ∞ as AlgoPerf intends)
    per_problem = per_study.groupby(level=[0, 1], dropna=False).agg(lambda s: float(np.median(s.to_numpy())))
    table = per_problem.unstack(algorithm_col)
    return table.fillna(np.inf)


# --------------------------------------------------------------------------------------------------------------------
# Demon: top-k finishes


def _scores_matrix(scores: pd.DataFrame | Mapping[Any, Mapping[str, Any]]) -> pd.DataFrame:
    if isinstance(scores, pd.DataFrame):
        table = scores
    else:
        table = pd.DataFrame.from_dict({k: dict(v) for k, v in scores.items()}, orient="index")
    if table.empty:
        raise ValueError("scores is empty: give at least one setting and one algorithm")
    return table.apply(pd.to_numeric, errors="coerce")


def top_k_finishes(
    scores: pd.DataFrame | Mapping[Any, Mapping[str, Any]],
    k: int | Sequence[int] = (1, 3),
    mode: str = "min",
) -> pd.DataFrame:
    """Percentage of settings in which each algorithm finishes in the top k (Demon paper, notes B4).

    ``scores`` holds one value per (setting, algorithm): a DataFrame with settings as rows and algorithms as columns,
    or a mapping setting → {algorithm: value}. ``mode`` says whether lower (``min``) or higher (``max``) is better.

    Ranks per setting use competition ranking ("1224"): ``rank = 1 + number of algorithms strictly better``, so tied
    algorithms share the better rank and all count as a top-k finish. A missing value (absent, None, NaN) ranks last
    and is never a finish, even when there are fewer than k values. The percentage is over all settings, including
    those where the algorithm has no value (the Demon tables divide by all 28 experiments).

    Returns a DataFrame indexed by algorithm with a column ``top_<k>`` (percent) per k and ``n_settings``.
    """
    objective.check_mode(mode)
    ks = [int(k)] if isinstance(k, (int, np.integer)) else [int(v) for v in k]
    if not ks or any(int(v) < 1 for v in ks):
        raise ValueError(f"k must be ≥ 1, got {k}")
    table = _scores_matrix(scores)
    values = objective.loss(table.to_numpy(dtype=float), mode)
    present = ~np.isnan(values)
    # better[s, a, b]: b strictly better than a in setting s (NaN compares False, so missing ones never count)
    better = values[:, None, :] < values[:, :, None]
    rank = 1 + better.sum(axis=2)
    out = pd.DataFrame(index=pd.Index([str(c) for c in table.columns], name="algorithm"))
    for kk in ks:
        finishes = (rank <= kk) & present
        out[f"top_{kk}"] = 100.0 * finishes.sum(axis=0) / len(table)
    out["n_settings"] = len(table)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Crowded Valley / "Show your work": expected best of k random-search trials


def _best_of_k_weights(n: int, k: int) -> np.ndarray:
    """``P(the best of k drawn without replacement is the i-th best of n) = C(n − i, k − 1) / C(n, k)``, i = 1..n.

    Computed by the ratio of consecutive terms, ``w_{i+1} / w_i = (n − i − k + 1) / (n − i)`` from ``w_1 = k / n``,
    which avoids huge binomials for large n.
    """
    i = np.arange(1, n)
    steps = np.clip((n - i - k + 1) / (n - i), 0.0, None)
    return (k / n) * np.concatenate(([1.0], np.cumprod(steps)))


def _expected_best_sorted(sorted_values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ_i v_(i) w_i over the last axis, skipping zero weights (so an ∞ that can never be the best adds nothing)."""
    used = weights > 0
    return sorted_values[..., used] @ weights[used]


def expected_best_of_k(
    values: Sequence[Any] | np.ndarray | pd.Series,
    k: int | Sequence[int] | None = None,
    mode: str = "min",
    *,
    bootstrap: int = 0,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Expected best value among k configurations drawn at random without replacement from n observed trials.

    The tuning-budget curve of Dodge et al. 2019 ("Show your work") and Sivaprasad et al. 2020, and the budget view of
    Crowded Valley (Schmidt et al. 2021; notes B3, B5.2). Exact, by order statistics: with the values sorted from best
    to worst, ``v_(1), ..., v_(n)`` (ascending for ``min``, descending for ``max``), the best of a random k-subset is
    ``v_(i)`` with probability ``C(n − i, k − 1) / C(n, k)``, so::

        E[best of k] = Σ_i v_(i) · C(n − i, k − 1) / C(n, k)

    ``k`` is an int or a sequence of ints in ``1..n`` (default: all of them); the result is always a curve.
    A failed trial (None, NaN, ±∞) counts as the worst possible value (``+∞`` for min, ``−∞`` for max; notes B5.6): the
    expectation is then infinite exactly when k is small enough that all k draws can be failures.

    With ``bootstrap = B > 0``, a ``ci`` band: B resamples of the n trials with replacement (seeded), the exact
    formula on each, and the lower/upper ``(1 − ci)/2`` quantiles taken without interpolation (the ``lower`` and
    ``higher`` order statistics, so that the band stays defined with infinite values). It is a percentile
    bootstrap: a description of the trials' spread, not a calibrated interval (a few trials under-cover), and no
    verdict rests on it.

    Returns a DataFrame indexed by ``k`` with ``expected`` (and ``ci_low``, ``ci_high`` with a bootstrap).
    """
    objective.check_mode(mode)
    array = np.array([_as_float(v) for v in np.asarray(values, dtype=object).ravel()], dtype=float)
    n = array.size
    if n == 0:
        raise ValueError("values is empty: need at least one trial")
    array[~np.isfinite(array)] = objective.worst(mode)
    ks = list(range(1, n + 1)) if k is None else ([k] if isinstance(k, (int, np.integer)) else list(k))
    if not ks or any(not 1 <= int(kk) <= n for kk in ks):
        raise ValueError(f"k must be in 1..{n} (the number of trials), got {k}")
    # Sort best first; for max, sort the negated values so one formula serves both modes.
    sign = objective.sign(mode)
    ordered = np.sort(sign * array)
    weights = {int(kk): _best_of_k_weights(n, int(kk)) for kk in ks}
    out = pd.DataFrame(index=pd.Index([int(kk) for kk in ks], name="k"))
    out["expected"] = [sign * float(_expected_best_sorted(ordered, weights[int(kk)])) for kk in ks]
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        resampled = np.sort(sign * array[rng.integers(0, n, size=(bootstrap, n))], axis=1)
        alpha = (1.0 - ci) / 2.0
        low, high = [], []
        for kk in ks:
            estimates = sign * _expected_best_sorted(resampled, weights[int(kk)])
            with np.errstate(invalid="ignore"):  # ∞ − ∞ inside numpy's quantile of all-∞ resamples: still ∞
                lo = np.quantile(estimates, alpha, method="lower")
                hi = np.quantile(estimates, 1 - alpha, method="higher")
            low.append(float(min(lo, hi)))  # for max, the sign flip swaps the ends
            high.append(float(max(lo, hi)))
        out["ci_low"], out["ci_high"] = low, high
    return out


# --------------------------------------------------------------------------------------------------------------------
# Seeds, batch sizes, failures


def _t_quantile(q: float, dof: int) -> float:
    from scipy import stats  # scipy comes with scikit-learn; imported here to keep the module light

    return float(stats.t.ppf(q, dof))


def _counted(values: np.ndarray, mode: str | None) -> np.ndarray:
    """Every value, a failure (missing, NaN or ±∞) kept: as the worst value with a ``mode``, else as NaN."""
    failed = ~np.isfinite(values)
    return np.where(failed, objective.worst(mode) if mode is not None else np.nan, values)


def _spread(values: np.ndarray, mode: str | None) -> dict[str, float]:
    """mean, std, median, min and max over every value, failures counted (see :func:`seed_robustness`)."""
    counted = _counted(values, mode)
    if counted.size == 0:
        return dict.fromkeys(("mean", "std", "median", "min", "max"), math.nan)
    failed = not np.isfinite(values).all()
    with np.errstate(invalid="ignore"):
        return {
            "mean": float(counted.mean()),
            "std": math.nan if failed or counted.size < 2 else float(counted.std(ddof=1)),
            "median": float(np.median(counted)) if mode is not None or not failed else math.nan,
            "min": float(counted.min()) if mode is not None or not failed else math.nan,
            "max": float(counted.max()) if mode is not None or not failed else math.nan,
        }


def seed_robustness(
    df: pd.DataFrame,
    metric: str = "final_metric",
    by: str | Sequence[str] | None = ("family",),
    ci: float = 0.95,
    mode: str | None = None,
) -> pd.DataFrame:
    """Spread of a metric over seeds, per group (DeepOBS' mean ± std over seeds, notes B2; B5.3), every seed counted.

    Per group: ``n`` (rows), ``n_finite`` (rows whose metric is a finite number), ``n_nonfinite`` (missing, NaN or
    ±∞: a failed seed, e.g. diverged), and over all ``n`` rows ``mean``, ``std`` (sample, ddof = 1), a ``ci``
    confidence interval of the mean from Student's t, ``mean ± t_{(1+ci)/2, n−1} · std / √n`` (``ci_low``/``ci_high``;
    NaN with fewer than :data:`MIN_INTERVAL` rows), ``median``, ``min`` and ``max``. A failed seed is never left
    out: with ``mode`` it is the worst value there is (∞ for ``min``, −∞ for ``max``), so the mean, the median when
    at least half failed, and min or max say so, and std and the interval are undefined (NaN); without ``mode``
    nothing over a group with a failure is defined (NaN) and ``n_nonfinite`` says why. A technique that diverges on
    its worst seeds must not look less variable for it.
    """
    if mode is not None:
        objective.check_mode(mode)
    keys = _group_keys(by)
    _require_rows(df, metric, *keys)
    rows = []
    for key, group in _groups(df, keys):
        values = pd.to_numeric(group[metric], errors="coerce").to_numpy(dtype=float)
        m = int(np.isfinite(values).sum())
        stats = _spread(values, mode)
        # no interval from fewer than MIN_INTERVAL points: from two, a t-interval is too wide to say anything
        n = values.size
        half = _t_quantile((1 + ci) / 2, n - 1) * stats["std"] / math.sqrt(n) if n >= MIN_INTERVAL else math.nan
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": n,
                "n_finite": m,
                "n_nonfinite": n - m,
                "mean": stats["mean"],
                "std": stats["std"],
                "ci_low": stats["mean"] - half,
                "ci_high": stats["mean"] + half,
                "median": stats["median"],
                "min": stats["min"],
                "max": stats["max"],
            }
        )
    return pd.DataFrame(rows)


def batch_size_robustness(
    df: pd.DataFrame,
    metric: str = "final_metric",
    batch_col: str = "budget.batch_size",
    by: str | Sequence[str] | None = "family",
    steps_col: str = "steps_to_target",
    statistics: Sequence[str] = (),
    mode: str | None = None,
) -> pd.DataFrame:
    """Quality and speed per (group, batch size): does a technique keep helping as the batch grows?

    Per (group, batch size): ``n``; ``n_finite`` and ``n_nonfinite`` (a failed trial: a missing or non-finite
    metric); ``mean_metric``, ``std_metric`` and ``median_metric`` over every trial, a failure counted as in
    :func:`seed_robustness` (the worst value with ``mode``, else making them NaN); ``reached_fraction``, the share
    of trials with a steps-to-target; ``median_steps_to_target``, with a miss counted as ``∞`` (DeepOBS' "speed"
    counts a miss as the full budget, notes B2; ∞ keeps the median honest: it is ∞ when most trials missed). For
    each column of ``statistics`` the table has (what a technique reports per run, e.g.
    ``final_aa_averaging_fraction``, Anderson's share of steps that took the averaged iterate),
    ``mean_<statistic>`` over its non-missing values (NaN for families that do not report it).
    """
    if mode is not None:
        objective.check_mode(mode)
    keys = [*_group_keys(by), batch_col]
    _require_rows(df, metric, steps_col, *keys)
    present = [column for column in statistics if column in df.columns]
    rows = []
    for key, group in _groups(df, keys):
        values = pd.to_numeric(group[metric], errors="coerce").to_numpy(dtype=float)
        finite = int(np.isfinite(values).sum())
        stats = _spread(values, mode)
        steps = pd.to_numeric(group[steps_col], errors="coerce").to_numpy(dtype=float, copy=True)
        steps[np.isnan(steps)] = np.inf
        row = {
            **dict(zip(keys, key, strict=True)),
            "n": len(group),
            "n_finite": finite,
            "n_nonfinite": len(group) - finite,
            "mean_metric": stats["mean"],
            "std_metric": stats["std"],
            "median_metric": stats["median"],
            "reached_fraction": float(np.isfinite(steps).mean()),
            "median_steps_to_target": float(np.median(steps)),
        }
        for column in present:
            value = pd.to_numeric(group[column], errors="coerce")
            row[f"mean_{column.removeprefix('final_')}"] = float(value.mean()) if value.notna().any() else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def failure_accounting(
    df: pd.DataFrame,
    status_col: str = "status",
    by: str | Sequence[str] | None = "family",
    statuses: Sequence[str] = STATUSES,
) -> pd.DataFrame:
    """Counts and percentages of every trial status per group, dropping nothing (notes B5.6).

    Columns: the group keys, ``n``, then per status a count ``<status>`` and a percentage ``<status>_pct`` (of ``n``).
    Every status in ``statuses`` gets its columns (zero when absent); a status value outside that list gets its own
    columns after them, and a missing status is counted as ``unknown``, so the counts always add up to ``n``.
    """
    keys = _group_keys(by)
    _require_rows(df, status_col, *keys)
    status = df[status_col].astype(object).where(df[status_col].notna(), "unknown").astype(str)
    extra = sorted(set(status) - set(statuses))
    names = [*statuses, *extra]
    rows = []
    for key, group in _groups(df.assign(**{status_col: status}), keys):
        counts = group[status_col].value_counts()
        row: dict[str, Any] = {**dict(zip(keys, key, strict=True)), "n": len(group)}
        for name in names:
            row[name] = int(counts.get(name, 0))
        for name in names:
            row[f"{name}_pct"] = 100.0 * row[name] / len(group)
        rows.append(row)
    return pd.DataFrame(rows)
