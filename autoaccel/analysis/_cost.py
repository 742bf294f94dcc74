"""Equal compute: each row of a comparison's verdict again, with both sides at the same training cost.

A comparison's final runs train the same number of steps; a technique whose step costs more (AdaHessian's
Hessian-vector product, Anderson's least squares) has then used more compute. The timing pass measured each final
configuration's seconds per step alone (``cost_per_step_s``). For a row (technique, baseline, setting) each side's
compute is ``C = steps × cost_per_step`` (the median over its final runs); both sides are read at
``T = min(C_technique, C_baseline)``: the side that used more at the last evaluation it had reached within ``T``,
the other at its end. The row's test then runs on those values, alone: the equal-time figures are a second view of
the same runs, not a claim corrected with the others (the verdict is the equal-steps one).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["EQUAL_TIME_COLUMNS", "equal_compute"]

EQUAL_TIME_COLUMNS = (
    "cost_ratio",
    "ratio_equal_time",
    "ratio_equal_time_ci_low",
    "ratio_equal_time_ci_high",
    "verdict_equal_time",
)


def equal_compute(
    runs: pd.DataFrame, history: pd.DataFrame, table: pd.DataFrame, *, ci: float = 0.95, **verdict: Any
) -> pd.DataFrame:
    """``table`` (a :func:`verdict_table` of ``runs``) with :data:`EQUAL_TIME_COLUMNS`: ``cost_ratio`` (the
    technique's seconds per step ÷ its baseline's, medians over their final runs; > 1: its steps cost more) and the
    ratio, interval and verdict at equal compute. NaN (and no verdict) where the runs were not timed."""
    from ._compare import final_runs, verdict_table

    out = table.copy()
    for column in EQUAL_TIME_COLUMNS:
        out[column] = None if column == "verdict_equal_time" else math.nan
    if table.empty or "cost_per_step_s" not in runs:
        return out
    final = final_runs(runs)
    curves = _curves(history)
    for index, row in table.iterrows():
        in_experiment = final[final["experiment"] == row["experiment"]]
        own = in_experiment[(in_experiment["family"] == row["family"]) & (in_experiment["setting"] == row["setting"])]
        base = in_experiment[
            (in_experiment["family"] == row["baseline"]) & (in_experiment["setting"] == row["baseline_setting"])
        ]
        costs = own["cost_per_step_s"].median(), base["cost_per_step_s"].median()
        if not all(c > 0 for c in costs):
            continue
        out.loc[index, "cost_ratio"] = costs[0] / costs[1]
        budget = min(_compute(own, curves), _compute(base, curves))
        if not math.isfinite(budget):
            continue
        pair = pd.concat([_within(own, curves, budget), _within(base, curves, budget)])
        again = verdict_table(pair, ci=ci, **verdict)
        again = again[(again["family"] == row["family"]) & (again["baseline"] == row["baseline"])]
        if len(again) == 1:
            found = again.iloc[0]
            out.loc[index, "ratio_equal_time"] = found["ratio"]
            out.loc[index, "ratio_equal_time_ci_low"] = found["ratio_ci_low"]
            out.loc[index, "ratio_equal_time_ci_high"] = found["ratio_ci_high"]
            out.loc[index, "verdict_equal_time"] = found["verdict"]
    return out


def _curves(history: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """run_id → (steps, metric) at each evaluation, in order."""
    if history.empty:
        return {}
    metric = history[history["key"] == "metric"].dropna(subset=["step"]).sort_values(["run_id", "epoch"])
    return {
        run_id: (rows["step"].to_numpy(float), rows["value"].to_numpy(float))
        for run_id, rows in metric.groupby("run_id")
    }


def _compute(rows: pd.DataFrame, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """The median over the side's completed runs of seconds of training steps used: last step × cost per step (a
    failed run stopped early: its steps say nothing of what the side's budget costs; no completed run: ∞)."""
    done = rows[rows["status"] == "completed"]
    totals = [
        curves[run_id][0][-1] * cost
        for run_id, cost in zip(done["run_id"], done["cost_per_step_s"], strict=True)
        if run_id in curves and len(curves[run_id][0]) and cost > 0
    ]
    return float(np.median(totals)) if totals else math.inf


def _within(rows: pd.DataFrame, curves: dict[str, tuple[np.ndarray, np.ndarray]], budget: float) -> pd.DataFrame:
    """The runs with ``final_metric`` as it stood at the last evaluation within ``budget`` seconds of steps (the
    run's own final value when that is its end); a run with no evaluation within it has no result there (NaN:
    the pairing leaves it out). A failed run stays a failure if it failed within the budget; one that failed after
    it is read, completed, at its last evaluation before (at equal compute it had not failed yet)."""
    rows = rows.copy()
    for index, row in rows.iterrows():
        steps, values = curves.get(row["run_id"], (np.array([]), np.array([])))
        within = steps * row["cost_per_step_s"] <= budget * (1 + 1e-9)
        reached = np.nonzero(within)[0]
        failed = row["status"] != "completed"
        if reached.size == 0:
            rows.loc[index, "final_metric"] = math.nan
        elif failed and reached[-1] < steps.size - 1 and math.isfinite(values[reached[-1]]):
            rows.loc[index, ["final_metric", "status"]] = [values[reached[-1]], "completed"]
        elif not failed and reached[-1] < steps.size - 1:
            rows.loc[index, "final_metric"] = values[reached[-1]]
    return rows
