"""Hyperparameter sensitivity: which knobs matter, how sharply performance falls away from the best setting, and how
much a tuned setting loses when one hyperparameter is off by a factor.

Definitions and sources (``shared/research/ray_optuna_mlflow.md``, sections B2, B4, B5 and D8):

- **Importance** (notes B5.5, D8): Optuna's ``get_param_importances`` with PED-ANOVA (Watanabe et al., IJCAI 2023;
  conditional parameters per Conditional PED-ANOVA, arXiv 2601.20800: how much a parameter matters for reaching the
  top 10 % of trials) or fANOVA (Hutter et al. 2014: the share of the variance of the objective explained by each
  parameter; only parameters set in every trial; seeded), with a bootstrap confidence interval over trials.
- **Sensitivity curve** (DeepOBS' learning-rate sensitivity plot, notes B2, B5.3): per bin of one hyperparameter,
  the best and median metric relative to the best overall.
- **Sensitivity heat-map** (Demon's lr × momentum error maps, notes B4): the best metric per cell of a 2-d grid.
- **Perturbation loss**: the relative loss of quality when one hyperparameter of a tuned configuration is multiplied
  or divided by a factor, the most direct answer to "how robust is this setting".

Trials tables are pandas DataFrames of one row per trial (the export's ``runs`` table): hyperparameters in columns
``optimizer.<key>``, NaN where a conditional parameter was not drawn; the metric in ``final_metric`` by default.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from autoaccel import objective

from ._distributions import infer_distributions, looks_log
from ._robustness import _require_rows

__all__ = [
    "MIN_IMPORTANCE_TRIALS",
    "importance_by_group",
    "param_importance",
    "perturbation_loss",
    "sensitivity_curve",
    "sensitivity_heatmap",
]


# Completed trials an importance needs: from fewer, PED-ANOVA's top 10 % holds one trial and a bootstrap of the
# trials can put the point estimate outside its own interval (issue 22 found tables from 3-5 trials in reports).
MIN_IMPORTANCE_TRIALS = 10

# --------------------------------------------------------------------------------------------------------------------
# helpers


def _python_scalar(value: Any) -> Any:
    """NumPy scalars to Python ones (Optuna's categorical choices must be None, bool, int, float or str)."""
    return value.item() if isinstance(value, np.generic) else value


def _metric_values(series: pd.Series, mode: str) -> np.ndarray:
    """The metric as floats, a failure (missing, NaN, ±∞) as the worst value: ``+∞`` for min, ``−∞`` for max."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, copy=True)
    values[~np.isfinite(values)] = objective.worst(mode)
    return values


def _numeric_param(df: pd.DataFrame, param: str) -> np.ndarray:
    """A hyperparameter column as floats (NaN = not drawn); a categorical column is an error."""
    raw = df[param]
    values = pd.to_numeric(raw, errors="coerce")
    if pd.api.types.is_bool_dtype(raw) or (values.isna() & raw.notna()).any():
        raise ValueError(f"{param!r} is not numeric; sensitivity curves and heat-maps need a numeric hyperparameter")
    return values.to_numpy(dtype=float)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-study INFO lines (one per bootstrap study), restoring the caller's verbosity."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


# --------------------------------------------------------------------------------------------------------------------
# importance


def _cast(value: Any, distribution: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return _python_scalar(value)
    if isinstance(distribution, IntDistribution):
        return round(float(value))
    return float(value)


def _records_from_frame(
    df: pd.DataFrame, params: Sequence[str], metric: str, mode: str, failed: str, distributions: Mapping[str, Any]
) -> tuple[list[tuple[dict[str, Any], dict[str, Any], float]], int]:
    """(params, distributions, loss) per trial, loss = metric for min and −metric for max; and the failure count."""
    values = pd.to_numeric(df[metric], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"no trial has a finite {metric!r}: nothing to assess")
    n_failed = int((~finite).sum())
    if failed == "worst":
        # A failed trial is as bad as the worst finite one (notes B5.6: kept, scored as worst).
        worst = -objective.best(-values[finite], mode)  # the worst finite value
        values = np.where(finite, values, worst)
    elif failed != "drop":
        raise ValueError(f"failed must be 'worst' or 'drop', got {failed!r}")
    sign = objective.sign(mode)
    records = []
    # to_dict("records") keeps each column's own type (iterrows would upcast a row to one dtype).
    for value, row in zip(values, df[[p for p in params if p in distributions]].to_dict("records"), strict=True):
        if not np.isfinite(value):
            continue  # only when failed == "drop"
        drawn = {p: v for p, v in row.items() if pd.notna(v)}
        trial_dists = {p: distributions[p] for p in drawn}
        records.append(({p: _cast(v, trial_dists[p]) for p, v in drawn.items()}, trial_dists, sign * value))
    return records, n_failed


def _records_from_study(study: Any) -> tuple[list[tuple[dict[str, Any], dict[str, Any], float]], str, int]:
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    if len(study.directions) != 1:
        raise ValueError("param_importance supports single-objective studies only")
    mode = "min" if study.direction == StudyDirection.MINIMIZE else "max"
    sign = objective.sign(mode)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    records = [(dict(t.params), dict(t.distributions), sign * t.value) for t in trials if math.isfinite(t.value)]
    return records, mode, len(trials) - len(records)


def _build_study(records: Sequence[tuple[dict[str, Any], dict[str, Any], float]]) -> Any:
    """An in-memory study, always minimizing: the losses are already negated for ``max`` (PED-ANOVA assumes min)."""
    import optuna

    study = optuna.create_study(direction="minimize")
    study.add_trials([optuna.trial.create_trial(params=p, distributions=d, value=float(v)) for p, d, v in records])
    return study


def _make_evaluator(evaluator: str, seed: int, options: Mapping[str, Any]) -> Any:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if evaluator == "ped_anova":
        return PedAnovaImportanceEvaluator(**options)
    if evaluator == "fanova":
        return FanovaImportanceEvaluator(**options, seed=seed)
    raise ValueError(f"evaluator must be 'ped_anova' or 'fanova', got {evaluator!r}")


def _importances(
    records: Sequence[Any], params: Sequence[str], evaluator: str, seed: int, options: Mapping[str, Any]
) -> dict[str, float]:
    """Importances normalized to sum 1 over ``params``; all 0 when no parameter shows any effect.

    Optuna's own normalization splits a total of 0 into equal shares, which would report importance that is not
    there; so the raw values are normalized here instead. A parameter set in no trial of ``records`` gets 0.
    """
    import optuna

    present = [p for p in params if any(p in r[0] for r in records)]
    raw: dict[str, float] = {}
    if present:
        raw = optuna.importance.get_param_importances(
            _build_study(records), evaluator=_make_evaluator(evaluator, seed, options), params=present, normalize=False
        )
    total = sum(raw.values())
    return {p: (raw.get(p, 0.0) / total if total > 0 else 0.0) for p in params}


def _default_params(df: pd.DataFrame) -> list[str]:
    """The ``optimizer.*`` columns that vary among these trials (a parameter fixed in them cannot matter here), less
    ``optimizer.base``, which the technique family already names."""
    return [
        str(c)
        for c in df.columns
        if str(c).startswith("optimizer.") and c != "optimizer.base" and df[c].nunique(dropna=True) > 1
    ]


def param_importance(
    data: Any,
    params: Sequence[str] | None = None,
    metric: str = "final_metric",
    mode: str = "min",
    evaluator: str = "ped_anova",
    seed: int = 0,
    n_bootstrap: int = 20,
    ci: float = 0.95,
    *,
    failed: str = "worst",
    distributions: Mapping[str, Any] | None = None,
    evaluator_options: Mapping[str, Any] | None = None,
    min_trials: int = MIN_IMPORTANCE_TRIALS,
) -> pd.DataFrame:
    """Normalized importance of each hyperparameter, with a bootstrap confidence interval (notes B5.5, D8).

    ``data`` is a trials DataFrame or a single-objective Optuna study (then ``metric`` and ``mode`` are ignored: the
    study's COMPLETE trials and direction are used). From a DataFrame an in-memory study is built with
    ``optuna.trial.create_trial``: ``params`` (default: every ``optimizer.*`` column set in some trial) with
    ``distributions`` where given (the search space's, :func:`declared_distributions`) and from
    :func:`infer_distributions` for the others, a NaN meaning "not drawn" (a conditional parameter).

    - ``evaluator="ped_anova"`` (Optuna's default): how much each parameter matters for reaching the top 10 % of
      trials; assesses conditional parameters. ``"fanova"``: share of the objective's variance, seeded with
      ``seed``; Optuna's fANOVA only assesses parameters set in *every* trial, so a conditional one gets NaN.
    - The study always minimizes ``metric`` for ``min`` and ``−metric`` for ``max`` (PED-ANOVA ranks by "lower is
      better"; fANOVA's variance shares do not depend on the sign).
    - ``failed="worst"`` (default) scores a trial whose metric is missing or not finite as the worst finite value,
      so failures count against the settings that produced them (notes B5.6); ``"drop"`` leaves them out.
      Only give trials of the same budget: stopped-early trials have partial metrics (notes B5.5).
    - Importances are normalized to sum to 1 over the assessed parameters (all 0 when nothing has an effect).
    - Bootstrap: ``n_bootstrap`` resamples of the trials with replacement (``numpy`` generator seeded by ``seed``;
      fANOVA reseeded per resample), importance recomputed on each; ``ci_low``/``ci_high`` are their
      ``(1 − ci)/2`` and ``(1 + ci)/2`` quantiles (NaN without a bootstrap).
    - ``evaluator_options`` go to the evaluator's constructor (``target_quantile`` for PED-ANOVA, ``n_trees`` and
      ``max_depth`` for fANOVA). PED-ANOVA is unstable with fewer than 5 trials in its top quantile (Optuna's own
      advice); the result's ``attrs["warnings"]`` then says so.

    - ``min_trials``: the completed trials (a finite metric) it needs, :data:`MIN_IMPORTANCE_TRIALS` unless asked
      for fewer (at least 2: Optuna cannot compare fewer).

    Returns a DataFrame indexed by ``param``, sorted by importance, with ``importance``, ``ci_low``, ``ci_high``,
    ``conditional`` (not set in every trial) and ``note``; ``attrs`` hold ``n_trials``, ``n_failed``, ``evaluator``
    and the ``warnings`` Optuna raised on the point estimate. Raises ``ValueError`` for fewer than ``min_trials``
    completed trials (the message says how many there are) or an empty table.
    """
    if min_trials < 2:
        raise ValueError(f"min_trials must be at least 2 (Optuna cannot compare fewer trials), got {min_trials}")
    if isinstance(data, pd.DataFrame):
        objective.check_mode(mode)
        _require_rows(data, metric, *(params or ()))
        names = list(params) if params is not None else _default_params(data)
        # the given distributions where there are, inferred from the values for any other parameter
        dists = {**infer_distributions(data, names), **{k: v for k, v in (distributions or {}).items() if k in names}}
        records, n_failed = _records_from_frame(data, names, metric, mode, failed, dists)
    else:
        records, mode, n_failed = _records_from_study(data)
        names = list(params) if params is not None else sorted({p for r in records for p in r[0]})
    completed = len(records) - (n_failed if failed == "worst" else 0)
    if completed < min_trials:
        raise ValueError(
            f"importance needs at least {min_trials} completed trials with a finite metric, got {completed}: "
            "from fewer its ranking and interval are noise"
        )
    if not names:
        raise ValueError("no hyperparameters to assess: pass params (no optimizer.* column varies)")
    _make_evaluator(evaluator, seed, evaluator_options or {})  # fail early on a bad name or option
    options = dict(evaluator_options or {})

    set_in = {p: sum(p in r[0] for r in records) for p in names}
    notes = {p: "" for p in names}
    assessed = [p for p in names if set_in[p] > 0]
    for p in names:
        if set_in[p] == 0:
            notes[p] = "not set in any trial"
    if evaluator == "fanova":
        # Optuna's fANOVA needs a parameter in every trial; leave conditional ones unassessed rather than biased.
        for p in assessed:
            if set_in[p] < len(records):
                notes[p] = "conditional: fANOVA assesses only parameters set in every trial (use ped_anova)"
        assessed = [p for p in assessed if set_in[p] == len(records)]

    from optuna.exceptions import ExperimentalWarning

    with _quiet_optuna(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Optuna flags ``normalize=False`` as experimental; it is used knowingly, so that warning is not reported.
        warnings.simplefilter("ignore", ExperimentalWarning)
        point = _importances(records, assessed, evaluator, seed, options) if assessed else {}
    messages = sorted({str(w.message) for w in caught})
    if evaluator == "ped_anova" and len(records) * options.get("target_quantile", 0.1) < 5:
        messages.append(f"only {len(records)} trials: fewer than 5 in PED-ANOVA's top quantile, importances are noisy")

    samples = _bootstrap_importances(records, assessed, evaluator, seed, n_bootstrap, options)
    alpha = (1.0 - ci) / 2.0
    rows = []
    for p in names:
        column = samples.get(p)
        has_ci = column is not None and np.isfinite(column).any()
        rows.append(
            {
                "param": p,
                "importance": point.get(p, math.nan),
                "ci_low": float(np.nanquantile(column, alpha)) if has_ci else math.nan,
                "ci_high": float(np.nanquantile(column, 1 - alpha)) if has_ci else math.nan,
                "conditional": 0 < set_in[p] < len(records),
                "note": notes[p],
            }
        )
    out = pd.DataFrame(rows).set_index("param").sort_values("importance", ascending=False, na_position="last")
    out.attrs.update(n_trials=len(records), n_failed=n_failed, evaluator=evaluator, warnings=messages)
    return out


def _bootstrap_importances(
    records: Sequence[Any],
    params: Sequence[str],
    evaluator: str,
    seed: int,
    n_bootstrap: int,
    options: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """Importances on ``n_bootstrap`` resamples with replacement; NaN for a resample Optuna cannot assess."""
    if n_bootstrap <= 0 or not params:
        return {}
    rng = np.random.default_rng(seed)
    samples = np.full((n_bootstrap, len(params)), np.nan)
    with _quiet_optuna(), warnings.catch_warnings():
        # Small resamples make PED-ANOVA warn about thin regimes on every call; the point estimate keeps its warnings.
        warnings.simplefilter("ignore")
        for b in range(n_bootstrap):
            resample = [records[i] for i in rng.integers(0, len(records), size=len(records))]
            with contextlib.suppress(ValueError):  # e.g. a resample where a parameter never varies
                values = _importances(resample, params, evaluator, seed + 1 + b, options)
                samples[b] = [values[p] for p in params]
    return {p: samples[:, j] for j, p in enumerate(params)}


def importance_by_group(
    df: pd.DataFrame,
    group_col: str = "family",
    params: Sequence[str] | None = None,
    *,
    overall: bool = True,
    include_group_param: bool = True,
    overall_label: str = "(all)",
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`param_importance` per technique family, and over all trials (notes B5.5).

    Per group the parameters default to the ``optimizer.*`` columns that vary in that group; for the overall row the
    union, plus ``group_col`` itself as a categorical parameter when ``include_group_param`` (how much the choice
    of family matters next to its hyperparameters). ``kwargs`` go to :func:`param_importance`.

    Returns a long DataFrame with ``group``, ``param``, ``importance``, ``ci_low``, ``ci_high``, ``conditional``,
    ``note`` and ``n_trials``. A group that cannot be assessed (e.g. a single trial) is kept as one row with
    ``param`` None and the reason in ``note``.
    """
    _require_rows(df, group_col)
    jobs: list[tuple[Any, pd.DataFrame, list[str] | None]] = [
        (name, rows, list(params) if params is not None else None)
        for name, rows in df.groupby(group_col, dropna=False, sort=True)
    ]
    if overall:
        names = list(params) if params is not None else _default_params(df)
        if include_group_param and group_col not in names:
            names.append(group_col)
        jobs.append((overall_label, df, names))
    frames = []
    for name, rows, names in jobs:
        try:
            result = param_importance(rows, names, **kwargs)
        except ValueError as error:
            frames.append(pd.DataFrame([{"group": name, "param": None, "note": str(error), "n_trials": len(rows)}]))
            continue
        frames.append(result.reset_index().assign(group=name, n_trials=result.attrs["n_trials"]))
    columns = ["group", "param", "importance", "ci_low", "ci_high", "conditional", "note", "n_trials"]
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


# --------------------------------------------------------------------------------------------------------------------
# curves and heat-maps


def _bin(values: np.ndarray, bins: int, log: bool | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(edges, bin index per value, log used). Equal-width bins, in log10 space when ``log`` (auto: a positive range
    wider than 2 decades and skewed low, see looks_log). A constant column gives one bin."""
    if bins < 1:
        raise ValueError(f"bins must be ≥ 1, got {bins}")
    low, high = float(values.min()), float(values.max())
    use_log = looks_log(values) if log is None else bool(log)
    if use_log and low <= 0:
        raise ValueError("log bins need positive values")
    if low == high:
        return np.array([low, high]), np.zeros(values.size, dtype=int), use_log
    edges = np.geomspace(low, high, bins + 1) if use_log else np.linspace(low, high, bins + 1)
    # side="right" puts a value on an inner edge into the upper bin; the maximum goes into the last bin.
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    return edges, index, use_log


def _best(values: np.ndarray, mode: str) -> float:
    if values.size == 0:
        return math.nan
    return float(objective.best(values, mode))


def sensitivity_curve(
    df: pd.DataFrame,
    param: str,
    metric: str = "final_metric",
    mode: str = "min",
    bins: int = 8,
    log: bool | None = None,
) -> pd.DataFrame:
    """Relative performance against one hyperparameter (DeepOBS' learning-rate sensitivity plot; notes B2, B5.3).

    The trials where ``param`` is set are binned on its value (equal width, in log space when ``log``; auto: a
    positive range wider than 2 decades that looks log-uniformly drawn, as in :func:`infer_distributions`). A missing
    or non-finite metric counts as the worst value (``+∞`` for min, ``−∞`` for max) and is counted in ``n_failed``.
    Per bin: ``low``, ``high``, ``center`` (geometric for log bins),
    ``n``, ``n_failed``, ``best`` and ``median`` metric, and the same relative to the best over all the trials in the
    curve: ``best_rel = best / overall_best`` and ``median_rel = median / overall_best``. For ``min`` these ratios
    are ≥ 1 (1 = as good as the best), for ``max`` ≤ 1 (DeepOBS plots val/best for accuracies and best/val, the
    reciprocal, for losses). Ratios assume a positive metric and are NaN when the overall best is not > 0.

    ``attrs`` hold ``log``, ``overall_best`` and ``n_inactive`` (trials without the parameter, left out).
    """
    objective.check_mode(mode)
    _require_rows(df, param, metric)
    x = _numeric_param(df, param)
    active = ~np.isnan(x)
    if not active.any():
        raise ValueError(f"{param!r} is not set in any trial")
    x, y = x[active], _metric_values(df[metric], mode)[active]
    edges, index, use_log = _bin(x, bins, log)
    overall = _best(y, mode)
    scale = overall if math.isfinite(overall) and overall > 0 else math.nan
    rows = []
    for b in range(len(edges) - 1):
        values = y[index == b]
        best = _best(values, mode)
        median = float(np.median(values)) if values.size else math.nan
        low, high = float(edges[b]), float(edges[b + 1])
        rows.append(
            {
                "low": low,
                "high": high,
                "center": math.sqrt(low * high) if use_log else (low + high) / 2,
                "n": int(values.size),
                "n_failed": int((~np.isfinite(values)).sum()),
                "best": best,
                "median": median,
                "best_rel": best / scale,
                "median_rel": median / scale,
            }
        )
    out = pd.DataFrame(rows)
    out.attrs.update(log=use_log, overall_best=overall, n_inactive=int((~active).sum()))
    return out


def sensitivity_heatmap(
    df: pd.DataFrame,
    param_x: str,
    param_y: str,
    metric: str = "final_metric",
    mode: str = "min",
    bins: int | tuple[int, int] = 6,
    log_x: bool | None = None,
    log_y: bool | None = None,
) -> dict[str, Any]:
    """Best metric per cell of a 2-d hyperparameter grid (Demon's lr × momentum heat-maps; notes B4).

    Both parameters are binned as in :func:`sensitivity_curve` (``bins`` per axis, or ``(bins_x, bins_y)``); trials
    missing either parameter are left out. A failed trial counts as the worst value.

    Returns ``{"x_edges", "y_edges", "best", "count", "log_x", "log_y", "param_x", "param_y"}`` where ``best`` and
    ``count`` have shape ``(n_y_bins, n_x_bins)`` (rows = y, as an image) and ``best`` is NaN in empty cells.
    """
    objective.check_mode(mode)
    _require_rows(df, param_x, param_y, metric)
    bins_x, bins_y = (bins, bins) if isinstance(bins, int) else bins
    x, yp = _numeric_param(df, param_x), _numeric_param(df, param_y)
    active = ~np.isnan(x) & ~np.isnan(yp)
    if not active.any():
        raise ValueError(f"no trial sets both {param_x!r} and {param_y!r}")
    values = _metric_values(df[metric], mode)[active]
    x_edges, ix, used_log_x = _bin(x[active], bins_x, log_x)
    y_edges, iy, used_log_y = _bin(yp[active], bins_y, log_y)
    best = np.full((len(y_edges) - 1, len(x_edges) - 1), np.nan)
    count = np.zeros(best.shape, dtype=int)
    for row, col, value in zip(iy, ix, values, strict=True):
        count[row, col] += 1
        if np.isnan(best[row, col]) or objective.is_better(value, best[row, col], mode):
            best[row, col] = value
    return {
        "x_edges": x_edges,
        "y_edges": y_edges,
        "best": best,
        "count": count,
        "log_x": used_log_x,
        "log_y": used_log_y,
        "param_x": param_x,
        "param_y": param_y,
    }


# --------------------------------------------------------------------------------------------------------------------
# perturbations of one configuration


def perturbation_loss(
    base_value: float,
    perturbed: Mapping[tuple[str, str], Any],
    mode: str = "min",
) -> pd.DataFrame:
    """Relative loss of quality per perturbed hyperparameter (results of :func:`perturbation_configs`' configs).

    ``perturbed`` maps ``(key, direction)`` to the metric of that config. The relative loss is
    ``(value − base) / |base|`` for ``min`` and ``(base − value) / |base|`` for ``max``: positive means worse than the
    base, negative better. A missing or non-finite value (a diverged run) is a loss of ``∞``.

    Returns a DataFrame indexed by ``key`` with ``value_<direction>`` and ``rel_loss_<direction>`` per direction
    seen and ``worst_rel_loss`` (the largest over directions), most fragile hyperparameter first.
    Raises ``ValueError`` when ``base_value`` is not finite or is 0 (the relative loss is then undefined).
    """
    objective.check_mode(mode)
    base = float(base_value)
    if not math.isfinite(base) or base == 0:
        raise ValueError(f"base_value must be finite and non-zero for a relative loss, got {base_value}")
    if not perturbed:
        raise ValueError("perturbed is empty")
    rows: dict[str, dict[str, float]] = {}
    for (key, direction), raw in perturbed.items():
        value = math.nan if raw is None else float(raw)
        difference = objective.loss(value - base, mode)
        loss = difference / abs(base) if math.isfinite(value) else math.inf
        row = rows.setdefault(key, {})
        row[f"value_{direction}"] = value
        row[f"rel_loss_{direction}"] = loss
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "key"
    out["worst_rel_loss"] = out.filter(like="rel_loss_").max(axis=1)
    return out.sort_values("worst_rel_loss", ascending=False)
