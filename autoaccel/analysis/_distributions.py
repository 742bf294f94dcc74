"""Optuna distributions for the columns of a trials table: declared by the sweep's search space
(:func:`declared_distributions`, what the sweep recorded with its parent run) or, for sweeps from before that was
recorded and for any other table, inferred from the values seen (:func:`infer_distributions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["declared_distributions", "infer_distributions", "looks_log"]

# Log scale is inferred for positive values spanning more than this many decades whose median also sits in the
# lowest quarter of the linear range (see looks_log).
_LOG_DECADES = 2.0
_LOG_MEDIAN_POSITION = 0.25


def looks_log(values: np.ndarray) -> bool:
    """Whether observed values look log-uniformly sampled: positive, spanning more than 2 decades, and skewed low.

    The span alone is not enough: a uniform draw on [0, 0.99] (a momentum) easily spans 3 decades. Log-uniform draws
    over D decades put their median near ``10^(-D/2)`` of the way up the linear range (0.1 for D = 2), uniform draws
    near 0.5; so the median's position must also be below 0.25.
    """
    low, high = float(values.min()), float(values.max())
    if not (low > 0 and high / low > 10**_LOG_DECADES):
        return False
    return (float(np.median(values)) - low) / (high - low) < _LOG_MEDIAN_POSITION


def _python_scalar(value: Any) -> Any:
    """NumPy scalars to Python ones (Optuna's categorical choices must be None, bool, int, float or str)."""
    return value.item() if isinstance(value, np.generic) else value


def infer_distributions(df: pd.DataFrame, params: Sequence[str]) -> dict[str, Any]:
    """Optuna distributions for trials-table columns, from the values seen (NaN = not drawn, ignored).

    - bool, string or other non-numeric columns: ``CategoricalDistribution`` of the distinct values (first-seen
      order);
    - numeric columns whose values are all integers: ``IntDistribution(min, max)``;
    - other numeric columns: ``FloatDistribution(min, max)``;
    - ``log=True`` when the values are positive, span more than 2 decades (max/min > 100) and their median lies in
      the lowest quarter of the range, as log-uniform draws (learning rates, weight decays) do and uniform draws
      (a momentum on [0, 0.99]) do not; ints also need min ≥ 1.

    Columns never set are left out. The ranges are the observed ones, not the search space's: enough for
    importance, which only compares trials with each other.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name in params:
        raw = df[name]
        present = raw[raw.notna()]
        if present.empty:
            continue
        numeric = pd.to_numeric(present, errors="coerce")
        if pd.api.types.is_bool_dtype(present) or numeric.isna().any() or present.map(type).eq(bool).any():
            out[name] = CategoricalDistribution([_python_scalar(v) for v in pd.unique(present)])
            continue
        values = numeric.to_numpy(dtype=float)
        low, high = float(values.min()), float(values.max())
        log = looks_log(values)
        if np.all(values == np.round(values)):
            out[name] = IntDistribution(int(low), int(high), log=log and low >= 1)
        else:
            out[name] = FloatDistribution(low, high, log=log)
    return out


def declared_distributions(spaces: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Optuna distributions per column from the search spaces sweeps declared (experiment → family → column →
    declaration, what ``autoaccel.analysis.declared_spaces`` returns), merged over experiments and families: the
    widest range, log scale only where every declaration has it, the union of choices. Empty without any."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    merged: dict[str, list[Mapping[str, Any]]] = {}
    for families in spaces.values():
        for columns in families.values():
            for column, declared in columns.items():
                merged.setdefault(column, []).append(declared)
    out: dict[str, Any] = {}
    for column, declarations in merged.items():
        kinds = {d["kind"] for d in declarations}
        if kinds == {"choice"}:
            choices = [c for d in declarations for c in d["choices"]]
            out[column] = CategoricalDistribution(list(dict.fromkeys(choices)))
        elif "choice" not in kinds:
            low, high = min(d["low"] for d in declarations), max(d["high"] for d in declarations)
            log = all(d.get("log") for d in declarations)
            steps = {d.get("step") for d in declarations}
            if kinds == {"int"}:
                step = steps.pop() if len(steps) == 1 and None not in steps else 1
                out[column] = IntDistribution(int(low), int(high), log=log, step=1 if log else step)
            else:
                out[column] = FloatDistribution(float(low), float(high), log=log)
    return out
