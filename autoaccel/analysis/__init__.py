"""Reading sweeps back: MLflow → ``runs``/``history`` Arrow tables and Parquet (:func:`export`), the statistics
(importance, sensitivity curves and heat maps, perturbation losses; performance profiles, top-k finishes, expected
best of k, seeds, batch sizes, failure accounting), a comparison's verdict (:func:`verdict_table`) and the report
(:func:`build_report`, HTML + Markdown).

The implementation lives in private modules (``_export``, ``_distributions``, ``_sensitivity``, ``_robustness``,
``_compare``; the report in parts: ``_sections`` builds each section from the tables, ``_plots`` draws with
matplotlib's object API, ``_render`` writes HTML and Markdown, ``_report`` does the I/O); every public name is
imported from here, once, on first use, so ``import autoaccel.analysis`` stays light until one is needed (pyarrow
and pandas load then, MLflow for a non-SQLite store).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name → the private module that defines it
_LAZY = {
    **dict.fromkeys(("declared_spaces", "export", "export_experiments", "read_parquet", "write_parquet"), "_export"),
    **dict.fromkeys(
        (
            "importance_by_group",
            "param_importance",
            "perturbation_loss",
            "sensitivity_curve",
            "sensitivity_heatmap",
        ),
        "_sensitivity",
    ),
    **dict.fromkeys(
        (
            "algoperf_times",
            "batch_size_robustness",
            "benchmark_score",
            "expected_best_of_k",
            "failure_accounting",
            "performance_profile",
            "seed_robustness",
            "top_k_finishes",
        ),
        "_robustness",
    ),
    **dict.fromkeys(("final_runs", "tuning_curves", "verdict_rule", "verdict_table"), "_compare"),
    **dict.fromkeys(("declared_distributions", "infer_distributions"), "_distributions"),
    "equal_compute": "_cost",
    **dict.fromkeys(("SECTIONS", "build_report"), "_report"),
    **dict.fromkeys(("by_scale", "is_comparison"), "_sections"),
    **dict.fromkeys(("Section", "markdown_table", "render_html", "render_markdown"), "_render"),
    **dict.fromkeys(
        (
            "best_trial_curves",
            "budget_curves",
            "expected_best_plot",
            "forest_plot",
            "heatmap_plot",
            "importance_plot",
            "learning_curves",
            "png",
            "profile_plot",
            "sensitivity_plots",
            "verdict_label",
        ),
        "_plots",
    ),
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
