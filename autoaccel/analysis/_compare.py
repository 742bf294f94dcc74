"""The verdict of a comparison: does each technique beat its baseline, by how much, and how reliably.

Input: the export's ``runs`` table of a comparison (``autoaccel sweep`` with a ``compare`` section): tuning trials
(``phase = tuning``) and final runs (``phase = final``: each family's best tuning configuration re-run on paired
seeds and every batch size, never stopped early). The method, its sources and the verdict rule are in
``docs/compare.md``; in short, per (comparison, family, baseline, setting = workload × batch size), over the seeds
both ran with a meaningful ratio (comparisons reported together each keep their own pairs, tuning and direction):

- ``ratio``: the median over seeds of the paired ratio family ÷ baseline of the final metric, turned so that < 1
  is better whatever the direction (``min``: family/baseline; ``max``: baseline/family); a failed seed (diverged or
  errored) is the worst possible result: ratio ∞ when only the family failed, 0 when only the baseline did, 1 when
  both did. A percentile bootstrap over seeds (``n_bootstrap`` resamples, the ``lower``/``higher`` order statistics:
  slightly conservative) gives the interval.
- ``win_rate``: the fraction of seeds where the family beat the baseline's same seed (a failure never wins).
- ``speedup``: the median over seeds of the baseline's steps to target ÷ the family's (> 1: the family is faster),
  a run that never reached the target (or failed) counting as never (∞); a seed where neither reached it says
  nothing about speed and is left out (``speedup_n`` seeds remain). ``speedup_time``: the same in wall time.
- ``failure_rate``: the family's failed final runs ÷ all of them in the setting (``baseline_failure_rate`` too).
- ``verdict``: ``better`` when the whole interval of ``ratio`` lies below 1, ``worse`` when it lies above 1, else
  ``no clear difference`` (always so with fewer than :data:`MIN_SEEDS` paired seeds).

Interrupted runs (a sweep cut short by Ctrl-C) are not yet results and are left out of every pairing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from autoaccel import objective

from ._robustness import _require_rows, expected_best_of_k

__all__ = ["MIN_SEEDS", "VERDICTS", "final_runs", "sentence", "tuning_curves", "verdict_rule", "verdict_table"]

VERDICTS = ("better", "worse", "no clear difference")
MIN_SEEDS = 3  # a verdict of better or worse needs at least this many paired seeds
FAILED = ("diverged", "errored")
_RESULT = ("completed", *FAILED)  # statuses that are results (interrupted, stopped early: not a final result)


def _setting(runs: pd.DataFrame) -> pd.Series:
    batch = runs["budget.batch_size"] if "budget.batch_size" in runs else pd.Series([None] * len(runs), runs.index)
    return runs["workload"].astype(str) + batch.map(lambda b: "" if pd.isna(b) else f" / batch {int(b)}")


def _with_experiment(runs: pd.DataFrame) -> pd.DataFrame:
    """Every comparison reported together keeps its own pairs, tuning and direction: rows carry their experiment."""
    return runs if "experiment" in runs else runs.assign(experiment="")


def final_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The final runs a verdict rests on, with their ``setting``: per comparison (experiment) and family those of its
    best tuning configuration (with ``final.top > 1`` the others are details, not the verdict), and only runs that
    are results (completed, diverged or errored; an interrupted one is not yet)."""
    _require_rows(runs, "phase", "baseline", "family", "seed", "status", "final_metric", "workload", "mode")
    runs = _with_experiment(runs)
    final = runs[(runs["phase"] == "final") & runs["status"].isin(_RESULT)]
    if final.empty:
        raise ValueError("no final runs: a comparison's verdict needs its final phase (compare in the spec)")
    final = final.assign(setting=_setting(final))
    tuning = runs[runs["phase"] == "tuning"]
    return pd.concat([_chosen(rows, tuning) for _, rows in final.groupby(["experiment", "family"], sort=False)])


def _chosen(final: pd.DataFrame, tuning: pd.DataFrame) -> pd.DataFrame:
    """One family's final runs in one comparison, restricted to those of its best tuning configuration."""
    if "study.source_run" not in final or final["study.source_run"].nunique() <= 1:
        return final
    mode = objective.check_mode(final["mode"].iloc[0])
    scores = tuning.set_index("run_id")["final_metric"]
    best = min(final["study.source_run"].dropna().unique(), key=lambda run_id: _tuning_loss(scores, run_id, mode))
    return final[final["study.source_run"] == best]


