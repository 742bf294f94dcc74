"""The verdict's error rates and power, measured through ``autoaccel.analysis.verdict_table`` on simulated tables.

    .venv/bin/python benchmarks/verdict_calibration.py [--tables 100] [--seed 0]

Each simulated table is one comparison: on each of several settings a baseline and several technique families,
each tuned in R studies, each study's chosen configuration run on the same seeds. log(final metric) = the seed's own
effect (sd 0.5, shared by every family of a setting: what pairing removes) + the chosen configuration's tuning luck
(sd ``tuning sd``, drawn per family and study) + run noise (a paired log ratio has sd 0.05 over seeds, the
admissions MLP's: shared/research/verdict_audit.md §2.1) + log of the true ratio (1 for every technique when nothing
differs; 0.95, 0.9 or 0.85 for every technique to measure power). Printed per (seeds, rows, R, tuning sd):

- ``false / row``: the share of rows called ``better`` or ``worse`` when nothing differs (target ≤ 5%);
- ``tables with any``: the share of tables with at least one such row (target ≤ 10%);
- ``power 5% / 10% / 15%``: the share of rows called ``better`` when every technique is that much better.

Then, from the row's detectable-ratio formula (``_paired_test.detectable``), the seeds a one-replicate comparison
needs to find a gain with 80% power. ``docs/compare.md`` quotes the output; ``tests/test_verdict_calibration.py``
asserts the targets on the same simulation with fewer tables. Fixed seeds: the same numbers every run.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd

from autoaccel.analysis import markdown_table, verdict_table

SIGMA = 0.05  # sd of a paired log ratio over seeds: the admissions MLP's (verdict_audit.md §2.1, median 0.03-0.08)
TUNING_SD = 0.03  # sd of a chosen configuration's log quality between tuning studies (ASHA's regret there: 2-5%)
SHAPES = {12: (3, 4), 24: (4, 6)}  # rows → (settings, techniques per setting)
# (tuning replicates, tuning sd): one study and no tuning luck (the seeds alone), one study with luck (what the
# interval missed before issue 22), three studies with it; at 10 seeds and 12 rows also three studies with little
# luck and five with it
DESIGNS = ((1, 0.0), (1, TUNING_SD), (3, TUNING_SD))
EXTRA = ((10, 12, 3, 0.01), (10, 12, 5, TUNING_SD))


def tables(
    rng: np.random.Generator,
    count: int,
    seeds: int,
    replicates: int = 1,
    ratio: float = 1.0,
    tuning_sd: float = 0.0,
    rows: int = 12,
) -> list[pd.DataFrame]:
    """``count`` runs tables of one comparison each (the module docstring's model), ``rows`` technique-against-
    baseline rows in each, every technique ``ratio`` × its baseline."""
    settings, techniques = SHAPES[rows]
    families = np.array(["base", *(f"t{k}" for k in range(techniques))])
    shape = (count, settings, len(families), replicates, seeds)
    log_ratio = np.log(np.where(np.arange(len(families)) > 0, ratio, 1.0))[:, None, None]
    log_metric = (
        math.log(0.3)
        + rng.normal(0.0, 0.5, (count, settings, 1, 1, seeds))
        + rng.normal(0.0, tuning_sd, (count, settings, len(families), replicates, 1))
        + rng.normal(0.0, SIGMA / math.sqrt(2), shape)
        + log_ratio
    )
    _, setting, family, replicate, seed = (i.reshape(count, -1) for i in np.indices(shape))
    return [
        pd.DataFrame(
            {
                "phase": "final",
                "family": families[family[t]],
                "baseline": np.where(family[t] > 0, "base", None),
                "seed": (seed[t] + 1).astype(str),
                "tuning_replicate": replicate[t],
                "status": "completed",
                "final_metric": np.exp(log_metric[t].ravel()),
                "workload": np.char.add("w", setting[t].astype(str)),
                "mode": "min",
                "metric_name": "val_mse",
            }
        )
        for t in range(count)
    ]


def verdicts(frames: list[pd.DataFrame]) -> np.ndarray:
    """tables × rows of verdict words."""
    return np.array([verdict_table(frame)["verdict"].to_numpy() for frame in frames])


def scenario(seed: int, count: int, seeds: int, rows: int, replicates: int, tuning_sd: float) -> dict[str, float]:
    """One line of the table: false verdicts when nothing differs, and power at three true gains."""
    rng = np.random.default_rng(seed)
    null = np.isin(verdicts(tables(rng, count, seeds, replicates, 1.0, tuning_sd, rows)), ["better", "worse"])
    line = {
        "seeds": seeds,
        "rows": rows,
        "R": replicates,
        "tuning sd": tuning_sd,
        "false / row": null.mean(),
        "tables with any": null.any(axis=1).mean(),
    }
    for gain in (0.05, 0.10, 0.15):
        found = verdicts(tables(rng, count, seeds, replicates, 1.0 - gain, tuning_sd, rows)) == "better"
        line[f"power {gain:.0%}"] = found.mean()
    return line


GAINS = (0.02, 0.05, 0.1, 0.15)


def seeds_needed(sigma: float, gain: float, rows: int) -> int | str:
    """The fewest seeds at which a one-replicate row's detectable ratio reaches ``1 − gain`` (80% power, the
    Bonferroni level over ``rows``), for a paired log-ratio spread ``sigma``; "> 199" beyond."""
    from autoaccel.analysis._paired_test import SEEDS, Evidence, detectable

    for n in range(2, 200):
        evidence = Evidence(0, 0, 0, 1, 1, SEEDS, n, 1, math.nan, sigma, n - 1, 2 / 2**n)
        if detectable(evidence, 0.05 / rows) <= -math.log(1 - gain):
            return n
    return "> 199"


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=100, help="simulated tables per scenario and truth")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    lines = []
    grid = [(s, r, *design) for s in (5, 10) for r in (12, 24) for design in DESIGNS]
    for k, (seeds, rows, replicates, tuning_sd) in enumerate([*grid, *EXTRA]):
        lines.append(scenario(args.seed + k, args.tables, seeds, rows, replicates, tuning_sd))
    shown = pd.DataFrame(lines)
    for column in shown.columns[4:]:
        shown[column] = shown[column].map(lambda v: f"{100 * v:.1f}%")
    print(f"{args.tables} simulated tables per scenario and truth (seed {args.seed}):\n")
    print(markdown_table(shown))
    for rows in (1, 12):
        needed = [
            {"spread (sd of log ratio)": sigma, **{f"gain {g:.0%}": seeds_needed(sigma, g, rows) for g in GAINS}}
            for sigma in (0.01, 0.02, 0.05, 0.1, 0.2)
        ]
        print(f"\nSeeds a one-replicate row needs for 80% power, {rows} row(s) corrected together:\n")
        print(markdown_table(pd.DataFrame(needed)))
    print(f"\n{time.perf_counter() - start:.0f} s")
    return lines


if __name__ == "__main__":
    main()
