"""The report's sections: pure functions from the export's ``runs``/``history`` tables (and the statistics computed
from them) to a :class:`~autoaccel.analysis._render.Section`. No file is read or written here (``_report.py`` does
I/O); plots come from ``_plots.py``. Each section works on whatever the experiment holds — a running or cut-short
sweep, a single trial — and says what it cannot show and why instead of failing.

What a section knows of a technique it asks the registry (``autoaccel.optim``: a technique's scale, the parameter
pairs worth a heat map, its learning-rate gain), never its name.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from autoaccel import objective
from autoaccel.redaction import redact_uri

from . import _plots as plots
from ._compare import final_runs, interval_text, sentence
from ._render import Section, is_missing
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
    MIN_IMPORTANCE_TRIALS,
    importance_by_group,
    perturbation_loss,
    sensitivity_curve,
    sensitivity_heatmap,
)

__all__ = ["by_scale", "is_comparison"]

_FINISHED = ("completed",)
_VERDICT_COLUMNS = {
    "experiment": "comparison",
    "family": "technique",
    "baseline": "baseline",
    "setting": "setting",
    "verdict": "verdict",
    "n_seeds": "seeds",
    "tuning_replicates": "tuning replicates",
    "ratio": "ratio (< 1 better)",
    "ratio_ci_low": "ratio low",
    "ratio_ci_high": "ratio high",
    "difference": "difference",
    "p_adjusted": "p (Holm)",
    "detectable_ratio": "detectable ratio",
    "win_rate": "win rate",
    "speedup": "speed-up",
    "speedup_ci_low": "speed-up low",
    "speedup_ci_high": "speed-up high",
    "failure_rate": "failure rate",
    "tuning_diverged_rate": "tuning diverged",
}


def is_comparison(runs: pd.DataFrame) -> bool:
    """Trials of a comparison (tuning or final), not of a plain sweep."""
    return "phase" in runs and bool(runs["phase"].notna().any())


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
        if c.startswith("optimizer.") and not is_missing(row[c])
    ]
    if "budget.batch_size" in row.index and not is_missing(row["budget.batch_size"]):
        parts.append(f"batch={row['budget.batch_size']}")
    return ", ".join(parts)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _best_first(df: pd.DataFrame, mode: str) -> pd.DataFrame:
    return (
        df.assign(_loss=objective.loss(df["final_metric"].astype(float), mode))
        .sort_values("_loss", na_position="last")
        .drop(columns="_loss")
    )


# -- the answer -----------------------------------------------------------------------------------------------------
def verdict(runs: pd.DataFrame, history: pd.DataFrame, table: pd.DataFrame | None, curves: pd.DataFrame) -> Section:
    """A comparison's verdict: one sentence and one row per technique, the forest plot, learning and budget curves.
    ``table``/``curves``: :func:`verdict_table` and :func:`tuning_curves` of ``runs`` (None: no final runs yet)."""
    section = Section("Verdict")
    if not is_comparison(runs):
        section.missing.append(
            "not a comparison: a spec with a `compare` section tunes every family with the same budget and re-runs "
            "each family's best configuration on paired seeds beside its baseline's, which a verdict rests on "
            "(docs/compare.md)"
        )
        return section
    if table is None:
        section.missing.append("the comparison's final runs have not run yet: continue it with --resume")
        return section
    if table.empty:
        section.missing.append("no technique has a baseline among the families: name them in compare.baselines")
        return section
    counts = table["verdict"].value_counts()
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    higher = table["mode"].iloc[0] == "max"
    section.text.append(
        f"{len(table)} technique-against-baseline comparison(s): {summary}. The table's ratios are turned so that "
        f"< 1 means the technique's final {table['metric'].iloc[0]} is better "
        f"({'higher is better: baseline ÷ technique' if higher else 'lower is better: technique ÷ baseline'}; "
        "the sentences say technique ÷ baseline); `difference` is technique − baseline in the metric's units. Each "
        "interval is the row's own 95% one (the signed-rank test over seeds, or the t over tuning replicates); a "
        "verdict is `better` or `worse` when that test still rejects after Holm's correction over every row here, "
        f"`equivalent` when the ratio is shown within ±{100 * table['equivalence_margin'].iloc[0]:g}%, else "
        "`inconclusive`; `detectable ratio` is what the row would find with 80% power. The rule and the method "
        "are in docs/compare.md."
    )
    several = table["experiment"].nunique() > 1
    section.text.extend(sentence(row, several) for _, row in table.iterrows())
    for experiment, protocol in protocols(runs).items():  # in the summary paragraph: text[1:] are the sentences
        where = f" ({experiment})" if several else ""
        studies, trials = protocol["replicates"], protocol["trials_per_study"]
        section.text[0] += (
            f" Tuning protocol{where}: up to {studies} independent stud{'ies' if studies > 1 else 'y'} per family × "
            f"{trials} trial{'s' * (trials > 1)}, {protocol['sampler']} + {protocol['scheduler']['type']}."
            + "".join(f" Note: {note}." for note in protocol.get("notes", []))
        )
    shown = table[list(_VERDICT_COLUMNS)].copy()
    texts = [interval_text(*row) for row in shown[["ratio", "ratio_ci_low", "ratio_ci_high"]].to_numpy(dtype=float)]
    shown[["ratio", "ratio_ci_low", "ratio_ci_high"]] = pd.DataFrame(texts, index=shown.index)  # never a point
    shown = shown.rename(columns=_VERDICT_COLUMNS)
    section.tables.append(("Verdict per technique and setting (verdict.parquet has every column)", shown))
    section.images.append(("forest plot of the ratios", plots.png(plots.forest_plot(table))))
    curves_figure = plots.learning_curves(table, final_runs(runs), history)
    section.images.append(("learning curves against the baseline", plots.png(curves_figure)))
    section.images.append(("tuning budget", plots.png(plots.budget_curves(curves, runs["mode"].dropna().iloc[0]))))
    return section


def protocols(runs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """experiment → its comparison's tuning protocol as the sweep recorded it (none for older sweeps)."""
    if "protocol" not in runs:
        return {}
    with_protocol = runs.dropna(subset=["protocol"]).drop_duplicates("experiment")
    return {row["experiment"]: json.loads(row["protocol"]) for _, row in with_protocol.iterrows()}


