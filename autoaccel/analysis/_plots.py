"""The report's plots, each a function from tables to a :class:`matplotlib.figure.Figure`.

Matplotlib's object API only: no ``pyplot`` state and no ``matplotlib.use``, so building a report never switches
the backend of a notebook or a GUI that imported autoaccel. :func:`png` renders a figure for embedding. The
evidence page (``trials/evidence/summarize.py``) draws its forest plots with :func:`forest_plot`, as the report does.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from autoaccel import objective

__all__ = [
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
]

# a verdict's colour in every plot: better green, worse red, equivalent blue, inconclusive grey
_COLOURS = {"better": "#1a7f37", "worse": "#b42318", "equivalent": "#1f5fbf"}
_UNDECIDED = "#555555"


def png(fig: Figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (tight bounding box)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def verdict_label(row: Mapping[str, Any], several: bool = False) -> str:
    """A verdict row's name: technique, baseline and setting, and its comparison when several are reported."""
    return f"{row['family']} vs {row['baseline']} ({row['setting']})" + (f" [{row['experiment']}]" if several else "")


def forest_plot(
    table: pd.DataFrame, labels: Sequence[str] | None = None, title: str | None = None, interval: str = "95%"
) -> Figure:
    """Each verdict row's paired ratio (technique ÷ baseline, < 1 better) with its interval, 1 = no difference; a
    value at ∞ or 0 (a side that failed) is drawn at the plot's edge. ``labels``: one per row (default: technique,
    baseline and setting)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if labels is None:
        several = "experiment" in table and table["experiment"].nunique() > 1
        labels = [verdict_label(row, several) for row in table.to_dict("records")]
    labels = list(labels)[::-1]
    shown = table.iloc[::-1]
    height = 0.3 * len(shown) + 1.3
    fig = Figure(figsize=(8, height))
    ax = fig.subplots()
    y = np.arange(len(shown))
    values = shown[["ratio", "ratio_ci_low", "ratio_ci_high"]].astype(float).to_numpy()
    finite = values[np.isfinite(values) & (values > 0)]
    low_edge, high_edge = min(finite.min(initial=1.0), 1.0) / 2, max(finite.max(initial=1.0), 1.0) * 2
    values = np.clip(np.nan_to_num(values, posinf=high_edge, neginf=low_edge), low_edge, high_edge)
    ratio, low, high = values.T
    colours = shown["verdict"].map(_COLOURS).fillna(_UNDECIDED)
    ax.hlines(y, low, high, color=colours)
    ax.scatter(ratio, y, color=colours, zorder=3, s=18)
    ax.axvline(1.0, color="#999999", lw=0.8, ls="--")
    if high_edge / low_edge > 20:  # several decades (a failure at ∞): a log axis
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(low_edge, high_edge)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel(
        f"technique ÷ baseline, final metric, paired by seed (< 1 better; {interval} interval)\n"
        "green: better, red: worse, grey: no decision either way",
        fontsize=8,
    )
    if title:
        ax.set_title(title, fontsize=9)
    fig.subplots_adjust(
        left=min(0.5, 0.02 + 0.0075 * max(map(len, labels), default=10)),
        right=0.97,
        bottom=0.75 / height,
        top=1 - 0.35 / height,
    )
    return fig


def _seed_matrix(rows: pd.DataFrame, history: pd.DataFrame, mode: str) -> pd.DataFrame:
    """epoch × run of the ``metric`` history; a failed run counts as the worst value from its failure on."""
    curves = history[(history["key"] == "metric") & history["run_id"].isin(rows["run_id"])]
    matrix = curves.pivot_table(index="epoch", columns="run_id", values="value", aggfunc="last")
    for run_id in rows.loc[rows["status"].isin(("diverged", "errored")), "run_id"]:
        if run_id not in matrix:
            matrix[run_id] = np.nan
        last = matrix[run_id].last_valid_index()
        # from the epoch after its last logged value (its last real one: a diverged epoch's stand-in is not logged)
        matrix.loc[matrix.index > (last if last is not None else 0), run_id] = objective.worst(mode)
    return matrix.sort_index().ffill()


def _grid(n: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure with ``n`` panels, at most 3 a row; the unused panels hidden."""
    columns = min(3, n)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(width * columns, height * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def _log_if_positive(ax: Any, values: pd.Series) -> None:
    """A log y axis when every finite value is positive (losses, errors)."""
    finite = values[np.isfinite(values)]
    if len(finite) and (finite > 0).all():
        ax.set_yscale("log")


def learning_curves(table: pd.DataFrame, final: pd.DataFrame, history: pd.DataFrame) -> Figure:
    """Per verdict row, the final runs' metric over epochs: median and inter-quartile band over seeds, the
    technique against its baseline (a failed seed is the worst value from its failure on)."""
    fig, axes = _grid(len(table), 4.3, 3.1)
    mode = table["mode"].iloc[0]
    several = table["experiment"].nunique() > 1
    values = history.loc[history["key"] == "metric", "value"]
    for ax, row in zip(axes.flat, table.to_dict("records"), strict=False):
        ours = final[final["experiment"] == row["experiment"]]
        for family, setting, colour in (
            (row["baseline"], row["baseline_setting"], "#7f7f7f"),
            (row["family"], row["setting"], "#1f5fbf"),
        ):
            matrix = _seed_matrix(ours[(ours["family"] == family) & (ours["setting"] == setting)], history, mode)
            if matrix.empty:
                continue
            with np.errstate(invalid="ignore"):  # a failed seed is ∞ from its failure on: the band may reach it
                median = matrix.median(axis=1)
                q1, q3 = matrix.quantile(0.25, axis=1), matrix.quantile(0.75, axis=1)
            ax.plot(median.index, median, color=colour, label=f"{family} (median, {matrix.shape[1]} seeds)")
            ax.fill_between(median.index, q1, q3, color=colour, alpha=0.2)
        ax.set_title(f"{verdict_label(row, several)}\n{row['verdict']}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(row["metric"])
        _log_if_positive(ax, values)
        ax.legend(fontsize=7)
    fig.suptitle("Final runs: median and inter-quartile band over seeds", fontsize=9)
    return fig


def budget_curves(curves: pd.DataFrame, mode: str) -> Figure:
    """A comparison's expected best tuning result among k trials per family, with its bootstrap band."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    several = curves["experiment"].nunique() > 1
    for (experiment, family), curve in curves.groupby(["experiment", "family"]):
        shown = curve.replace([np.inf, -np.inf], np.nan)
        name = f"{family} [{experiment}]" if several else family
        line = ax.plot(shown["k"], shown["expected"], label=f"{name} ({int(curve['n_trials'].iloc[0])} trials)")
        ax.fill_between(shown["k"], shown["ci_low"], shown["ci_high"], color=line[0].get_color(), alpha=0.15)
    ax.set_xlabel("k (tuning trials)")
    ax.set_ylabel("expected best of k (95% bootstrap band)")
    ax.set_xscale("log")
    if mode == "min":
        _log_if_positive(ax, curves["expected"].replace(np.inf, np.nan).dropna())
    ax.legend(fontsize=8)
    ax.set_title("How much tuning each family needs", fontsize=9)
    return fig


def best_trial_curves(history: pd.DataFrame, best_runs: Mapping[str, str], metric: str) -> Figure:
    """The learning curve of each family's best trial (``best_runs``: family → run id)."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for family, run_id in best_runs.items():
        curve = history[(history["run_id"] == run_id) & (history["key"] == "metric")]
        ax.plot(curve["epoch"], curve["value"], label=f"{family} (best)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    _log_if_positive(ax, history.loc[history["key"] == "metric", "value"])
    ax.legend(fontsize=8)
    ax.set_title("Learning curve of each family's best trial")
    return fig


def importance_plot(overall: pd.DataFrame) -> Figure:
    """Importance over all trials per parameter, with its bootstrap interval as error bars."""
    fig = Figure(figsize=(6, 0.35 * len(overall) + 1))
    ax = fig.subplots()
    ordered = overall.sort_values("importance")
    errors = np.vstack([ordered["importance"] - ordered["ci_low"], ordered["ci_high"] - ordered["importance"]])
    ax.barh(ordered["param"].astype(str), ordered["importance"], xerr=np.nan_to_num(errors.clip(0)), color="#4c72b0")
    ax.set_xlabel("importance (over all trials)")
    return fig


def sensitivity_plots(curves: Mapping[str, pd.DataFrame]) -> Figure:
    """One panel per hyperparameter (``curves``: name → :func:`~autoaccel.analysis.sensitivity_curve`'s table)."""
    fig, axes = _grid(len(curves), 4.2, 3.0)
    for ax, (param, curve) in zip(axes.flat, curves.items(), strict=False):
        ax.plot(curve["center"], curve["best_rel"], "o-", label="best")
        ax.plot(curve["center"], curve["median_rel"], "s--", label="median")
        if curve.attrs.get("log"):
            ax.set_xscale("log")
        ax.set_title(param.removeprefix("optimizer."), fontsize=9)
    axes.flat[0].legend(fontsize=7)
    return fig


def heatmap_plot(grid: Mapping[str, Any], x: str, y: str, mode: str, metric: str) -> Figure:
    """The best ``metric`` per cell of two hyperparameters (:func:`~autoaccel.analysis.sensitivity_heatmap`)."""
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    cmap = "viridis_r" if mode == "min" else "viridis"
    image = ax.pcolormesh(grid["x_edges"], grid["y_edges"], grid["best"], shading="flat", cmap=cmap)
    if grid["log_x"]:
        ax.set_xscale("log")
    if grid["log_y"]:
        ax.set_yscale("log")
    ax.set_xlabel(x.removeprefix("optimizer."))
    ax.set_ylabel(y.removeprefix("optimizer."))
    fig.colorbar(image, ax=ax, label=f"best {metric}")
    return fig


def expected_best_plot(curves: Mapping[str, pd.DataFrame], metric: str) -> Figure:
    """Expected best ``metric`` among k configurations per family (``curves``: family → expected best of k)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for family, curve in curves.items():
        ax.plot(curve.index, curve["expected"], label=family)
    ax.set_xlabel("k (configurations tried)")
    ax.set_ylabel(f"expected best {metric}")
    ax.set_xscale("log")
    ax.legend(fontsize=8)
    return fig


def profile_plot(profile: Mapping[str, Any]) -> Figure:
    """Performance profiles ρ(τ) per family (:func:`~autoaccel.analysis.performance_profile`)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, rho in profile["rho"].items():
        ax.step(profile["tau"], rho, where="post", label=name)
    ax.set_xlabel("τ (time to target / fastest)")
    ax.set_ylabel("ρ(τ): fraction of settings")
    ax.legend(fontsize=8)
    return fig
