"""The verdict of a comparison: does each technique beat its baseline, by how much, how reliably, and what could the
runs have shown?

Input: the export's ``runs`` table of a comparison (``autoaccel sweep`` with a ``compare`` section): tuning trials
(``phase = tuning``) and final runs (``phase = final``: each tuning replicate's best configuration re-run on paired
seeds and every batch size, never stopped early). The method and its sources are in ``docs/compare.md``, the test
in :mod:`autoaccel.analysis._paired_test`; in short, per (comparison, family, baseline, setting = workload × batch
size), over the runs both sides have with a meaningful ratio (comparisons reported together each keep their own
pairs, tuning and direction):

- Tuning replicates: each family may be tuned in R independent studies (``tuning_replicate`` 0…R−1 on every run;
  absent or null in an older export: every run is replicate 0); the final runs re-run each replicate's best
  configuration (the best of its re-run ones by :func:`autoaccel.objective.best_order`: the better tuning metric,
  then the lower final training loss, then the earlier trial) on the same seeds.
- ``ratio``: the estimate of technique ÷ baseline of the final metric, turned so that < 1 is better whatever the
  direction (``min``: family/baseline; ``max``: baseline/family), with its interval ``ratio_ci_low`` /
  ``ratio_ci_high`` (level ``ci``), from the signed-rank test over seeds (one replicate; ``test`` says so) or the t
  over tuning replicates (several); a failed run (diverged or errored) is the worst possible result: ratio ∞ when
  only the family failed, 0 when only the baseline did, 1 when both did. ``difference``: the same estimate of
  family − baseline in the metric's own units (for ``max``, > 0 is better).
- ``p_value`` (no difference) and ``p_equivalence`` (a difference of at least ``equivalence_margin``), and both
  adjusted over every row of the table (``p_adjusted``, ``p_equivalence_adjusted``: Holm with Shaffer's count; a
  row with fewer than :data:`MIN_SEEDS` seeds takes no part and has none).
- ``detectable_ratio``: the ratio (< 1) at or below which the row would say ``better`` with 80% power, from its own
  spread and runs; 0 when no gain could be detected, NaN when most runs failed (no finite spread).
- ``tuning_replicates`` (R, the fewer of the two sides'), ``replicate_spread`` (the factor between the largest and
  the smallest replicate's ratio; NaN with one replicate), ``n_seeds`` (paired seeds), ``n_runs`` (paired runs).
- ``win_rate``: the fraction of paired runs where the family beat the baseline's same seed (a failure never wins).
- ``speedup``: the median over paired runs of the baseline's steps to target ÷ the family's (> 1: the family is
  faster), a run that never reached the target (or failed) counting as never (∞); a run pair where neither reached
  it says nothing about speed and is left out (``speedup_n`` remain). Its interval is the median's distribution-free
  one. ``speedup_time``: the same in wall time.
- ``failure_rate``: the family's failed final runs ÷ all of them in the setting (``baseline_failure_rate`` too).
- ``verdict``: ``better`` / ``worse`` when the corrected test rejects "no difference", else ``equivalent`` when it
  rejects "a difference of at least the margin", else ``inconclusive`` (always so with fewer than
  :data:`MIN_SEEDS` paired seeds).

Interrupted runs (a sweep cut short by Ctrl-C) are not yet results and are left out of every pairing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from autoaccel import objective

from ._paired_test import (
    MIN_SEEDS,
    REPLICATES,
    RUNS,
    SEEDS,
    detectable,
    holm_shaffer,
    location,
    matched_cells,
    median_interval,
    paired_evidence,
    verdict_rule,
)
from ._robustness import _require_rows, expected_best_of_k

__all__ = [
    "EQUIVALENCE_MARGIN",
    "MIN_SEEDS",
    "VERDICTS",
    "final_runs",
    "interval_text",
    "sentence",
    "tuning_curves",
    "verdict_rule",
    "verdict_table",
]

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
# equivalent: the ratio's interval inside [1/1.02, 1.02] (the default of the spec's compare.equivalence_margin)
EQUIVALENCE_MARGIN = 0.02
FAILED = ("diverged", "errored")
_RESULT = ("completed", *FAILED)  # statuses that are results (interrupted, stopped early: not a final result)
REPLICATE = "tuning_replicate"


def _setting(runs: pd.DataFrame) -> pd.Series:
    batch = runs["budget.batch_size"] if "budget.batch_size" in runs else pd.Series([None] * len(runs), runs.index)
    return runs["workload"].astype(str) + batch.map(lambda b: "" if pd.isna(b) else f" / batch {int(b)}")


def _with_experiment(runs: pd.DataFrame) -> pd.DataFrame:
    """Every comparison reported together keeps its own pairs, tuning and direction: rows carry their experiment."""
    return runs if "experiment" in runs else runs.assign(experiment="")


def final_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The final runs a verdict rests on, with their ``setting`` and ``tuning_replicate``: per comparison
    (experiment), family and tuning replicate those of the replicate's best tuning configuration (with
    ``final.top > 1`` the others are details, not the verdict), and only runs that are results (completed, diverged
    or errored; an interrupted one is not yet)."""
    _require_rows(runs, "phase", "baseline", "family", "seed", "status", "final_metric", "workload", "mode")
    runs = _with_experiment(runs)
    final = runs[(runs["phase"] == "final") & runs["status"].isin(_RESULT)]
    if final.empty:
        raise ValueError("no final runs: a comparison's verdict needs its final phase (compare in the spec)")
    tuning = runs[runs["phase"] == "tuning"]
    final = final.assign(setting=_setting(final), **{REPLICATE: _replicates(final, tuning)})
    keys = ["experiment", "family", REPLICATE]
    if "study.source_run" not in final or final.groupby(keys)["study.source_run"].nunique().max() <= 1:
        return final  # one configuration per replicate: nothing to choose
    return pd.concat([_chosen(rows, tuning) for _, rows in final.groupby(keys, sort=False)])