def _tuning_loss(scores: pd.Series, run_id: str, mode: str) -> float:
    value = scores.get(run_id)
    return math.inf if value is None or not math.isfinite(value) else float(objective.loss(value, mode))


def _per_seed(rows: pd.DataFrame) -> dict[str, tuple[str, float, float, float]]:
    """seed → (status, final metric, steps to target, seconds to target); never reached or failed = ∞."""
    out = {}
    for _, row in rows.iterrows():
        failed = row["status"] in FAILED
        steps = row.get("steps_to_target")
        seconds = row.get("time_to_target_s")
        out[str(row["seed"])] = (
            row["status"],
            math.nan if failed else float(row["final_metric"]),
            math.inf if failed or pd.isna(steps) else float(steps),
            math.inf if failed or pd.isna(seconds) else float(seconds),
        )
    return out


def _ratio(family: tuple, baseline: tuple, mode: str) -> float:
    """Family ÷ baseline, < 1 better; failures rank worst (∞ when only the family failed, 0 when only the baseline
    did, 1 when both did)."""
    f_failed, b_failed = family[0] in FAILED, baseline[0] in FAILED
    if f_failed or b_failed:
        return 1.0 if f_failed and b_failed else math.inf if f_failed else 0.0
    f, b = (family[1], baseline[1]) if mode == "min" else (baseline[1], family[1])
    if f < 0 or b < 0:
        return math.nan  # a ratio of a metric that can be negative means nothing
    if b == 0:
        return 1.0 if f == 0 else math.inf
    return f / b


def _wins(family: tuple, baseline: tuple, mode: str) -> bool:
    if family[0] in FAILED:
        return False
    return baseline[0] in FAILED or objective.is_better(family[1], baseline[1], mode)


def _speed(family_time: float, baseline_time: float) -> float:
    """Baseline ÷ family time to target (> 1: the family is faster); NaN when neither reached it."""
    if math.isinf(family_time) and math.isinf(baseline_time):
        return math.nan
    if math.isinf(family_time):
        return 0.0
    return math.inf if math.isinf(baseline_time) else baseline_time / family_time


def _median_interval(values: np.ndarray, n_bootstrap: int, ci: float, rng: np.random.Generator) -> tuple[float, ...]:
    """(median, low, high): a percentile bootstrap over the values (seeds); NaNs when there are none."""
    if values.size == 0:
        return math.nan, math.nan, math.nan
    alpha = (1.0 - ci) / 2.0
    with np.errstate(invalid="ignore"):  # ∞ − ∞ inside numpy's median of resamples that are all ∞: still ∞
        samples = np.median(values[rng.integers(0, values.size, size=(n_bootstrap, values.size))], axis=1)
        low = float(np.quantile(samples, alpha, method="lower"))
        high = float(np.quantile(samples, 1.0 - alpha, method="higher"))
    return float(np.median(values)), low, high


def verdict_rule(ratio_low: float, ratio_high: float, n_seeds: int) -> str:
    """``better`` / ``worse`` when the interval of the ratio excludes 1 (with at least MIN_SEEDS seeds)."""
    if n_seeds < MIN_SEEDS or math.isnan(ratio_low) or math.isnan(ratio_high):
        return "no clear difference"
    if ratio_high < 1.0:
        return "better"
    if ratio_low > 1.0:
        return "worse"
    return "no clear difference"


