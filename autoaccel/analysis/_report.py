"""``autoaccel report``: one sweep (or several) → a self-contained HTML report, a Markdown summary, Parquet tables.

A comparison's report leads with the answer: the verdict of each technique against its baseline (one sentence and
one row each, a forest plot of the ratios, learning curves over seeds, tuning-budget curves), written also as
``verdict.parquet`` and ``tuning.parquet``. The details follow: overview (budget, statuses, best configurations),
each technique against its base optimizer (a plain sweep's best trials), hyperparameter importance (PED-ANOVA,
bootstrap intervals) and sensitivity curves and heat maps (a comparison's tuning trials), seed and batch-size
robustness (its final runs), tuning-budget curves (expected best of k), performance profiles and top-k finishes
(when there are several workloads or settings), failure accounting, and the commands that reproduce it.

Every section works on whatever the experiment holds — a running or cut-short sweep, a single trial — and says what
it cannot show and why instead of failing. Plots are PNGs embedded as data URIs: the HTML needs no network and no
script.
"""

from __future__ import annotations

import base64
import html
import io
import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoaccel import objective
from autoaccel.redaction import redact_uri
from autoaccel.tracking import find_sweep_parent

from ._compare import final_runs, sentence, tuning_curves, verdict_table
from ._export import export_experiments, read_parquet, write_parquet
from ._robustness import (
    algoperf_times,
    batch_size_robustness,
    benchmark_score,
    expected_best_of_k,
    failure_accounting,
    performance_profile,
    seed_robustness,
    top_k_finishes,
)
from ._sensitivity import (
    importance_by_group,
    perturbation_loss,
    sensitivity_curve,
    sensitivity_heatmap,
)

__all__ = ["SECTIONS", "adascale_by_scale", "build_report"]

# (x, y) pairs the papers study, shown as heat maps when both were sampled
HEATMAP_PAIRS = (
    ("optimizer.lr", "optimizer.demon.beta_init"),
    ("optimizer.lookahead.k", "optimizer.lookahead.alpha"),
    ("optimizer.anderson.history", "optimizer.anderson.rsd_threshold"),
    ("optimizer.lr", "optimizer.momentum"),
)
_FINISHED = ("completed",)
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


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs (plain text, escaped on output)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what could not be shown, and why


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _figure().close(fig)
    return buffer.getvalue()


def _hyperparameters(df: pd.DataFrame) -> list[str]:
    """Sampled optimizer hyperparameters: numeric ``optimizer.*`` columns that vary."""
    columns = []
    for column in df.columns:
        if column.startswith("optimizer.") and column != "optimizer.base":
            values = pd.to_numeric(df[column], errors="coerce").dropna()
            if values.nunique() > 1:
                columns.append(column)
    return columns


def _config_text(row: pd.Series) -> str:
    parts = [
        f"{c.removeprefix('optimizer.')}={_short(row[c])}"
        for c in row.index
        if c.startswith("optimizer.") and not _missing(row[c])
    ]
    if "budget.batch_size" in row.index and not _missing(row["budget.batch_size"]):
        parts.append(f"batch={row['budget.batch_size']}")
    return ", ".join(parts)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _best_first(df: pd.DataFrame, mode: str) -> pd.DataFrame:
    return (
        df.assign(_loss=objective.loss(df["final_metric"].astype(float), mode))
        .sort_values("_loss", na_position="last")
        .drop(columns="_loss")
    )


# -- sections -------------------------------------------------------------------------------------------------------
_VERDICT_COLUMNS = {
    "experiment": "comparison",
    "family": "technique",
    "baseline": "baseline",
    "setting": "setting",
    "verdict": "verdict",
    "n_seeds": "seeds",
    "ratio": "ratio",
    "ratio_ci_low": "ratio low",
    "ratio_ci_high": "ratio high",
    "win_rate": "win rate",
    "speedup": "speed-up",
    "speedup_ci_low": "speed-up low",
    "speedup_ci_high": "speed-up high",
    "failure_rate": "failure rate",
    "tuning_diverged_rate": "tuning diverged",
}
_COLOURS = {"better": "#2a9d4b", "worse": "#c0392b", "no clear difference": "#7f7f7f"}