# -- the details ----------------------------------------------------------------------------------------------------
def overview(runs: pd.DataFrame, experiments: Sequence[str], metric: str, mode: str, target: float | None) -> Section:
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
    scales = by_scale(runs)
    if scales is not None:
        caption = f"Techniques that train at a batch scale S, by S (S = workers × accumulation unless set; {metric})"
        section.tables.append((caption, scales))
    return section


def by_scale(runs: pd.DataFrame) -> pd.DataFrame | None:
    """The runs of techniques that train at a batch scale S (a technique with a ``scale``, e.g. AdaScale), grouped by
    workload, technique and S: the technique's ``scale`` of the run's section values and its data-parallel workers
    (``world_size``; 1 where not recorded). Per group: how many runs, how many completed (a failed run counts, with
    no value), the median final metric and learning-rate gain (the technique's ``lr_gain``) of the completed ones.
    None without such runs."""
    if "technique" not in runs:
        return None
    from autoaccel.optim import techniques_in

    scaling = {
        label: next((t for t in techniques_in(label) if t.scale is not None), None)
        for label in runs["technique"].dropna().unique()
    }
    own = runs[runs["technique"].map(lambda label: scaling.get(label) is not None)].copy()
    if own.empty:
        return None
    workers = own["world_size"].astype(float).fillna(1.0) if "world_size" in own else pd.Series(1.0, index=own.index)
    scales, gains = [], []
    for (_, row), n in zip(own.iterrows(), workers, strict=True):
        technique = scaling[row["technique"]]
        prefix = f"optimizer.{technique.section}."
        section = {k.removeprefix(prefix): v for k, v in row.items() if k.startswith(prefix) and not is_missing(v)}
        scales.append(technique.scale(section, int(n)))
        gains.append(row.get(f"final_{technique.lr_gain}", np.nan) if technique.lr_gain else np.nan)
    own["S"], own["workers"], own["_gain"] = scales, workers, pd.to_numeric(pd.Series(gains, index=own.index))
    rows = []
    for (workload, technique, s, n), group in own.groupby(["workload", "technique", "S", "workers"], dropna=False):
        done = group[group["status"].isin(_FINISHED)]
        rows.append(
            {
                "workload": workload,
                "technique": technique,
                "S": s,
                "workers": int(n),
                "runs": len(group),
                "completed": len(done),
                "median final metric": float(done["final_metric"].median()) if len(done) else np.nan,
                "median final gain": float(done["_gain"].median()) if len(done) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def techniques(runs: pd.DataFrame, history: pd.DataFrame, mode: str, metric: str) -> Section:
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
    best_runs = {fam: _best_first(group, mode).iloc[0]["run_id"] for fam, group in done.groupby("family")}
    section.images.append(("learning curves", plots.png(plots.best_trial_curves(history, best_runs, metric))))
    return section


def importance(runs: pd.DataFrame, mode: str, distributions: Mapping[str, Any] | None = None) -> Section:
    """PED-ANOVA importance per family; ``distributions``: the sweep's declared search space (column →
    Optuna distribution), else inferred from the values seen."""
    section = Section("Hyperparameter importance")
    done = runs[runs["status"].isin(_FINISHED)]
    params = _hyperparameters(done)
    if len(done) < MIN_IMPORTANCE_TRIALS or not params:
        section.missing.append(
            f"importance needs ≥ {MIN_IMPORTANCE_TRIALS} completed trials with varied hyperparameters (have "
            f"{len(done)}{'' if params else ', none varied'}): from fewer its ranking and interval are noise"
        )
        return section
    table = importance_by_group(
        done, "family", metric="final_metric", mode=mode, n_bootstrap=10, distributions=distributions
    )
    section.text.append(
        "PED-ANOVA (Optuna's default evaluator; handles conditional parameters) on completed trials,"
        f" with 10 bootstrap resamples for the interval; per family with ≥ {MIN_IMPORTANCE_TRIALS} completed trials"
        " (a family with fewer says so in its note) and over all ('(all)')"
        + ("; ranges and scales as the search space declares them." if distributions else ".")
    )
    section.tables.append(("Importance (normalised per group)", table.reset_index(drop=True)))
    overall = table[(table["group"] == "(all)") & table["importance"].notna()]
    if not overall.empty:
        section.images.append(("importance", plots.png(plots.importance_plot(overall))))
    return section


def _heatmap_pairs() -> list[tuple[str, str]]:
    """The (x, y) columns each registered technique declares worth a heat map."""
    from autoaccel.optim import techniques

    pairs = ((f"optimizer.{x}", f"optimizer.{y}") for t in techniques().values() for x, y in t.heatmaps)
    return list(dict.fromkeys(pairs))


def sensitivity(runs: pd.DataFrame, mode: str, metric: str, scales: Mapping[str, bool] | None = None) -> Section:
    """Sensitivity curves (and the techniques' heat maps); ``scales``: column → log scale, as the search space
    declares (else guessed from the values)."""
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
    scales = scales or {}
    curves = {p: sensitivity_curve(done, p, mode=mode, log=scales.get(p)) for p in params}
    section.images.append(("sensitivity curves", plots.png(plots.sensitivity_plots(curves))))
    for x, y in _heatmap_pairs():
        if x in params and y in params:
            grid = sensitivity_heatmap(done, x, y, mode=mode, log_x=scales.get(x), log_y=scales.get(y))
            section.images.append((f"{x} × {y}", plots.png(plots.heatmap_plot(grid, x, y, mode, metric))))
    return section


def _by_batch_size() -> list[str]:
    """The statistics techniques declare worth a mean per batch size (Anderson's share of averaged steps)."""
    from autoaccel.optim import techniques

    return [f"final_{s.key}" for t in techniques().values() for s in t.statistics if s.by_batch_size]


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


def robustness(runs: pd.DataFrame, mode: str, metric: str) -> Section:
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
                "Final metric over seeds, per configuration (mean, std, 95% t-interval from ≥ 3 seeds, median; "
                f"every seed counted: a failed one, counted in n_nonfinite, is the worst value ({_worst(mode)}), so "
                "it shows in the mean, min or max and leaves std and the interval undefined)",
                seed_robustness(seeds, "final_metric", by=("family", "configuration"), mode=mode),
            )
        )
    if "budget.batch_size" in done and done["budget.batch_size"].nunique() > 1:
        failed = results["status"] != "completed"  # a failed run is counted, with no value
        values = results.assign(final_metric=results["final_metric"].mask(failed))
        table = batch_size_robustness(
            values, "final_metric", batch_col="budget.batch_size", by="family", statistics=_by_batch_size(), mode=mode
        )
        caption = (
            "Quality and steps to target against batch size (every run counted: a failed one, in n_nonfinite, is "
            f"the worst value, {_worst(mode)}, in the mean and median, and leaves std undefined)"
        )
        section.tables.append((caption, table))
    else:
        section.missing.append(
            "a single batch size: sample `budget.batch_size` or list `study.batch_sizes` to see "
            "how each technique holds up as batches shrink (Anderson's moving-average regime)"
        )
    return section


