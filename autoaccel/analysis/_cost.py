"""Equal compute: each side of a comparison's pair at the same training cost, from the runs' histories.

A comparison's final runs train the same number of steps; a technique whose step costs more (AdaHessian's
Hessian-vector product, Anderson's least squares) has then used more compute. The timing pass measured each final
configuration's seconds per step alone (``cost_per_step_s``). For a pair of runs on one seed, with totals
``C = steps × cost_per_step`` for each side, the side that used more is read at the last epoch it had reached within
the other's total, ``min(C_family, C_baseline)``, and the other at its end: the result each would have at equal time.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["at_equal_compute", "cost_ratio"]


def cost_ratio(own: pd.DataFrame, base: pd.DataFrame) -> float:
    """The median over the family's final runs of their seconds per step ÷ the median over the baseline's (> 1: the
    family's steps cost more); NaN when either was not timed."""
    if "cost_per_step_s" not in own or "cost_per_step_s" not in base:
        return math.nan
    family, baseline = own["cost_per_step_s"].median(), base["cost_per_step_s"].median()
    return float(family / baseline) if family > 0 and baseline > 0 else math.nan


def at_equal_compute(own: pd.DataFrame, base: pd.DataFrame, history: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
    """Copies of a pair's final runs (``own``: the family's, ``base``: its baseline's, one run per seed each) with
    ``final_metric`` as each run stood at equal compute with the other side's run on its seed. A failed run stays a
    failure; a seed whose runs were not timed, or where one side had not reached its first evaluation within the
    other's total, gets NaN (no result at equal compute: left out of the pairing)."""
    own, base = own.copy(), base.copy()
    if "cost_per_step_s" not in own or "cost_per_step_s" not in base or history.empty:
        own["final_metric"], base["final_metric"] = math.nan, math.nan
        return own, base
    metric = history[history["key"] == "metric"].dropna(subset=["step"]).sort_values(["run_id", "epoch"])
    curves = {
        run_id: (rows["step"].to_numpy(float), rows["value"].to_numpy(float))
        for run_id, rows in metric.groupby("run_id")
    }
    by_seed = base.set_index(base["seed"].astype(str))
    for index, row in own.iterrows():
        seed = str(row["seed"])
        if seed not in by_seed.index:
            continue
        other = by_seed.loc[seed]
        f_value, b_value = _pair(row, other, curves)
        own.loc[index, "final_metric"] = f_value
        base.loc[base["seed"].astype(str) == seed, "final_metric"] = b_value
    return own, base


def _pair(family: pd.Series, baseline: pd.Series, curves: dict) -> tuple[float, float]:
    f_total, b_total = _total(family, curves), _total(baseline, curves)
    if math.isnan(f_total) or math.isnan(b_total):
        return math.nan, math.nan
    budget = min(f_total, b_total)
    return _value_within(family, curves, budget), _value_within(baseline, curves, budget)


def _total(run: pd.Series, curves: dict) -> float:
    """Seconds of training steps the run used in all: its last step × its cost per step."""
    cost = run.get("cost_per_step_s")
    steps = curves.get(run["run_id"], (np.array([]),))[0]
    if cost is None or not cost > 0 or steps.size == 0:
        return math.nan
    return float(steps[-1] * cost)


def _value_within(run: pd.Series, curves: dict, budget: float) -> float:
    """The run's metric at the last evaluation within ``budget`` seconds of steps (its final result when that is
    its end; NaN for a failure's: the caller keeps its status)."""
    steps, values = curves[run["run_id"]]
    reached = np.nonzero(steps * run["cost_per_step_s"] <= budget * (1 + 1e-9))[0]
    if reached.size == 0:
        return math.nan
    last = reached[-1]
    return float(run["final_metric"]) if last == steps.size - 1 else float(values[last])
