"""Reading sweeps back for analysis: ``export`` (MLflow → ``runs``/``history`` Arrow tables and Parquet files),
``sensitivity`` (importance, sensitivity curves and heat maps, perturbations), ``robustness`` (seeds, batch sizes,
performance profiles, top-k finishes, expected best of k, failure accounting) and ``report`` (HTML + Markdown).

Names are imported on first use, so ``import autoaccel.analysis`` stays light until one is needed (pyarrow, and
MLflow for a non-SQLite store, load then). The function ``export`` is not re-exported here: its name is the
submodule's, and the package attribute must stay the module (``from autoaccel.analysis.export import export``).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name → the submodule that defines it
_LAZY = {
    **dict.fromkeys(("export_command", "export_experiments", "write_parquet"), "export"),
    **dict.fromkeys(
        (
            "importance_by_group",
            "param_importance",
            "perturbation_configs",
            "perturbation_loss",
            "sensitivity_curve",
            "sensitivity_heatmap",
        ),
        "sensitivity",
    ),
    **dict.fromkeys(
        (
            "batch_size_robustness",
            "benchmark_score",
            "expected_best_of_k",
            "failure_accounting",
            "performance_profile",
            "seed_robustness",
            "top_k_finishes",
        ),
        "robustness",
    ),
    "build_report": "report",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