def _worst(mode: str) -> str:
    return "∞" if objective.worst(mode) > 0 else "−∞"


def perturbation(runs: pd.DataFrame, mode: str, metric: str) -> Section:
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


def budget(runs: pd.DataFrame, mode: str, metric: str, curves: pd.DataFrame | None = None) -> Section:
    """How much tuning each family needs; ``curves``: a comparison's :func:`tuning_curves`."""
    section = Section("Tuning budget")
    if is_comparison(runs):
        if curves is None:
            raise ValueError("a comparison's tuning curves are needed (none were computed)")
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
    expected = {}
    for fam, group in finished.groupby("family"):
        values = group["final_metric"].where(group["status"] == "completed").to_numpy(dtype=float)
        if len(values) >= 2:
            expected[fam] = expected_best_of_k(values, mode=mode)
    section.images.append(("expected best of k", plots.png(plots.expected_best_plot(expected, metric))))
    return section


def profiles(runs: pd.DataFrame, mode: str) -> Section:
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
    score = benchmark_score(times)
    section.tables.append(
        (
            "AlgoPerf score (area under ρ(τ), τ ∈ [1, 4]; 1 = fastest everywhere)",
            pd.DataFrame({"family": list(score), "score": list(score.values())})
            .sort_values("score", ascending=False)
            .reset_index(drop=True),
        )
    )
    section.images.append(("performance profiles", plots.png(plots.profile_plot(performance_profile(times)))))
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


def failures(runs: pd.DataFrame) -> Section:
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


def reproduce(experiments: Sequence[str], uri: str | None, out: str, spec: str | None) -> Section:
    section = Section("Reproduce")
    commands = []
    if spec:
        commands.append(f"autoaccel sweep {shlex.quote(spec)}")
    args = " ".join(f"--experiment {shlex.quote(e)}" for e in experiments)
    if uri is None:  # reported from Parquet: the same tables, offline
        commands.append(f"autoaccel report --parquet {shlex.quote(out)} --out {shlex.quote(out)}")
        section.text.extend(commands)
        return section
    shown = shlex.quote(redact_uri(uri))  # a password in the URI stays out of the report
    commands.append(f"autoaccel report {args} --tracking-uri {shown} --out {shlex.quote(out)}")
    section.text.extend(commands)
    if shown != shlex.quote(uri):
        section.text.append(
            "The tracking URI's password is shown as ***: put the real one back, or give credentials as"
            " MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (HTTP) or in ~/.pgpass (PostgreSQL)."
        )
    return section