def verdict_table(runs: pd.DataFrame, *, n_bootstrap: int = 2000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per (experiment, family, baseline, setting) of the comparisons' final runs: the columns of the module
    docstring, plus ``experiment``, ``workload``, ``batch_size``, ``metric``, ``mode``, the two medians, the reach
    rates, and the family's tuning (``tuning_trials``, ``tuning_completed``, ``tuning_diverged_rate``)."""
    final = final_runs(runs)
    runs = _with_experiment(runs)
    tuning = runs[(runs["phase"] == "tuning") & (runs["status"] != "interrupted")]  # an orphan of a killed driver
    rng = np.random.default_rng(seed)
    rows = []
    for (experiment, setting), in_setting in final.groupby(["experiment", "setting"], sort=True):
        mode = objective.check_mode(in_setting["mode"].iloc[0])
        pairs = in_setting.dropna(subset=["baseline"])[["family", "baseline"]].drop_duplicates()
        for family, baseline in pairs.itertuples(index=False):
            own, base = in_setting[in_setting["family"] == family], in_setting[in_setting["family"] == baseline]
            if base.empty:  # a family at a batch of its own (a scale S): against its baseline at the baseline's batch
                base = _single_setting(final[(final["experiment"] == experiment) & (final["family"] == baseline)])
            f, b = _per_seed(own), _per_seed(base)
            paired = sorted(set(f) & set(b), key=lambda s: (len(s), s))
            ratios = np.array([_ratio(f[s], b[s], mode) for s in paired], dtype=float)
            seeds = [s for s, r in zip(paired, ratios, strict=True) if not np.isnan(r)]  # a ratio must mean something
            ratio, low, high = _median_interval(ratios[~np.isnan(ratios)], n_bootstrap, ci, rng)
            speeds = np.array([_speed(f[s][2], b[s][2]) for s in seeds], dtype=float)
            speeds = speeds[~np.isnan(speeds)]
            times = np.array([_speed(f[s][3], b[s][3]) for s in seeds], dtype=float)
            times = times[~np.isnan(times)]
            speed, speed_low, speed_high = _median_interval(speeds, n_bootstrap, ci, rng)
            wall, wall_low, wall_high = _median_interval(times, n_bootstrap, ci, rng)
            own_tuning = tuning[(tuning["experiment"] == experiment) & (tuning["family"] == family)]
            rows.append(
                {
                    "experiment": experiment,
                    "family": family,
                    "baseline": baseline,
                    "setting": setting,
                    # another setting only for a family at a batch of its own: its baseline's batch
                    "baseline_setting": base["setting"].iloc[0] if len(base) else setting,
                    "workload": own["workload"].iloc[0],
                    "batch_size": _batch(own),
                    "metric": own["metric_name"].iloc[0] if "metric_name" in own else None,
                    "mode": mode,
                    "n_seeds": len(seeds),
                    "ratio": ratio,
                    "ratio_ci_low": low,
                    "ratio_ci_high": high,
                    "win_rate": float(np.mean([_wins(f[s], b[s], mode) for s in seeds])) if seeds else math.nan,
                    "speedup": speed,
                    "speedup_ci_low": speed_low,
                    "speedup_ci_high": speed_high,
                    "speedup_n": int(speeds.size),
                    "speedup_time": wall,
                    "speedup_time_ci_low": wall_low,
                    "speedup_time_ci_high": wall_high,
                    "failure_rate": float(own["status"].isin(FAILED).mean()),
                    "baseline_failure_rate": float(base["status"].isin(FAILED).mean()) if len(base) else math.nan,
                    "median": _median_metric(own),
                    "baseline_median": _median_metric(base),
                    "reached_rate": float(np.isfinite([v[2] for v in f.values()]).mean()),
                    "baseline_reached_rate": float(np.isfinite([v[2] for v in b.values()]).mean()) if b else math.nan,
                    "tuning_trials": len(own_tuning),
                    "tuning_completed": int((own_tuning["status"] == "completed").sum()),
                    "tuning_diverged_rate": float((own_tuning["status"] == "diverged").mean())
                    if len(own_tuning)
                    else math.nan,
                    "verdict": verdict_rule(low, high, len(seeds)),
                    # a scale-invariant budget (AdaScale's): up to S× the examples of a baseline at its batch
                    "scale_invariant": _scale_invariant(own),
                }
            )
    return pd.DataFrame(rows)


def _scale_invariant(rows: pd.DataFrame) -> bool:
    """Whether a technique in the rows' stacks counts its budget in scale-invariant iterations (its registry entry
    says so: ``Technique.scale_invariant_budget``)."""
    if "technique" not in rows:
        return False
    from autoaccel.optim import techniques_in

    labels = rows["technique"].dropna().unique()
    return any(t.scale_invariant_budget for label in labels for t in techniques_in(label))


def _single_setting(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` if they all share one setting, else none: a baseline run at several batch sizes has no one reference
    for a family at a batch of its own."""
    return rows if rows["setting"].nunique() == 1 else rows.iloc[:0]


def _batch(rows: pd.DataFrame) -> float:
    return float(rows["budget.batch_size"].iloc[0]) if "budget.batch_size" in rows else math.nan


def _median_metric(rows: pd.DataFrame) -> float:
    """The median final metric over seeds, a failed seed counting as ∞ (min) or −∞ (max): never a finite stand-in."""
    if rows.empty:
        return math.nan
    mode = rows["mode"].iloc[0]
    values = rows["final_metric"].where(~rows["status"].isin(FAILED), objective.worst(mode)).astype(float)
    return float(np.median(values))


def tuning_curves(runs: pd.DataFrame, *, n_bootstrap: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per family, the expected best tuning result among k of its tuning trials (k = 1…n) with a bootstrap band:
    how much tuning the technique needs. A trial counts with its metric at the epochs it reached (a trial ASHA
    stopped early: its value there), a diverged or errored one as a failure (the worst value)."""
    _require_rows(runs, "phase", "family", "status", "final_metric", "mode")
    runs = _with_experiment(runs)
    tuning = runs[(runs["phase"] == "tuning") & (runs["status"] != "interrupted")]  # an orphan of a killed driver
    frames = []
    for (experiment, family), rows in tuning.groupby(["experiment", "family"], sort=True):
        values = rows["final_metric"].where(~rows["status"].isin(FAILED)).astype(float).to_numpy()
        curve = expected_best_of_k(values, mode=rows["mode"].iloc[0], bootstrap=n_bootstrap, seed=seed)
        frames.append(curve.reset_index().assign(experiment=experiment, family=family, n_trials=len(rows)))
    if not frames:
        raise ValueError("no tuning trials: a comparison's tuning curves need its tuning phases")
    columns = ["experiment", "family", "k", "expected", "ci_low", "ci_high", "n_trials"]
    return pd.concat(frames, ignore_index=True)[columns]


def sentence(row: pd.Series | dict[str, Any], with_experiment: bool = False) -> str:
    """One row of the verdict in words, e.g. "anderson_sgd over sgd at admissions_mlp / batch 40: better; final
    val_mse 0.93× sgd's [0.88, 0.99], 5/5 seeds better, reached the target 1.4× sooner (median over 5 seeds), 0 of 24
    tuning trials diverged"."""
    n = int(row["n_seeds"])
    wins = round(row["win_rate"] * n) if n else 0
    where = f"{row['setting']} [{row['experiment']}]" if with_experiment else row["setting"]
    against = row["baseline"]
    if row["baseline_setting"] != row["setting"]:  # a family at a batch of its own
        against += f" ({row['baseline_setting'].rsplit(' / ', 1)[-1]})"
    text = (
        f"{row['family']} over {against} at {where}: {row['verdict']}; final {row['metric']} "
        f"{_num(row['ratio'])}× {row['baseline']}'s [{_num(row['ratio_ci_low'])}, {_num(row['ratio_ci_high'])}], "
        f"{wins}/{n} seeds better"
    )
    reached, base_reached = _num(100 * row["reached_rate"]), _num(100 * row["baseline_reached_rate"])
    if row["speedup_n"] == 0:
        text += ", neither reached the target"
    elif math.isinf(row["speedup"]) or row["speedup"] == 0:
        text += f", reached the target in {reached}% of its runs, {row['baseline']} in {base_reached}%"
    else:
        seeds, speedup = int(row["speedup_n"]), row["speedup"]
        when = f"{_num(speedup)}× sooner" if speedup >= 1 else f"{_num(1 / speedup)}× later"
        text += f", reached the target {when} (median over {seeds} seed{'s' * (seeds > 1)})"
    if row["failure_rate"] > 0:
        text += f", {_num(100 * row['failure_rate'])}% of its final runs failed"
    diverged = round(row["tuning_diverged_rate"] * row["tuning_trials"]) if row["tuning_trials"] else 0
    text += f", {diverged} of {int(row['tuning_trials'])} tuning trials diverged"
    if row.get("scale_invariant"):
        text += f" (AdaScale trained to its scale-invariant budget: up to S× the examples {row['baseline']} saw)"
    return text


def _num(value: float) -> str:
    """Three significant figures; ∞ and NaN in words."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.3g}"