def _replicates(final: pd.DataFrame, tuning: pd.DataFrame) -> pd.Series:
    """Each final run's tuning replicate: its own column, else its source tuning run's, else 0 (an older export)."""
    nothing = pd.Series(math.nan, index=final.index)
    own = pd.to_numeric(final[REPLICATE], errors="coerce") if REPLICATE in final else nothing
    if "study.source_run" in final and REPLICATE in tuning and len(tuning):
        source = pd.to_numeric(tuning.drop_duplicates("run_id").set_index("run_id")[REPLICATE], errors="coerce")
        own = own.fillna(final["study.source_run"].map(source))
    return own.fillna(0).astype(int)


def _chosen(final: pd.DataFrame, tuning: pd.DataFrame) -> pd.DataFrame:
    """One replicate's final runs in one comparison, restricted to those of its best tuning configuration (ranked by
    :func:`autoaccel.objective.best_order`, a configuration whose tuning trial did not complete last)."""
    if "study.source_run" not in final or final["study.source_run"].nunique() <= 1:
        return final
    mode = objective.check_mode(final["mode"].iloc[0])
    trials = tuning.drop_duplicates("run_id").set_index("run_id")

    def field(run_id: str, column: str, completed: bool = True) -> Any:
        if run_id not in trials.index or column not in trials:
            return None
        if completed and trials.at[run_id, "status"] != "completed":
            return None
        value = trials.at[run_id, column]
        return None if pd.isna(value) else value

    best = objective.best_order(
        final["study.source_run"].dropna().unique(),
        lambda run: field(run, "final_metric"),
        mode,
        second=lambda run: field(run, "final_train_loss"),
        started=lambda run: field(run, "start_time", completed=False),
    )[0]
    return final[final["study.source_run"] == best]


Side = dict[str, np.ndarray]  # one replicate's runs: seed, failed, value, steps, seconds (arrays in seed order)
_OUTCOMES = ("win", "steps", "seconds")