def is_comparison(runs: pd.DataFrame) -> bool:
    """Trials of a comparison (tuning or final), not of a plain sweep."""
    return "phase" in runs and bool(runs["phase"].notna().any())


def _verdict(runs: pd.DataFrame, history: pd.DataFrame, out: Path) -> Section:
    section = Section("Verdict")
    if not is_comparison(runs):
        section.missing.append(
            "not a comparison: a spec with a `compare` section tunes every family with the same budget and re-runs "
            "each family's best configuration on paired seeds beside its baseline's, which a verdict rests on "
            "(docs/compare.md)"
        )
        return section
    if not (runs["phase"] == "final").any():
        section.missing.append("the comparison's final runs have not run yet: continue it with --resume")
        return section
    table, curves = verdict_table(runs), tuning_curves(runs)
    table.to_parquet(out / "verdict.parquet", index=False)
    curves.to_parquet(out / "tuning.parquet", index=False)
    if table.empty:
        section.missing.append("no technique has a baseline among the families: name them in compare.baselines")
        return section
    counts = table["verdict"].value_counts()
    summary = ", ".join(f"{counts[v]} {v}" for v in ("better", "worse", "no clear difference") if v in counts)
    section.text.append(
        f"{len(table)} technique-against-baseline comparison(s): {summary}. Ratios < 1 mean the technique's final "
        f"{table['metric'].iloc[0]} is better; intervals are 95% bootstrap intervals over paired seeds; the rule "
        "and the method are in docs/compare.md."
    )
    several = table["experiment"].nunique() > 1
    section.text.extend(sentence(row, several) for _, row in table.iterrows())
    shown = table[list(_VERDICT_COLUMNS)].rename(columns=_VERDICT_COLUMNS)
    section.tables.append(("Verdict per technique and setting (verdict.parquet has every column)", shown))
    section.images.append(("forest plot of the ratios", _forest(table)))
    section.images.append(("learning curves against the baseline", _curves_against(table, final_runs(runs), history)))
    section.images.append(("tuning budget", _budget_plot(curves, runs["mode"].dropna().iloc[0])))
    return section


