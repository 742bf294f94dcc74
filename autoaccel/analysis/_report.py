"""``autoaccel report``: one sweep (or several) → a self-contained HTML report, a Markdown summary, Parquet tables.

A comparison's report leads with the answer: the verdict of each technique against its baseline (one sentence and
one row each, a forest plot of the ratios, learning curves over seeds, tuning-budget curves), written also as
``verdict.parquet`` and ``tuning.parquet``. The details follow: overview (budget, statuses, best configurations),
each technique against its base optimizer (a plain sweep's best trials), hyperparameter importance (PED-ANOVA,
bootstrap intervals) and sensitivity curves and heat maps (a comparison's tuning trials), seed and batch-size
robustness (its final runs), tuning-budget curves (expected best of k), performance profiles and top-k finishes
(when there are several workloads or settings), failure accounting, and the commands that reproduce it.

This module does the I/O: it exports (or reads Parquet), computes the verdict's tables, calls the section builders
(``_sections.py``, pure), renders (``_render.py``) and writes; the plots are ``_plots.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from autoaccel.tracking import Tags, find_sweep_parent

from . import _sections as sections
from ._compare import EQUIVALENCE_MARGIN, tuning_curves, verdict_table
from ._cost import equal_compute
from ._distributions import declared_distributions
from ._export import declared_spaces, export_experiments, read_parquet, write_parquet
from ._render import Section, render_html, render_markdown

__all__ = ["SECTIONS", "build_report"]

SECTIONS = (
    "Verdict",
    "Overview",
    "Each technique against its base optimizer",
    "Hyperparameter importance",
    "Sensitivity",
    "Robustness over seeds and batch sizes",
    "Perturbation: how far each setting can move",
    "Tuning budget",
    "Performance profiles and top-k finishes",
    "Failure accounting",
    "Reproduce",
)


def build_report(
    experiments: Sequence[str],
    tracking_uri: str | None,
    out_dir: str | Path,
    *,
    log_artifacts: bool = True,
    parquet: Sequence[str | Path] = (),
    equivalence_margin: float | None = None,
) -> dict[str, Any]:
    """Export, analyse and render; return the paths written. Logs them to the sweep's parent run when asked.

    ``parquet``: folders of an earlier export (``runs.parquet``, ``history.parquet``) to report instead of the
    tracking store, offline (``tracking_uri`` None); ``experiments`` then picks among theirs (empty: all).
    ``equivalence_margin``: a comparison's verdict calls a technique ``equivalent`` when its ratio's interval lies
    within ``[1/(1 + m), 1 + m]``; by default the margin the comparison's spec set (``compare.equivalence_margin``,
    recorded with its protocol), else 2%."""

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if parquet:
        runs_table, history_table = read_parquet(parquet, experiments)
        experiments = list(dict.fromkeys(runs_table.column("experiment").to_pylist()))
    else:
        runs_table, history_table = export_experiments(list(experiments), tracking_uri)
    write_parquet(runs_table, history_table, out)
    runs, history = runs_table.to_pandas(), history_table.to_pandas()
    if runs["mode"].dropna().nunique() > 1:
        raise ValueError(
            f"{', '.join(experiments)} mix workloads ranked by min and by max: report them separately "
            "(performance profiles over several workloads use time-to-target, in one report per direction)"
        )
    metric = runs["metric_name"].dropna().iloc[0] if runs["metric_name"].notna().any() else "metric"
    mode = runs["mode"].dropna().iloc[0] if runs["mode"].notna().any() else "min"
    target = runs["target"].dropna().iloc[0] if runs["target"].notna().any() else None
    parent, spec = _parent(tracking_uri, experiments[0]) if tracking_uri else (None, None)
    # the search space as the sweep declared it (ranges, log scales); guessed from the values for older sweeps
    distributions = declared_distributions(declared_spaces(runs_table))
    log_scales = {column: bool(getattr(d, "log", False)) for column, d in distributions.items()}
    # a comparison: tuning trials say how each knob matters, final runs how robust the chosen configurations are
    compared = sections.is_comparison(runs)
    protocols = sections.protocols(runs)
    if equivalence_margin is None:
        margins = {p.get("equivalence_margin") for p in protocols.values()} - {None}
        equivalence_margin = margins.pop() if len(margins) == 1 else EQUIVALENCE_MARGIN
    tuning = runs[runs["phase"] == "tuning"] if compared else runs
    final = runs[runs["phase"] == "final"] if compared else runs
    cache: dict[str, tuple[pd.DataFrame | None, pd.DataFrame]] = {}

    def verdict_tables() -> tuple[pd.DataFrame | None, pd.DataFrame]:  # for two sections, computed once
        if "tables" not in cache:
            cache["tables"] = _verdict_tables(runs, history, out, equivalence_margin)
        return cache["tables"]

    builders: list[Callable[[], Section]] = [  # in the order of SECTIONS
        lambda: sections.verdict(runs, history, *(verdict_tables() if compared else (None, None))),
        lambda: sections.overview(runs, experiments, metric, mode, target),
        lambda: sections.techniques(runs, history, mode, metric),
        lambda: sections.importance(tuning, mode, distributions or None),
        lambda: sections.sensitivity(tuning, mode, metric, log_scales),
        lambda: sections.robustness(final, mode, metric),
        lambda: sections.perturbation(runs, mode, metric),
        lambda: sections.budget(tuning, mode, metric, verdict_tables()[1] if compared else None),
        lambda: sections.profiles(final, mode),
        lambda: sections.failures(runs),
        lambda: sections.reproduce(experiments, tracking_uri, str(out), spec),
    ]
    built = []
    for title, build in zip(SECTIONS, builders, strict=True):
        try:
            built.append(build())
        except (ValueError, KeyError, TypeError) as error:  # one section's gap must not cost the others
            built.append(Section(title, missing=[f"could not be computed: {error}"]))
    title = f"autoaccel report: {', '.join(experiments)}"
    (out / "index.html").write_text(render_html(title, built))
    (out / "report.md").write_text(render_markdown(title, built))
    if log_artifacts and parent is not None:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri).log_artifacts(parent, str(out), artifact_path="report")
    verdict = out / "verdict.parquet"
    return {
        "html": str(out / "index.html"),
        "markdown": str(out / "report.md"),
        "runs": len(runs),
        "parent_run_id": parent,
        "folder": str(out),
        "verdict": built[0].text[1:],  # one sentence per technique (empty unless a comparison)
        **({"verdict_table": str(verdict)} if verdict.exists() else {}),
    }


def _verdict_tables(
    runs: pd.DataFrame, history: pd.DataFrame, out: Path, margin: float
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """A comparison's verdict (None while its final runs have not run; with each row at equal compute too) and
    tuning curves, written as ``verdict.parquet`` and ``tuning.parquet``."""
    curves = tuning_curves(runs)
    if not (runs["phase"] == "final").any():
        return None, curves
    table = equal_compute(runs, history, verdict_table(runs, equivalence_margin=margin), equivalence_margin=margin)
    table.to_parquet(out / "verdict.parquet", index=False)
    curves.to_parquet(out / "tuning.parquet", index=False)
    return table, curves


def _parent(tracking_uri: str, experiment: str) -> tuple[str | None, str | None]:
    """The sweep's parent run and the spec it ran (for the reproduce section), if the experiment has them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None, None
    parent = find_sweep_parent(client, found.experiment_id)
    if parent is None:
        return None, None
    folder = parent.data.tags.get(Tags.FOLDER)
    return parent.info.run_id, str(Path(folder) / "spec.yaml") if folder else None