def _sides(columns: dict[str, np.ndarray], at: np.ndarray) -> dict[int, Side]:
    """Replicate → the runs at positions ``at`` by seed: failed, value (NaN if failed), steps and seconds to target
    (∞: never, or failed); a seed run twice in one replicate counts once (its last run)."""
    failed = columns["failed"][at]
    replicate = columns["replicate"][at]
    own = {
        "seed": columns["seed"][at],
        "failed": failed,
        "value": np.where(failed, np.nan, columns["value"][at]),
        "steps": np.where(failed | np.isnan(columns["steps"][at]), np.inf, columns["steps"][at]),
        "seconds": np.where(failed | np.isnan(columns["seconds"][at]), np.inf, columns["seconds"][at]),
    }
    sides = {}
    for r in np.unique(replicate):
        runs = np.flatnonzero(replicate == r)
        seeds = own["seed"][runs]
        last = len(seeds) - 1 - np.unique(seeds[::-1], return_index=True)[1]  # np.unique sorts: seed order
        sides[int(r)] = {k: v[runs][last] for k, v in own.items()}
    return sides


def _pair(family: Side, baseline: Side, mode: str) -> dict[str, np.ndarray]:
    """Per seed both ran: ``log_ratio`` (< 0 better; ±∞ for a failure) and ``difference`` (family − baseline in the
    metric's units, a failure the worst), and where the seed is on each side (``family_at``, ``baseline_at``); a
    seed whose ratio means nothing (a negative metric) is left out."""
    if np.array_equal(family["seed"], baseline["seed"]):  # the usual case: the same seeds on both sides
        fi = bi = np.arange(len(family["seed"]))
    else:
        _, fi, bi = np.intersect1d(family["seed"], baseline["seed"], assume_unique=True, return_indices=True)
    f_failed, b_failed = family["failed"][fi], baseline["failed"][bi]
    f_value, b_value = family["value"][fi], baseline["value"][bi]
    top, bottom = (f_value, b_value) if mode == "min" else (b_value, f_value)
    worst = objective.worst(mode)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(top) - np.log(bottom)  # log 0 = −∞: a zero baseline makes the family's ratio ∞
        log_ratio = np.where((top == 0) & (bottom == 0), 0.0, log_ratio)
        log_ratio = np.where((top < 0) | (bottom < 0), np.nan, log_ratio)  # the ratio of a metric that can be < 0
        log_ratio = np.where(f_failed, np.where(b_failed, 0.0, np.inf), np.where(b_failed, -np.inf, log_ratio))
        difference = np.where(f_failed, worst, f_value) - np.where(b_failed, worst, b_value)
    difference = np.where(f_failed & b_failed, 0.0, difference)
    meaningful = ~np.isnan(log_ratio)
    return {
        "log_ratio": log_ratio[meaningful],
        "difference": difference[meaningful],
        "family_at": fi[meaningful],
        "baseline_at": bi[meaningful],
    }


def _outcomes(family: Side, baseline: Side, pair: dict[str, np.ndarray], mode: str) -> dict[str, np.ndarray]:
    """For the seeds of a matched pair: whether the family won, and the speeds to target in steps and seconds."""
    fi, bi = pair["family_at"], pair["baseline_at"]
    f_value, b_value = family["value"][fi], baseline["value"][bi]
    b_failed = baseline["failed"][bi]
    with np.errstate(invalid="ignore"):
        better = objective.loss(f_value, mode) < objective.loss(b_value, mode)
    return {
        "win": ~family["failed"][fi] & (b_failed | better),
        "steps": _speeds(family["steps"][fi], baseline["steps"][bi]),
        "seconds": _speeds(family["seconds"][fi], baseline["seconds"][bi]),
    }


