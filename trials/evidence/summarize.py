"""The tables and figures of docs/evidence.md, recomputed offline from the Parquet under docs/evidence/.

    .venv/bin/python trials/evidence/summarize.py        # prints every claim's tables (Markdown); writes the figures

Each table comes from the comparisons' runs through the same functions as `autoaccel report` (``verdict_table``,
``tuning_curves``, ``top_k_finishes``, ``seed_robustness``); nothing here is typed in by hand. A claim whose
comparisons have not been run yet is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from autoaccel import objective
from autoaccel.analysis import (
    forest_plot,
    markdown_table,
    read_parquet,
    seed_robustness,
    top_k_finishes,
    verdict_table,
)

ROOT = Path(__file__).resolve().parents[2]
EVIDENCE = ROOT / "docs" / "evidence"
FIGURES = EVIDENCE  # where the figures are written (--figures)
FAILED = ("diverged", "errored")


def _load(names: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    folders = [EVIDENCE / name for name in names if (EVIDENCE / name / "runs.parquet").is_file()]
    missing = [name for name in names if not (EVIDENCE / name / "runs.parquet").is_file()]
    if missing:
        print(f"\n(not run yet: {', '.join(missing)}; `trials/evidence/run.sh {' '.join(missing)}`)")
    if not folders:
        return None
    runs, history = read_parquet(folders)
    return runs.to_pandas(), history.to_pandas()


def _num(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}g}"


def _losses(runs: pd.DataFrame) -> list[float]:
    """Each run's final metric as a loss (lower better, whatever the metric's direction); a failure is ∞."""
    return [
        math.inf if status in FAILED or pd.isna(value) else objective.loss(value, mode)
        for status, value, mode in zip(runs["status"], runs["final_metric"], runs["mode"], strict=True)
    ]


def _speed(value: float) -> str:
    return "never" if value == 0 else _num(value)  # the baseline reached the target, the technique never did


def _verdict_rows(table: pd.DataFrame, extra: dict[str, str] | None = None) -> pd.DataFrame:
    """The verdict columns the evidence cites, in words: ratio [95% interval] (n seeds), wins, speed-up, failures."""
    rows = []
    for row in table.itertuples():
        n = int(row.n_seeds)
        rows.append(
            {
                "setting": row.setting,
                "technique": row.family,
                "baseline": row.baseline
                + ("" if row.baseline_setting == row.setting else f" ({row.baseline_setting.rsplit(' / ', 1)[-1]})"),
                "metric": row.metric,
                "ratio [95% CI]": f"{_num(row.ratio)} [{_num(row.ratio_ci_low)}, {_num(row.ratio_ci_high)}]",
                "seeds": n,
                "wins": f"{round(row.win_rate * n) if n else 0}/{n}",
                "speed-up to target (n)": f"{_speed(row.speedup)} ({int(row.speedup_n)})",
                "failed (technique / baseline)": f"{_num(100 * row.failure_rate)}% / "
                f"{_num(100 * row.baseline_failure_rate)}%",
                "tuning diverged": f"{_num(100 * row.tuning_diverged_rate)}% of {int(row.tuning_trials)}",
                "verdict": row.verdict,
                **{k: getattr(row, v) for k, v in (extra or {}).items()},
            }
        )
    return pd.DataFrame(rows)


def _print(title: str, frame: pd.DataFrame) -> None:
    print(f"\n### {title}\n")
    print(markdown_table(frame))


def _forest(table: pd.DataFrame, path: Path, title: str, label: str) -> None:
    """One forest plot (the report's): each row's paired ratio with its 95% interval, 1 = no difference."""
    labels = [label.format(**row) for row in table.to_dict("records")]
    forest_plot(table, labels=labels, title=title).savefig(path, dpi=90)
    print(f"\n![{title}](evidence/{path.name})")


def anderson(runs: pd.DataFrame, history: pd.DataFrame) -> None:
    table = verdict_table(runs)
    order = {name: i for i, name in enumerate(COMPARISONS["anderson"])}
    table = table.assign(order=table["experiment"].map(order)).sort_values(["order", "family"])
    table = table.assign(where=table["experiment"].str.removeprefix("evidence-anderson-"))
    # how often the moving average was on, per final run of AA auto: the RSD criterion at work
    averaging = history[history["key"] == "aa_averaging_fraction"].merge(
        runs[(runs["phase"] == "final")][["run_id", "experiment", "family"]], on="run_id"
    )
    on = averaging.groupby(["experiment", "family"])["value"].mean().rename("averaging_on")
    table = table.join(on, on=["experiment", "family"])
    _print(
        "Anderson acceleration without the moving average (off), with it switched by the RSD criterion (auto) and"
        " always on (on), each against its base optimizer",
        _verdict_rows(table, {"comparison": "where"}).assign(
            **{"averaging on (share of steps)": [_num(v, 2) for v in table["averaging_on"]]}
        ),
    )
    _forest(table, FIGURES / "anderson.png", "Anderson acceleration vs its base optimizer", "{family} · {where}")


def demon(runs: pd.DataFrame, history: pd.DataFrame) -> None:
    table = verdict_table(runs).sort_values(["setting", "family"])
    _print("Demon and each schedule against a constant rate (SGD with momentum)", _verdict_rows(table))
    # top-1 / top-3 finishes over the settings: per setting the median final metric over seeds, a failure the worst
    final = runs[(runs["phase"] == "final")]
    scores = final.assign(loss=_losses(final)).groupby(["experiment", "family"])["loss"].median().unstack()
    top = top_k_finishes(scores.replace([np.inf, -np.inf], np.nan), (1, 3), "min")
    _print(f"Top-1 / top-3 finishes over {len(scores)} settings (%)", top.rename_axis("family").reset_index())
    # sensitivity to tuning: the expected best of k tuning trials at k = 1 (one random configuration) and at the
    # whole budget, relative to the best family's at the whole budget in that setting
    # sensitivity to tuning: how far a family's median tuning trial (a random TPE configuration, at the epochs ASHA
    # let it reach; a diverged one the worst) is from that family's own best trial, as a factor ≥ 1 for either
    # direction (min: median ÷ best; max: best ÷ median)
    tuning = runs[runs["phase"] == "tuning"]
    tuning = tuning.assign(loss=_losses(tuning))
    rows = []
    for (experiment, family), own in tuning.groupby(["experiment", "family"]):
        median, best = own["loss"].median(), own["loss"].min()
        if own["mode"].iloc[0] == "max":  # losses are −accuracy: the ratio of the accuracies themselves
            median, best = -best, -median
        factor = math.inf if math.isinf(own["loss"].median()) else median / best  # most of its trials failed
        rows.append({"setting": experiment.removeprefix("evidence-demon-"), "family": family, "factor": factor})
    sensitivity = pd.DataFrame(rows).pivot(index="family", columns="setting", values="factor")
    _print(
        "Sensitivity to tuning: how far each family's median tuning trial is from its own best, as a factor (1: a"
        " typical configuration is as good as the family's best; a diverged trial counts as the worst; 12 trials,"
        " most stopped early by ASHA, no interval)",
        sensitivity.map(_num).reset_index(),
    )
    _forest(
        table[table["family"] == "demon_sgd"],
        FIGURES / "demon.png",
        "Demon SGD vs a constant rate, per setting",
        "{setting}",
    )


def adahessian(runs: pd.DataFrame, history: pd.DataFrame) -> None:
    table = verdict_table(runs)
    table = table.assign(points=100 * (table["median"] - table["baseline_median"]))
    _print(
        "AdaHessian against Adam (accuracy: the ratio is Adam's ÷ AdaHessian's, < 1 better)",
        _verdict_rows(table).assign(
            **{
                "median accuracy (technique / baseline)": [
                    f"{100 * a:.2f}% / {100 * b:.2f}%"
                    for a, b in zip(table["median"], table["baseline_median"], strict=True)
                ],
                "difference (points)": [_num(p) for p in table["points"]],
            }
        ),
    )
    _tuning_outcomes(runs, "Tuning trials per family (robustness to hyperparameters: how many configurations work)")
    _forest(table, FIGURES / "adahessian.png", "AdaHessian vs Adam", "{family} · {setting}")


def adascale(runs: pd.DataFrame, history: pd.DataFrame) -> None:
    table = verdict_table(runs)
    table = table.assign(S=table["batch_size"] / 8, rule=table["family"].str.rsplit("_", n=1).str[0])
    table = table.sort_values(["S", "rule"])
    final = runs[runs["phase"] == "final"]
    gains = history[history["key"] == "adascale_gain"].merge(final[["run_id", "family"]], on="run_id")
    steps = history[history["key"] == "step"].merge(final[["run_id", "family"]], on="run_id")
    used = steps.groupby(["family", "run_id"])["value"].max().groupby("family").median()
    table = table.assign(
        gain=table["family"].map(gains.groupby("family")["value"].mean()),
        iterations=table["family"].map(used),
    )
    _print(
        "Each scaling rule at S × the batch against S = 1 (SGD at batch 8), the same scale-invariant budget",
        _verdict_rows(table).assign(
            **{
                "mean gain r": [_num(g) for g in table["gain"]],
                "iterations (median)": [_num(i, 4) for i in table["iterations"]],
                "median final (S=1)": [
                    f"{_num(m)} ({_num(b)})" for m, b in zip(table["median"], table["baseline_median"], strict=True)
                ],
            }
        ),
    )
    _forest(table, FIGURES / "adascale.png", "Scaling rules at S × batch vs S = 1", "{family}")


def lookahead(runs: pd.DataFrame, history: pd.DataFrame) -> None:
    table = verdict_table(runs).sort_values(["experiment", "family"])
    table = table.assign(where=table["experiment"].str.removeprefix("evidence-lookahead-"))
    _print("Lookahead against its inner optimizer", _verdict_rows(table, {"comparison": "where"}))
    _spread(runs, "Spread over seeds of the final runs (the variance claim)")
    _forest(table, FIGURES / "lookahead.png", "Lookahead vs its inner optimizer", "{family} · {where}")


def _tuning_outcomes(runs: pd.DataFrame, title: str) -> None:
    """Per comparison and family: how its tuning trials ended, and the best and median whole-budget result."""
    rows = []
    for (experiment, family), own in runs[runs["phase"] == "tuning"].groupby(["experiment", "family"]):
        done = own.loc[own["status"] == "completed", "final_metric"]
        counts = own["status"].value_counts()
        mode = own["mode"].iloc[0]
        rows.append(
            {
                "comparison": experiment,
                "family": family,
                "trials": len(own),
                **{s: int(counts.get(s, 0)) for s in ("completed", "stopped_early", "diverged", "errored")},
                "best completed": _num(objective.best(done, mode)) if len(done) else "–",
                "median completed": _num(float(done.median())) if len(done) else "–",
            }
        )
    _print(title, pd.DataFrame(rows))


def _spread(runs: pd.DataFrame, title: str) -> None:
    """Per comparison and family: the spread of the final runs' metric over seeds; a failure counted."""
    rows = runs[runs["phase"] == "final"]
    rows = rows.assign(final_metric=rows["final_metric"].where(~rows["status"].isin(FAILED)))  # a failure: no value
    rows = rows[rows["status"].isin(("completed", *FAILED))]
    modes = rows["mode"].dropna().unique()
    # a failed seed counts as the worst value (one direction), or makes the spread undefined (several)
    spread = seed_robustness(rows, by=("experiment", "family"), mode=modes[0] if len(modes) == 1 else None)
    spread = spread.assign(cv=spread["std"] / spread["mean"].abs())
    shown = spread[["experiment", "family", "n", "n_nonfinite", "mean", "std", "cv", "min", "max"]]
    _print(title, shown.assign(**{c: shown[c].map(_num) for c in ("mean", "std", "cv", "min", "max")}))


CLAIMS = {"anderson": anderson, "demon": demon, "adahessian": adahessian, "adascale": adascale, "lookahead": lookahead}
# each claim's comparisons (run.sh's names), in the order its table lists them
COMPARISONS = {
    "anderson": [
        f"evidence-anderson-{w}"
        for w in ("b4", "b40", "b320", "quadratic-b8", "quadratic-b64", "quadratic-b512", "burgers1d", "burgers100d")
    ],
    "demon": [f"evidence-demon-{w}" for w in ("admissions-b8", "admissions-b40", "quadratic-b32", "digits-b128")],
    "adahessian": ["evidence-adahessian-digits"],
    "adascale": ["evidence-adascale-quadratic"],
    "lookahead": [f"evidence-lookahead-{w}" for w in ("admissions", "defaults-admissions", "defaults-digits")],
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("claims", nargs="*", help=f"some of {', '.join(CLAIMS)} (default: all)")
    parser.add_argument("--figures", type=Path, default=EVIDENCE, help="where the figures go (default docs/evidence)")
    args = parser.parse_args()
    for claim in args.claims:
        if claim not in CLAIMS:
            parser.error(f"claim {claim!r}: one of {', '.join(CLAIMS)}")
    FIGURES = args.figures
    FIGURES.mkdir(parents=True, exist_ok=True)
    for name in args.claims or CLAIMS:
        print(f"\n## {name}")
        loaded = _load(COMPARISONS[name])
        if loaded is not None:
            CLAIMS[name](*loaded)