def _forest(table: pd.DataFrame) -> bytes:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.2))
    finite = table[["ratio", "ratio_ci_low", "ratio_ci_high"]].replace([np.inf, -np.inf], np.nan).stack()
    finite = finite[finite > 0]
    low, high = (finite.min() / 1.5, finite.max() * 1.5) if len(finite) else (0.5, 2.0)
    for y, (_, row) in enumerate(table.iloc[::-1].iterrows()):
        middle, left, right = (float(np.clip(row[k], low, high)) for k in ("ratio", "ratio_ci_low", "ratio_ci_high"))
        colour = _COLOURS[row["verdict"]]
        ax.plot([left, right], [y, y], color=colour, lw=2)
        ax.plot(middle, y, "o", color=colour)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(table)))
    ax.set_yticklabels([_where(r, table) for r in table.iloc[::-1].itertuples()], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.set_xlabel("final metric ÷ baseline's, paired by seed (< 1: better); clipped at the plot's edges")
    return _png(fig)


def _where(row: Any, table: pd.DataFrame) -> str:
    """A verdict row's name: technique, baseline and setting, and its comparison when several are reported."""
    several = table["experiment"].nunique() > 1
    return f"{row.family} vs {row.baseline} ({row.setting})" + (f" [{row.experiment}]" if several else "")


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


def _curves_against(table: pd.DataFrame, final: pd.DataFrame, history: pd.DataFrame) -> bytes:
    plt = _figure()
    n = len(table)
    columns = min(3, n)
    rows_n = math.ceil(n / columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(4.3 * columns, 3.1 * rows_n), squeeze=False)
    mode = table["mode"].iloc[0]
    for ax, row in zip(axes.flat, table.itertuples(), strict=False):
        ours = final[final["experiment"] == row.experiment]
        for family, setting, colour in (
            (row.baseline, row.baseline_setting, "#7f7f7f"),
            (row.family, row.setting, "#1f5fbf"),
        ):
            matrix = _seed_matrix(ours[(ours["family"] == family) & (ours["setting"] == setting)], history, mode)
            if matrix.empty:
                continue
            with np.errstate(invalid="ignore"):  # a failed seed is ∞ from its failure on: the band may reach it
                median = matrix.median(axis=1)
                q1, q3 = matrix.quantile(0.25, axis=1), matrix.quantile(0.75, axis=1)
            ax.plot(median.index, median, color=colour, label=f"{family} (median, {matrix.shape[1]} seeds)")
            ax.fill_between(median.index, q1, q3, color=colour, alpha=0.2)
        ax.set_title(f"{_where(row, table)}\n{row.verdict}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(row.metric)
        values = history.loc[history["key"] == "metric", "value"]
        if (values[np.isfinite(values)] > 0).all():
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Final runs: median and inter-quartile band over seeds", fontsize=9)
    return _png(fig)


def _budget_plot(curves: pd.DataFrame, mode: str) -> bytes:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    several = curves["experiment"].nunique() > 1
    for (experiment, family), curve in curves.groupby(["experiment", "family"]):
        shown = curve.replace([np.inf, -np.inf], np.nan)
        name = f"{family} [{experiment}]" if several else family
        line = ax.plot(shown["k"], shown["expected"], label=f"{name} ({int(curve['n_trials'].iloc[0])} trials)")
        ax.fill_between(shown["k"], shown["ci_low"], shown["ci_high"], color=line[0].get_color(), alpha=0.15)
    ax.set_xlabel("k (tuning trials)")
    ax.set_ylabel("expected best of k (95% bootstrap band)")
    ax.set_xscale("log")
    if mode == "min" and (curves["expected"].replace(np.inf, np.nan).dropna() > 0).all():
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("How much tuning each family needs", fontsize=9)
    return _png(fig)


def _overview(runs: pd.DataFrame, experiments: Sequence[str], metric: str, mode: str, target: float | None) -> Section:

    section = Section("Overview")
    workloads = ", ".join(sorted(runs["workload"].dropna().unique()))
    epochs = runs["budget.epochs"].dropna().unique() if "budget.epochs" in runs else []
    section.text.append(
        f"Experiment(s) {', '.join(experiments)}: {len(runs)} trials of {workloads}; ranked by {metric} ({mode})"
        + (f", target {target:g}" if target is not None and not math.isnan(target) else "")
        + (f"; budget {', '.join(str(int(e)) for e in epochs)} epochs" if len(epochs) else "")
        + "."
    )
    section.tables.append(("Trials by status", failure_accounting(runs, by=None)))
    done = runs[runs["status"].isin(_FINISHED)]
    if is_comparison(runs):  # the final runs re-run these configurations: the best are among the tuning trials
        done = done[done["phase"] == "tuning"]
    if done.empty:
        section.missing.append("no completed trial yet: best configurations appear once one finishes its budget")
        return section
    best = _best_first(done, mode).head(5)
    table = pd.DataFrame(
        {
            "family": best["family"],
            metric: best["final_metric"],
            "best epoch value": best["best_metric"],
            "time to target (s)": best.get("time_to_target_s"),
            "configuration": [_config_text(r) for _, r in best.iterrows()],
            "run": best["run_id"].str[:8],
        }
    )
    section.tables.append(("Best completed configurations", table.reset_index(drop=True)))
    scales = adascale_by_scale(runs)
    if scales is not None:
        section.tables.append((f"AdaScale by scale S (S = workers × accumulation unless set; {metric})", scales))
    return section


def adascale_by_scale(runs: pd.DataFrame) -> pd.DataFrame | None:
    """AdaScale's runs grouped by workload and scale S: the ``adascale.scale`` they set, else data-parallel workers
    (``world_size``; 1 where not recorded) × accumulated micro-batches (1 where left at its default). Per group: how
    many runs, how many completed (a failed run counts, with no value), the median final metric and gain of the
    completed ones. None without AdaScale runs."""
    if "technique" not in runs:
        return None
    own = runs[runs["technique"].astype(str).str.contains("adascale")].copy()
    if own.empty:
        return None
    column = "optimizer.adascale.num_gradients_to_accumulate"
    accumulation = own[column].astype(float).fillna(1.0) if column in own else pd.Series(1.0, index=own.index)
    workers = own["world_size"].astype(float).fillna(1.0) if "world_size" in own else pd.Series(1.0, index=own.index)
    scale = workers * accumulation
    if "optimizer.adascale.scale" in own:
        scale = own["optimizer.adascale.scale"].astype(float).fillna(scale)
    own["S"], own["workers"] = scale, workers
    rows = []
    for (workload, s, n), group in own.groupby(["workload", "S", "workers"], dropna=False):
        done = group[group["status"].isin(_FINISHED)]
        rows.append(
            {
                "workload": workload,
                "S": s,
                "workers": int(n),
                "runs": len(group),
                "completed": len(done),
                "median final metric": float(done["final_metric"].median()) if len(done) else np.nan,
                "median final gain": float(done["final_adascale_gain"].median())
                if len(done) and "final_adascale_gain" in done
                else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _techniques(runs: pd.DataFrame, history: pd.DataFrame, mode: str, metric: str) -> Section:
    section = Section("Each technique against its base optimizer")
    if is_comparison(runs):
        section.missing.append("a comparison: the verdict above compares each technique with its baseline")
        return section
    section.text.append(
        "The best trial of each family against its base's best, from one sweep: families got the trials the sampler "
        "gave them and the scheduler let finish, so this is no budget-matched comparison (a `compare` section is)."
    )
    done = runs[runs["status"].isin(_FINISHED)]
    if done.empty:
        section.missing.append("no completed trials to compare")
        return section
    rows = []
    best_by_family = {}
    for fam, group in done.groupby("family"):
        values = group["final_metric"].astype(float)
        best = objective.best(values, mode)
        best_by_family[fam] = best
        rows.append(
            {
                "family": fam,
                "base": group["optimizer.base"].iloc[0] if "optimizer.base" in group else None,
                "completed": len(group),
                "best": best,
                "median": float(values.median()),
                "median time to target (s)": group["time_to_target_s"].median()
                if "time_to_target_s" in group
                else np.nan,
                "reached target": f"{group['time_to_target_s'].notna().mean():.0%}"
                if "time_to_target_s" in group
                else "n/a",
            }
        )
    table = pd.DataFrame(rows)
    ratios = []
    for row in rows:
        reference = best_by_family.get(row["base"])
        ratios.append(
            row["best"] / reference if reference not in (None, 0) and row["family"] != row["base"] else np.nan
        )
    table["best vs base"] = ratios
    table = (
        _best_first(table.rename(columns={"best": "final_metric"}), mode)
        .rename(columns={"final_metric": "best"})
        .reset_index(drop=True)
    )
    section.tables.append((f"Per family ({metric}; 'best vs base' < 1 is better for min)", table))
    if all(np.isnan(ratios)):
        section.missing.append("no family has its base optimizer's own family in this sweep: add it to compare")
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4))
    for fam, group in done.groupby("family"):
        best_run = _best_first(group, mode).iloc[0]
        curve = history[(history["run_id"] == best_run["run_id"]) & (history["key"] == "metric")]
        ax.plot(curve["epoch"], curve["value"], label=f"{fam} (best)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if (history.loc[history["key"] == "metric", "value"] > 0).all():
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Learning curve of each family's best trial")
    section.images.append(("learning curves", _png(fig)))
    return section


def _importance(runs: pd.DataFrame, mode: str) -> Section:

    section = Section("Hyperparameter importance")
    done = runs[runs["status"].isin(_FINISHED)]
    params = _hyperparameters(done)
    if len(done) < 4 or not params:
        section.missing.append(f"importance needs ≥ 4 completed trials with varied hyperparameters (have {len(done)})")
        return section
    table = importance_by_group(done, "family", metric="final_metric", mode=mode, n_bootstrap=10)
    section.text.append(
        "PED-ANOVA (Optuna's default evaluator; handles conditional parameters) on completed trials,"
        " with 10 bootstrap resamples for the interval; per family and over all ('(all)')."
    )
    section.tables.append(("Importance (normalised per group)", table.reset_index(drop=True)))
    overall = table[(table["group"] == "(all)") & table["importance"].notna()]
    if not overall.empty:
        plt = _figure()
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(overall) + 1))
        ordered = overall.sort_values("importance")
        errors = np.vstack([ordered["importance"] - ordered["ci_low"], ordered["ci_high"] - ordered["importance"]])
        ax.barh(
            ordered["param"].astype(str), ordered["importance"], xerr=np.nan_to_num(errors.clip(0)), color="#4c72b0"
        )
        ax.set_xlabel("importance (over all trials)")
        section.images.append(("importance", _png(fig)))
    return section


def _sensitivity(runs: pd.DataFrame, mode: str, metric: str) -> Section:

    section = Section("Sensitivity")
    done = runs[runs["status"].isin(_FINISHED)]
    params = [p for p in _hyperparameters(done) if pd.to_numeric(done[p], errors="coerce").notna().sum() >= 5]
    if not params:
        section.missing.append("sensitivity curves need ≥ 5 completed trials per hyperparameter")
        return section
    section.text.append(
        f"Best and median {metric} per bin relative to the overall best (1 = as good as the best;"
        f" {'higher' if mode == 'min' else 'lower'} is worse), after DeepOBS."
    )
    plt = _figure()
    columns = min(3, len(params))
    rows = math.ceil(len(params) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3 * rows), squeeze=False)
    for ax, param in zip(axes.flat, params, strict=False):
        curve = sensitivity_curve(done, param, mode=mode)
        ax.plot(curve["center"], curve["best_rel"], "o-", label="best")
        ax.plot(curve["center"], curve["median_rel"], "s--", label="median")
        if curve.attrs.get("log"):
            ax.set_xscale("log")
        ax.set_title(param.removeprefix("optimizer."), fontsize=9)
    for ax in list(axes.flat)[len(params) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    section.images.append(("sensitivity curves", _png(fig)))
    for x, y in HEATMAP_PAIRS:
        if x in params and y in params:
            grid = sensitivity_heatmap(done, x, y, mode=mode)
            fig, ax = plt.subplots(figsize=(5, 4))
            image = ax.pcolormesh(
                grid["x_edges"],
                grid["y_edges"],
                grid["best"],
                shading="flat",
                cmap="viridis_r" if mode == "min" else "viridis",
            )
            if grid["log_x"]:
                ax.set_xscale("log")
            if grid["log_y"]:
                ax.set_yscale("log")
            ax.set_xlabel(x.removeprefix("optimizer."))
            ax.set_ylabel(y.removeprefix("optimizer."))
            fig.colorbar(image, ax=ax, label=f"best {metric}")
            section.images.append((f"{x} × {y}", _png(fig)))
    return section


def _seeds(runs: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """One row per (configuration, seed), a failed seed with a null metric (counted, never a stand-in value): a
    study's trials already are one per seed; lockstep seeds are spread out of their per-seed columns. The
    configuration (its optimizer hyperparameters) is what the spread is measured over."""
    runs = runs.assign(
        configuration=[_config_text(r.drop(labels=["budget.batch_size"], errors="ignore")) for _, r in runs.iterrows()]
    )
    failed = runs["status"].isin(("diverged", "errored"))
    per_seed = [c for c in runs.columns if c.startswith(f"final_{metric}_seed")]
    if per_seed:
        for column in per_seed:  # a lockstep seed that diverged logged a stand-in: say it failed instead
            flag = runs.get(f"final_diverged_seed{column.rsplit('seed', 1)[-1]}")
            runs[column] = runs[column].mask(flag == 1 if flag is not None else failed)
        long = runs.melt(
            id_vars=["run_id", "family", "configuration"], value_vars=per_seed, var_name="seed", value_name="value"
        )
        long["seed"] = long["seed"].str.rsplit("seed", n=1).str[-1]
        return long.rename(columns={"value": "final_metric"})
    if runs.groupby("configuration")["seed"].nunique().max() > 1:
        runs = runs.assign(final_metric=runs["final_metric"].mask(failed))
        return runs[["run_id", "family", "configuration", "seed", "final_metric"]]
    return None


def _robustness(runs: pd.DataFrame, mode: str, metric: str) -> Section:

    section = Section("Robustness over seeds and batch sizes")
    results = runs[runs["status"].isin(("completed", "diverged", "errored"))]  # stopped or interrupted: no result
    done = results[results["status"].isin(_FINISHED)]
    seeds = _seeds(results, metric) if not results.empty else None
    if seeds is None:
        section.missing.append(
            "one seed per configuration: run with `seeds: [0, 1, ...]` or a robustness study "
            "(`study:` in a spec) to see the spread over seeds"
        )
    else:
        section.tables.append(
            (
                "Final metric over seeds, per configuration (mean, std, 95% t-interval from ≥ 3 finite values; "
                "n_nonfinite counts the failed seeds)",
                seed_robustness(seeds, "final_metric", by=("family", "configuration")),
            )
        )
    if "budget.batch_size" in done and done["budget.batch_size"].nunique() > 1:
        failed = results["status"] != "completed"  # a failed run is counted, with no value
        values = results.assign(final_metric=results["final_metric"].mask(failed))
        table = batch_size_robustness(values, "final_metric", batch_col="budget.batch_size", by="family")
        section.tables.append(("Quality and steps to target against batch size", table))
    else:
        section.missing.append(
            "a single batch size: sample `budget.batch_size` or list `study.batch_sizes` to see "
            "how each technique holds up as batches shrink (Anderson's moving-average regime)"
        )
    return section


def _perturbation(runs: pd.DataFrame, mode: str, metric: str) -> Section:

    section = Section("Perturbation: how far each setting can move")
    if "study.perturbation" not in runs or runs["study.perturbation"].nunique() < 2:
        section.missing.append(
            "no perturbation study: a spec with `study: {from: SWEEP, perturb: 2.0}` re-runs the "
            "best configurations with each hyperparameter × and ÷ 2"
        )
        return section
    section.text.append(
        f"Relative loss of final {metric} when one hyperparameter of a best configuration is "
        "multiplied (up) or divided (down) by the study's factor, mean over seeds; a diverged run "
        "counts as an infinite loss. Most fragile first."
    )
    values = runs.assign(value=runs["final_metric"].where(runs["status"] == "completed"))
    for source, group in values.groupby("study.source_run"):
        # a diverged seed makes its variant's mean NaN (an infinite loss), never silently better
        means = group.groupby("study.perturbation")["value"].agg(lambda v: v.mean(skipna=False))
        if "base" not in means or not np.isfinite(means["base"]):
            section.missing.append(f"{source[:8]}: its base configuration did not complete")
            continue
        perturbed = {tuple(label.rsplit(":", 1)): value for label, value in means.items() if label != "base"}
        table = perturbation_loss(means["base"], perturbed, mode=mode)
        family = group["family"].iloc[0]
        section.tables.append((f"{family} (source run {source[:8]}, base {metric} {means['base']:.3g})", table))
    return section


def _budget(runs: pd.DataFrame, mode: str, metric: str) -> Section:

    section = Section("Tuning budget")
    if is_comparison(runs):
        curves = tuning_curves(runs)
        ends = curves.groupby(["experiment", "family"]).agg(
            trials=("n_trials", "first"), best_of_1=("expected", "first"), best_of_all=("expected", "last")
        )
        section.text.append(
            "Expected best final metric among k of a family's tuning trials (the verdict's budget curves): with one "
            "trial a user can expect best_of_1, with all of them best_of_all; a trial ASHA stopped counts with its "
            "value where it stopped, a diverged one as the worst."
        )
        section.tables.append(("Tuning budget per family (tuning.parquet has every k)", ends.reset_index()))
        return section
    finished = runs[runs["status"].isin(("completed", "diverged"))]
    if finished.empty or finished["family"].value_counts().max() < 2:
        section.missing.append("needs ≥ 2 completed (or diverged) trials of a family")
        return section
    section.text.append(
        "Expected best final metric among k configurations drawn from a family's trials (exact order"
        " statistics; Dodge et al. 2019); diverged trials count as failures. With TPE the trials are"
        " not independent draws: read it as a budget curve of this sweep, not of random search."
    )
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    for fam, group in finished.groupby("family"):
        values = group["final_metric"].where(group["status"] == "completed").to_numpy(dtype=float)
        if len(values) < 2:
            continue
        curve = expected_best_of_k(values, mode=mode)
        ax.plot(curve.index, curve["expected"], label=fam)
    ax.set_xlabel("k (configurations tried)")
    ax.set_ylabel(f"expected best {metric}")
    ax.set_xscale("log")
    ax.legend(fontsize=8)
    section.images.append(("expected best of k", _png(fig)))
    return section


def _profiles(runs: pd.DataFrame, mode: str) -> Section:

    section = Section("Performance profiles and top-k finishes")
    settings = runs.assign(
        setting=runs["workload"].astype(str)
        + (" / batch " + runs["budget.batch_size"].astype(str) if "budget.batch_size" in runs else "")
    )
    # a setting only one family ran (a family at a batch of its own) ranks nothing: it would be a free win
    ranked = settings.groupby("setting")["family"].transform("nunique") > 1
    settings = settings[ranked]
    if settings["setting"].nunique() < 2:
        section.missing.append(
            "fewer than two settings that several families ran: profiles and top-k need several (export "
            "several sweeps together: `autoaccel report --experiment A --experiment B`)"
        )
        return section
    # a comparison's final runs: one study per seed, so each setting's time is the median over seeds (a failed or
    # never-reaching seed is ∞ there), and each family's score the median final metric, a failed seed the worst
    final = "phase" in settings and bool((settings["phase"] == "final").all())
    failed = settings["status"].isin(("diverged", "errored"))
    settings = settings.assign(time_to_target_s=settings["time_to_target_s"].mask(failed))
    times = algoperf_times(settings, "setting", "family", study_col="seed" if final else None)
    profile = performance_profile(times)
    score = benchmark_score(times)
    section.tables.append(
        (
            "AlgoPerf score (area under ρ(τ), τ ∈ [1, 4]; 1 = fastest everywhere)",
            pd.DataFrame({"family": list(score), "score": list(score.values())})
            .sort_values("score", ascending=False)
            .reset_index(drop=True),
        )
    )
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rho in profile["rho"].items():
        ax.step(profile["tau"], rho, where="post", label=name)
    ax.set_xlabel("τ (time to target / fastest)")
    ax.set_ylabel("ρ(τ): fraction of settings")
    ax.legend(fontsize=8)
    section.images.append(("performance profiles", _png(fig)))
    if final:
        values = settings[settings["status"].isin(("completed", "diverged", "errored"))]
        values = values.assign(final_metric=values["final_metric"].mask(failed, objective.worst(mode)))
        scores = values.groupby(["setting", "family"])["final_metric"].median().unstack()
        caption = "Top-1 / top-3 finishes over settings (%), median final metric over seeds, a failure the worst"
    else:
        done = settings[settings["status"].isin(_FINISHED)]
        scores = done.groupby(["setting", "family"])["final_metric"].agg(lambda v: objective.best(v, mode)).unstack()
        caption = "Top-1 / top-3 finishes over settings (%), best completed trial"
    section.tables.append((caption, top_k_finishes(scores.replace([np.inf, -np.inf], np.nan), (1, 3), mode)))
    return section


def _failures(runs: pd.DataFrame) -> Section:

    section = Section("Failure accounting")
    section.text.append(
        "Every trial is counted: diverged (non-finite loss), errored (an exception after retries),"
        " stopped early (by ASHA, at the epochs it reached) and interrupted ones are never dropped."
    )
    by = ["phase", "family"] if is_comparison(runs) else "family"
    section.tables.append(("Statuses per family", failure_accounting(runs, by=by)))
    crashed = runs[runs["crashes"].fillna(0) > 0] if "crashes" in runs else runs.iloc[:0]
    if len(crashed):
        section.text.append(
            f"{len(crashed)} trial(s) crashed {int(crashed['crashes'].sum())} time(s) in all and were retried from"
            " their last checkpoint (a retry repeats the lost epochs exactly):"
            f" {', '.join(crashed['trial_id'].astype(str))}."
        )
    return section


def _reproduce(experiments: Sequence[str], uri: str | None, out: Path, spec: str | None) -> Section:
    section = Section("Reproduce")
    commands = []
    if spec:
        commands.append(f"autoaccel sweep {shlex.quote(spec)}")
    args = " ".join(f"--experiment {shlex.quote(e)}" for e in experiments)
    if uri is None:  # reported from Parquet: the same tables, offline
        commands.append(f"autoaccel report --parquet {shlex.quote(str(out))} --out {shlex.quote(str(out))}")
        section.text.extend(commands)
        return section
    shown = shlex.quote(redact_uri(uri))  # a password in the URI stays out of the report
    commands.append(f"autoaccel report {args} --tracking-uri {shown} --out {shlex.quote(str(out))}")
    section.text.extend(commands)
    if shown != shlex.quote(uri):
        section.text.append(
            "The tracking URI's password is shown as ***: put the real one back, or give credentials as"
            " MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (HTTP) or in ~/.pgpass (PostgreSQL)."
        )
    return section


# -- rendering ------------------------------------------------------------------------------------------------------
_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}h2{border-bottom:2px solid #4c72b0;padding-bottom:.2em;margin-top:2em}
.missing{color:#8a5a00;background:#fff7e0;padding:.4em .7em;border-left:4px solid #e0a800}
img{max-width:100%;display:block;margin:.5em 0}code{background:#f3f3f3;padding:1px 4px}"""


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    return df if isinstance(df.index, pd.RangeIndex) else df.reset_index()


def _html_table(df: pd.DataFrame) -> str:
    return _flat(df).to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="—", border=0, escape=True)


def _render_html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        for paragraph in section.text:
            tag = "code" if paragraph.startswith("autoaccel ") else "span"
            body.append(f"<p><{tag}>{html.escape(paragraph)}</{tag}></p>")
        for caption, table in section.tables:
            body.append(f"<h3>{html.escape(caption)}</h3>{_html_table(table)}")
        for caption, png in section.images:
            data = base64.b64encode(png).decode()
            body.append(f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
        for note in section.missing:
            body.append(f'<p class="missing">Not shown: {html.escape(note)}</p>')
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def _render_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.text:
            lines += [f"`{paragraph}`" if paragraph.startswith("autoaccel ") else paragraph, ""]
        for caption, table in section.tables:
            lines += [
                f"**{caption}**",
                "",
                markdown_table(_flat(table)),
                "",
            ]
        lines += [f"_{len(section.images)} plot(s) in index.html_", ""] if section.images else []
        lines += [f"> Not shown: {note}" for note in section.missing] + ([""] if section.missing else [])
    return "\n".join(lines)


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` as a GitHub Markdown table (floats to 3 significant digits, a missing value as —)."""

    def cell(value: Any) -> str:
        if _missing(value):
            return "—"
        return f"{value:.3g}" if isinstance(value, float) else str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


# -- entry points ---------------------------------------------------------------------------------------------------
def build_report(
    experiments: Sequence[str],
    tracking_uri: str | None,
    out_dir: str | Path,
    *,
    log_artifacts: bool = True,
    parquet: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Export, analyse and render; return the paths written. Logs them to the sweep's parent run when asked.

    ``parquet``: folders of an earlier export (``runs.parquet``, ``history.parquet``) to report instead of the
    tracking store, offline (``tracking_uri`` None); ``experiments`` then picks among theirs (empty: all)."""

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
    # a comparison: tuning trials say how each knob matters, final runs how robust the chosen configurations are
    compared = is_comparison(runs)
    tuning = runs[runs["phase"] == "tuning"] if compared else runs
    final = runs[runs["phase"] == "final"] if compared else runs
    builders: list[Callable[[], Section]] = [  # in the order of SECTIONS
        lambda: _verdict(runs, history, out),
        lambda: _overview(runs, experiments, metric, mode, target),
        lambda: _techniques(runs, history, mode, metric),
        lambda: _importance(tuning, mode),
        lambda: _sensitivity(tuning, mode, metric),
        lambda: _robustness(final, mode, metric),
        lambda: _perturbation(runs, mode, metric),
        lambda: _budget(tuning, mode, metric),
        lambda: _profiles(final, mode),
        lambda: _failures(runs),
        lambda: _reproduce(experiments, tracking_uri, out, spec),
    ]
    sections = []
    for title, build in zip(SECTIONS, builders, strict=True):
        try:
            sections.append(build())
        except (ValueError, KeyError, TypeError) as error:  # one section's gap must not cost the others
            sections.append(Section(title, missing=[f"could not be computed: {error}"]))
    title = f"autoaccel report: {', '.join(experiments)}"
    (out / "index.html").write_text(_render_html(title, sections))
    (out / "report.md").write_text(_render_markdown(title, sections))
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
        "verdict": sections[0].text[1:],  # one sentence per technique (empty unless a comparison)
        **({"verdict_table": str(verdict)} if verdict.exists() else {}),
    }


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
    folder = parent.data.tags.get("folder")
    return parent.info.run_id, str(Path(folder) / "spec.yaml") if folder else None