def _speeds(family: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Baseline ÷ family time to target (> 1: the family is faster; ∞ when only the family reached it, 0 when only
    the baseline did); NaN when neither reached it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = baseline / family
    speed = np.where(np.isinf(family), 0.0, speed)
    speed = np.where(np.isinf(baseline), np.inf, speed)
    return np.where(np.isinf(family) & np.isinf(baseline), np.nan, speed)


def verdict_table(
    runs: pd.DataFrame, *, ci: float = 0.95, equivalence_margin: float = EQUIVALENCE_MARGIN
) -> pd.DataFrame:
    """One row per (experiment, family, baseline, setting) of the comparisons' final runs: the columns of the module
    docstring, plus ``experiment``, ``workload``, ``batch_size``, ``metric``, ``mode``, the two medians, the reach
    rates, and the family's tuning (``tuning_trials``, ``tuning_completed``, ``tuning_diverged_rate``, over all its
    replicates). Every row of the table is one family of tests: the correction is over all of them."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must be between 0 and 1, got {ci!r}")
    if not equivalence_margin > 0:
        raise ValueError(f"equivalence_margin must be > 0 (a share: 0.02 is ±2%), got {equivalence_margin!r}")
    final = final_runs(runs)
    runs = _with_experiment(runs)
    tuning = runs[(runs["phase"] == "tuning") & (runs["status"] != "interrupted")]  # an orphan of a killed driver
    status = tuning["status"].to_numpy(dtype=object)
    tuned = {  # (experiment, family) → tuning trials, completed, diverged (over all its replicates)
        key: (len(at), int((status[at] == "completed").sum()), int((status[at] == "diverged").sum()))
        for key, at in (tuning.groupby(["experiment", "family"]).indices.items() if len(tuning) else ())
    }
    columns = _columns(final)
    groups = final.groupby(["experiment", "setting", "family"], sort=True).indices
    families = {key: _FamilyRuns(columns, at) for key, at in groups.items()}
    rows, evidence = [], []
    for (experiment, setting), at in final.groupby(["experiment", "setting"], sort=True).indices.items():
        mode = objective.check_mode(columns["mode"][at[0]])
        named = [(f, b) for f, b in zip(columns["family"][at], columns["baseline"][at], strict=True) if not pd.isna(b)]
        pairs = list(dict.fromkeys(named))
        for family, baseline in pairs:
            own = families[(experiment, setting, family)]
            base = families.get((experiment, setting, baseline))
            if base is None:  # a family at a batch of its own (a scale S): against its baseline at the baseline's batch
                elsewhere = [v for (e, _, f), v in families.items() if (e, f) == (experiment, baseline)]
                base = elsewhere[0] if len(elsewhere) == 1 else None  # at several batches: no one reference
            f, b = own.sides, base.sides if base is not None else {}
            paired = {(i, j): _pair(f[i], b[j], mode) for i in f for j in b}
            both = [_outcomes(f[i], b[j], paired[(i, j)], mode) for i, j in matched_cells(paired)]
            matched = {k: np.concatenate([o[k] for o in both]) if both else np.array([]) for k in _OUTCOMES}
            found = paired_evidence({k: v["log_ratio"] for k, v in paired.items()}, ci, equivalence_margin)
            evidence.append(found)
            speeds, times = matched["steps"][~np.isnan(matched["steps"])], matched["seconds"]
            speed, speed_low, speed_high = median_interval(speeds, ci)
            wall, wall_low, wall_high = median_interval(times[~np.isnan(times)], ci)
            trials, completed, diverged = tuned.get((experiment, family), (0, 0, 0))
            rows.append(
                {
                    "experiment": experiment,
                    "family": family,
                    "baseline": baseline,
                    "setting": setting,
                    # another setting only for a family at a batch of its own: its baseline's batch
                    "baseline_setting": base.setting if base is not None else setting,
                    "workload": own.workload,
                    "batch_size": own.batch_size,
                    "metric": own.metric,
                    "mode": mode,
                    "n_seeds": found.n_seeds,
                    "n_runs": len(matched["win"]),
                    "tuning_replicates": found.replicates,
                    "test": found.test,
                    "ratio": math.exp(found.estimate),
                    "ratio_ci_low": math.exp(found.low),
                    "ratio_ci_high": math.exp(found.high),
                    "difference": location(
                        {k: v["difference"] for k, v in paired.items()}, by_replicates=found.test == REPLICATES
                    ),
                    "replicate_spread": found.replicate_spread,
                    "p_value": found.p_value,
                    "p_equivalence": found.p_equivalence,
                    "equivalence_margin": equivalence_margin,
                    "win_rate": float(matched["win"].mean()) if len(matched["win"]) else math.nan,
                    "speedup": speed,
                    "speedup_ci_low": speed_low,
                    "speedup_ci_high": speed_high,
                    "speedup_n": len(speeds),
                    "speedup_time": wall,
                    "speedup_time_ci_low": wall_low,
                    "speedup_time_ci_high": wall_high,
                    "failure_rate": own.failure_rate,
                    "baseline_failure_rate": base.failure_rate if base is not None else math.nan,
                    "median": own.median,
                    "baseline_median": base.median if base is not None else math.nan,
                    "reached_rate": own.reached_rate,
                    "baseline_reached_rate": base.reached_rate if base is not None else math.nan,
                    "tuning_trials": trials,
                    "tuning_completed": completed,
                    "tuning_diverged_rate": diverged / trials if trials else math.nan,
                    # a scale-invariant budget (AdaScale's): up to S× the examples of a baseline at its batch
                    "scale_invariant": own.scale_invariant,
                }
            )
    return _judged(rows, evidence, 1.0 - ci)


def _columns(final: pd.DataFrame) -> dict[str, np.ndarray]:
    """The final runs' columns the verdict reads, as arrays (one pass over the table, not one per row)."""

    def numbers(column: str) -> np.ndarray:
        if column not in final:
            return np.full(len(final), np.nan)
        return pd.to_numeric(final[column], errors="coerce").to_numpy(dtype=float)

    return {
        "family": final["family"].to_numpy(dtype=object),
        "baseline": final["baseline"].to_numpy(dtype=object),
        "mode": final["mode"].to_numpy(dtype=object),
        "setting": final["setting"].to_numpy(dtype=object),
        "workload": final["workload"].to_numpy(dtype=object),
        "metric": final["metric_name"].to_numpy(dtype=object) if "metric_name" in final else np.full(len(final), None),
        "technique": final["technique"].to_numpy(dtype=object) if "technique" in final else np.full(len(final), None),
        "seed": pd.factorize(final["seed"].astype(str))[0],  # seeds as codes: pairing compares integers
        "replicate": final[REPLICATE].to_numpy(),
        "failed": final["status"].isin(FAILED).to_numpy(),
        "value": numbers("final_metric"),
        "batch_size": numbers("budget.batch_size"),
        "steps": numbers("steps_to_target"),
        "seconds": numbers("time_to_target_s"),
    }


class _FamilyRuns:
    """One family's final runs in one setting of one comparison (at positions ``at`` of the columns)."""

    def __init__(self, columns: dict[str, np.ndarray], at: np.ndarray) -> None:
        self.sides = _sides(columns, at)
        first = at[0]
        self.setting, self.workload, self.metric = (columns[k][first] for k in ("setting", "workload", "metric"))
        self.batch_size = float(columns["batch_size"][first])
        failed = columns["failed"][at]
        self.failure_rate = float(failed.mean())
        # the median over runs, a failed run counting as ∞ (min) or −∞ (max): never a finite stand-in
        self.median = float(np.median(np.where(failed, objective.worst(columns["mode"][first]), columns["value"][at])))
        self.reached_rate = float(np.isfinite(np.concatenate([s["steps"] for s in self.sides.values()])).mean())
        self.scale_invariant = _scale_invariant(columns["technique"][at])


def _judged(rows: list[dict[str, Any]], evidence: list, alpha: float) -> pd.DataFrame:
    """The table, with the corrected p-values, the detectable ratio and the verdict of every row: a row with fewer
    than MIN_SEEDS seeds can claim nothing, so it takes no part in the correction."""
    seeds = np.array([row["n_seeds"] for row in rows], dtype=int)
    claims = seeds >= MIN_SEEDS
    p = np.where(claims, [row["p_value"] for row in rows], np.nan)
    adjusted, equivalence = holm_shaffer(p, np.where(claims, [row["p_equivalence"] for row in rows], np.nan))
    tested = max(int(claims.sum()), 1)
    for k, (row, found) in enumerate(zip(rows, evidence, strict=True)):
        row["p_adjusted"], row["p_equivalence_adjusted"] = float(adjusted[k]), float(equivalence[k])
        row["detectable_ratio"] = math.exp(-detectable(found, alpha / tested)) if claims[k] else 0.0
        row["verdict"] = verdict_rule(
            row["ratio_ci_low"], row["ratio_ci_high"], row["n_seeds"], adjusted[k], equivalence[k], alpha
        )
    return pd.DataFrame(rows)


def _scale_invariant(labels: np.ndarray) -> bool:
    """Whether a technique in the runs' stacks (their ``technique`` labels) counts its budget in scale-invariant
    iterations (its registry entry says so: ``Technique.scale_invariant_budget``)."""
    named = {label for label in labels if isinstance(label, str)}
    if not named:
        return False
    from autoaccel.optim import techniques_in  # the registry (and torch) only when there are techniques to ask about

    return any(t.scale_invariant_budget for label in named for t in techniques_in(label))


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
    val_mse 0.93× sgd's [0.88, 0.99] (lower is better; −0.0021 val_mse), 10/10 seeds better (signed-rank over 10
    seeds, p = 0.002, 0.006 after Holm over 3 rows; it could detect 0.95× or better), reached the target 1.4× sooner
    (median over 10 seeds), 0 of 24 tuning trials diverged". The ratio is technique ÷ baseline as the words say, so
    for a metric to maximise it is the table's ``1 / ratio`` (> 1 better)."""
    n = int(row["n_seeds"])
    replicates = int(row.get("tuning_replicates", 1) or 1)
    runs = int(row.get("n_runs", n))
    wins = round(row["win_rate"] * runs) if runs else 0
    where = f"{row['setting']} [{row['experiment']}]" if with_experiment else row["setting"]
    against = row["baseline"]
    if row["baseline_setting"] != row["setting"]:  # a family at a batch of its own
        against += f" ({row['baseline_setting'].rsplit(' / ', 1)[-1]})"
    higher = row["mode"] == "max"
    ratio, low, high = (row["ratio"], row["ratio_ci_low"], row["ratio_ci_high"])
    if higher:  # technique ÷ baseline, as the sentence reads
        ratio, low, high = (_inverse(v) for v in (ratio, high, low))
    digits = _figures(low, ratio, high)
    verdict = row["verdict"]
    if verdict == "equivalent":
        verdict += f" (within ±{_num(100 * row['equivalence_margin'])}%)"
    text = (
        f"{row['family']} over {against} at {where}: {verdict}; final {row['metric']} "
        f"{_num(ratio, digits)}× {row['baseline']}'s [{_num(low, digits)}, {_num(high, digits)}] "
        f"({'higher' if higher else 'lower'} is better; {_signed(row.get('difference'))} {row['metric']}), "
        f"{wins}/{runs} {'seeds' if replicates == 1 else 'runs'} better ({_evidence(row, n, replicates)})"
    )
    text += _at_equal_compute(row, higher)
    reached, base_reached = _num(100 * row["reached_rate"]), _num(100 * row["baseline_reached_rate"])
    if row["speedup_n"] == 0:
        text += ", neither reached the target"
    elif math.isinf(row["speedup"]) or row["speedup"] == 0:
        text += f", reached the target in {reached}% of its runs, {row['baseline']} in {base_reached}%"
    else:
        seeds, speedup = int(row["speedup_n"]), row["speedup"]
        when = f"{_num(speedup)}× sooner" if speedup >= 1 else f"{_num(1 / speedup)}× later"
        text += f", reached the target {when} (median over {seeds} {'seed' if replicates == 1 else 'run'}"
        text += f"{'s' * (seeds > 1)})"
    if row["failure_rate"] > 0:
        text += f", {_num(100 * row['failure_rate'])}% of its final runs failed"
    diverged = round(row["tuning_diverged_rate"] * row["tuning_trials"]) if row["tuning_trials"] else 0
    text += f", {diverged} of {int(row['tuning_trials'])} tuning trials diverged"
    if row.get("scale_invariant"):
        text += f" (AdaScale trained to its scale-invariant budget: up to S× the examples {row['baseline']} saw)"
    return text


def _at_equal_compute(row: pd.Series | dict[str, Any], higher: bool) -> str:
    """The same comparison at equal compute (the timing pass's cost per step; ``equal_compute``), if it was timed."""
    cost = row.get("cost_ratio")
    if cost is None or not math.isfinite(cost):
        return ""
    text = f", {_num(cost)}× the cost per step"
    ratio, low, high = (row.get(k) for k in ("ratio_equal_time", "ratio_equal_time_ci_low", "ratio_equal_time_ci_high"))
    if ratio is None or not math.isfinite(ratio):
        return text
    if higher:
        ratio, low, high = (_inverse(v) for v in (ratio, high, low))
    digits = _figures(low, ratio, high)
    return text + (
        f": {_num(ratio, digits)}× [{_num(low, digits)}, {_num(high, digits)}] at equal compute "
        f"({row['verdict_equal_time']} there)"
    )


def _evidence(row: pd.Series | dict[str, Any], n: int, replicates: int) -> str:
    """What the verdict rests on: the test, over what, its p-values and what it could have detected."""
    if n < MIN_SEEDS:
        return f"only {n} paired seed{'s' * (n != 1)}: a claim needs {MIN_SEEDS}"
    test = row.get("test", SEEDS)
    if test == SEEDS:
        basis = f"signed-rank over {n} seeds"
    elif test == RUNS:
        basis = f"signed-rank over {int(row['n_runs'])} runs: a replicate's configuration failed on most seeds"
    else:
        basis = (
            f"t over {replicates} tuning replicates × {n} seeds, their ratios {_num(row['replicate_spread'])}× apart"
        )
    if row["verdict"] == "equivalent":  # the test that decided: a difference of at least the margin, rejected
        margin = _num(100 * row["equivalence_margin"])
        text = f"{basis}, p = {_num(row['p_equivalence'], 2)} for a difference of ±{margin}% or more"
        text += f", {_num(row['p_equivalence_adjusted'], 2)} after Holm"
    else:
        text = f"{basis}, p = {_num(row['p_value'], 2)}, {_num(row['p_adjusted'], 2)} after Holm"
    limit = row["detectable_ratio"]
    if limit == 0:
        return text + "; no gain could have been detected"
    if math.isnan(limit):
        return text + "; most runs failed, so no detectable gain can be stated"
    shown = _inverse(limit) if row["mode"] == "max" else limit
    return text + f"; it could detect {_num(shown, _figures(shown))}× or better"


def interval_text(estimate: float, low: float, high: float) -> tuple[str, str, str]:
    """An estimate and its interval as text, with the figures that keep the ends apart and off 1 (see
    :func:`sentence`): what a table beside a verdict shows."""
    digits = _figures(low, estimate, high)
    return _num(estimate, digits), _num(low, digits), _num(high, digits)


def _inverse(value: float) -> float:
    return math.inf if value == 0 else 1.0 / value


def _figures(*values: float) -> int:
    """Significant figures (at least 3) enough to tell an interval's ends (and its estimate) from each other and
    from 1, so that no interval next to a verdict reads as a point or as 1 when it is not."""
    for digits in range(3, 12):
        shown = [_num(v, digits) for v in values]
        one = _num(1.0, digits)
        apart = len(set(shown)) == len(set(values))
        if apart and all(text != one or v == 1 for text, v in zip(shown, values, strict=True)):
            return digits
    return 12


def _signed(value: float | None) -> str:
    """A difference with its sign (+0.0021, −0.5, +∞)."""
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "+∞" if value > 0 else "−∞"
    text = f"{value:+.3g}"
    return "−" + text[1:] if text.startswith("-") else text


def _num(value: float, digits: int = 3) -> str:
    """``digits`` significant figures; ∞ and NaN in words."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}g}"
