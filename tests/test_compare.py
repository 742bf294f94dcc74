"""Comparisons: the verdict's statistics on tables with known answers, then a real comparison (Ray, Optuna journal,
MLflow SQLite, tiny models) whose techniques have known answers: a baseline in disguise, a technique that helps on
a deterministic problem, one that always diverges, and one ASHA would have starved under a shared study."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from autoaccel.analysis import build_report, export_experiments, read_parquet, tuning_curves, verdict_table
from autoaccel.analysis._compare import sentence
from autoaccel.cli import main
from autoaccel.errors import ConfigError
from autoaccel.sweep import load_spec, run_sweep

ROOT = Path(__file__).resolve().parent.parent


def _final(family: str, baseline: str | None, values: list, steps: list | None = None, **extra) -> list[dict]:
    """Final runs of one family: one row per seed (1, 2, ...); a value of None is a diverged seed."""
    rows = []
    for i, value in enumerate(values, start=1):
        rows.append(
            {
                "run_id": f"{family}-{i}",
                "phase": "final",
                "family": family,
                "baseline": baseline,
                "seed": str(i),
                "status": "diverged" if value is None else "completed",
                "final_metric": 1.0e6 if value is None else value,  # a diverged run's stand-in, as logged
                "steps_to_target": None if steps is None else steps[i - 1],
                "time_to_target_s": None if steps is None or steps[i - 1] is None else steps[i - 1] / 10,
                "workload": "toy",
                "budget.batch_size": 32,
                "metric_name": "val_mse",
                "mode": extra.get("mode", "min"),
            }
        )
    return rows


def _table(*families: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for rows in families for row in rows])


def test_a_baseline_in_disguise_has_ratio_exactly_one_and_is_equivalent() -> None:
    """Identical runs on 10 seeds: ratio 1 with the interval [1, 1], no difference, and the interval inside any
    margin: equivalent. On 5 seeds the same runs say nothing: no rank test reaches 5% there."""
    same = [0.5, 0.4, 0.6, 0.55, 0.45, 0.52, 0.48, 0.41, 0.63, 0.5]
    row = verdict_table(_table(_final("base", None, same), _final("twin", "base", same))).iloc[0]
    assert (row["ratio"], row["ratio_ci_low"], row["ratio_ci_high"]) == (1.0, 1.0, 1.0)
    assert row["win_rate"] == 0.0 and row["verdict"] == "equivalent" and row["n_seeds"] == 10
    assert row["p_value"] == 1.0 and row["difference"] == 0.0 and row["test"] == "signed-rank over seeds"
    assert row["tuning_replicates"] == 1 and math.isnan(row["replicate_spread"])
    row = verdict_table(_table(_final("base", None, same[:5]), _final("twin", "base", same[:5]))).iloc[0]
    assert row["verdict"] == "inconclusive" and (row["ratio_ci_low"], row["ratio_ci_high"]) == (0.0, math.inf)


def test_better_on_every_seed_is_better_and_the_interval_is_below_one() -> None:
    base = [1.0, 2.0, 1.5, 1.2, 0.8, 1.1]
    table = _table(_final("base", None, base), _final("fast", "base", [0.9 * v for v in base]))
    row = verdict_table(table).iloc[0]
    assert row["ratio"] == pytest.approx(0.9) and row["ratio_ci_high"] < 1 and row["verdict"] == "better"
    assert row["win_rate"] == 1.0 and row["failure_rate"] == 0.0
    assert row["p_value"] == pytest.approx(2 / 2**6) and row["p_adjusted"] == row["p_value"]  # one row
    # in the metric's units, family − baseline: the per-seed differences are −0.1 × the baseline's value
    assert -0.1 * max(base) < row["difference"] < -0.1 * min(base)


def test_pairing_by_seed_sees_what_the_spread_over_seeds_hides() -> None:
    """Seeds differ 8× while the technique is 5% better on each: unpaired, the two sets overlap almost entirely (an
    interval of the ratio of medians from independent resamples spans 1); paired by seed, it is better on every
    seed, and a seed that is better only against another seed's baseline does not count."""
    base = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    table = _table(_final("base", None, base), _final("fam", "base", [0.95 * v for v in base]))
    row = verdict_table(table).iloc[0]
    assert row["ratio"] == pytest.approx(0.95) and row["verdict"] == "better" and row["win_rate"] == 1.0
    rng = np.random.default_rng(0)
    unpaired = [
        np.median(rng.choice([0.95 * v for v in base], 8)) / np.median(rng.choice(base, 8)) for _ in range(2000)
    ]
    assert np.quantile(unpaired, 0.025) < 1 < np.quantile(unpaired, 0.975)
    shifted = [0.95 * v for v in base[1:]] + [0.95 * base[0]]  # 5% below the *next* seed's baseline
    row = verdict_table(_table(_final("base", None, base), _final("fam", "base", shifted))).iloc[0]
    assert row["win_rate"] == pytest.approx(1 / 8) and row["verdict"] != "better"


def test_a_family_that_always_diverges_is_worse_with_failure_rate_one() -> None:
    table = _table(_final("base", None, [0.5] * 6), _final("boom", "base", [None] * 6))
    row = verdict_table(table).iloc[0]
    assert math.isinf(row["ratio"]) and row["ratio_ci_low"] == math.inf and row["verdict"] == "worse"
    assert row["failure_rate"] == 1.0 and row["win_rate"] == 0.0 and math.isinf(row["median"])
    assert row["difference"] == math.inf  # a failure is the worst value in the metric's units too


def test_a_failed_seed_ranks_worst_never_as_a_finite_stand_in() -> None:
    """Seven better seeds and one diverged: the stand-in 1e6 would be a finite 2e6× ratio; it is ∞ instead, it
    takes the largest rank, and the failure shows in the failure rate and the median over seeds."""
    table = _table(_final("base", None, [0.5] * 8), _final("fam", "base", [0.4] * 7 + [None]))
    row = verdict_table(table).iloc[0]
    assert row["failure_rate"] == pytest.approx(1 / 8) and row["win_rate"] == pytest.approx(7 / 8)
    assert math.isinf(row["ratio_ci_high"]) and row["verdict"] == "inconclusive"
    baseline_failed = _table(_final("base", None, [0.5] * 3 + [None] + [0.5] * 4), _final("fam", "base", [0.4] * 8))
    row = verdict_table(baseline_failed).iloc[0]  # the baseline's failure is the family's win (ratio 0)
    assert row["win_rate"] == 1.0 and row["ratio_ci_high"] < 1 and row["baseline_failure_rate"] == pytest.approx(1 / 8)
    assert row["verdict"] == "better"


def test_speedup_counts_never_as_never_and_leaves_out_seeds_where_neither_reached() -> None:
    base = _final("base", None, [0.5] * 5, steps=[100, 100, None, 100, None])
    fam = _final("fam", "base", [0.5] * 5, steps=[50, 50, 40, None, None])
    row = verdict_table(_table(base, fam)).iloc[0]
    # seeds: 2×, 2×, ∞ (only the family reached it), 0 (only the baseline did); seed 5: neither, left out
    assert row["speedup_n"] == 4 and row["speedup"] == pytest.approx(2.0)
    assert row["reached_rate"] == pytest.approx(0.6) and row["baseline_reached_rate"] == pytest.approx(0.6)


def test_for_a_metric_to_maximise_below_one_is_still_better_and_the_sentence_says_higher_is_better() -> None:
    base, fam = [0.80, 0.82, 0.81, 0.83, 0.79, 0.80], [0.90, 0.91, 0.92, 0.90, 0.89, 0.93]
    table = _table(_final("base", None, base, mode="max"), _final("fam", "base", fam, mode="max"))
    row = verdict_table(table).iloc[0]
    assert row["ratio"] < 1 and row["verdict"] == "better" and row["mode"] == "max"
    assert row["difference"] > 0  # the family's accuracy minus the baseline's: more accurate
    words = sentence(row)
    # technique ÷ baseline as the words read: more accurate is > 1
    assert f"{1 / row['ratio']:.3g}× base's" in words and "higher is better" in words
    assert f"+{row['difference']:.3g} val_mse" in words


def test_an_interval_next_to_a_verdict_is_never_rounded_to_a_point() -> None:
    """0.1% better on every seed: three significant figures would print [0.999, 0.999], or [1, 1]."""
    base = [0.5, 0.6, 0.55, 0.52, 0.58, 0.51]
    fam = [v * (0.9990 + 0.0001 * i) for i, v in enumerate(base)]
    row = verdict_table(_table(_final("base", None, base), _final("fam", "base", fam))).iloc[0]
    assert row["verdict"] == "better"
    low, high = re.search(r"\[([\d.]+), ([\d.]+)\]", sentence(row)).groups()
    assert low != high and "1" not in (low, high) and float(high) < 1


def test_a_family_at_a_batch_of_its_own_is_paired_with_its_baseline_at_the_baselines_batch() -> None:
    """AdaScale or the linear scaling rule at S × the batch against plain SGD at the base batch, seed by seed; a
    baseline run at several batches is no one reference, so such a family then gets no pairs (and no verdict)."""
    base = [1.0, 2.0, 1.5, 1.2, 0.8, 1.1]
    scaled = [dict(row, **{"budget.batch_size": 256}) for row in _final("scaled", "base", [v * 1.1 for v in base])]
    row = verdict_table(_table(_final("base", None, base), scaled)).iloc[0]
    assert (row["setting"], row["baseline_setting"]) == ("toy / batch 256", "toy / batch 32")
    assert row["n_seeds"] == 6 and row["ratio"] == pytest.approx(1.1) and row["verdict"] == "worse"
    two = [dict(r, **{"budget.batch_size": 64, "run_id": r["run_id"] + "b"}) for r in _final("base", None, base)]
    row = verdict_table(_table(_final("base", None, base), two, scaled)).iloc[0]
    assert row["n_seeds"] == 0 and row["verdict"] == "inconclusive"


def test_too_few_seeds_give_no_verdict_and_say_so() -> None:
    """Five seeds, each twice as good: no rank test reaches 5% on five seeds (2/2⁵ > 5%), so no claim, no part in
    the correction, nothing detectable, and the sentence says why."""
    row = verdict_table(_table(_final("base", None, [1.0] * 5), _final("fam", "base", [0.5] * 5))).iloc[0]
    assert row["n_seeds"] == 5 and row["ratio"] == 0.5 and row["verdict"] == "inconclusive"
    assert math.isnan(row["p_adjusted"]) and row["detectable_ratio"] == 0.0
    assert "only 5 paired seeds: a claim needs 6" in sentence(row)


def test_interrupted_runs_are_left_out_and_a_table_without_final_runs_is_an_error() -> None:
    base, fam = _final("base", None, [1.0] * 4), _final("fam", "base", [0.5] * 4)
    fam[3]["status"] = "interrupted"
    assert verdict_table(_table(base, fam)).iloc[0]["n_seeds"] == 3
    tuning = pd.DataFrame(_final("base", None, [1.0])).assign(phase="tuning")
    with pytest.raises(ValueError, match="no final runs"):
        verdict_table(tuning)


def test_tuning_curves_count_failures_as_worst() -> None:
    rows = _final("fam", "base", [0.3, None, 0.1, 0.2])
    table = pd.DataFrame(rows).assign(phase="tuning")
    curve = tuning_curves(table).set_index("k")
    assert curve.loc[4, "expected"] == pytest.approx(0.1) and curve.loc[1, "expected"] == math.inf
    assert list(curve.columns) == ["experiment", "family", "expected", "ci_low", "ci_high", "n_trials"]


# -- a real comparison -----------------------------------------------------------------------------------------
SPACE = """
name: known-answers
families:
  sgd: {params: {base: {value: sgd}, lr: {value: 0.5}}}
  twin_sgd: {params: {base: {value: sgd}, lr: {value: 0.5}, lookahead.k: {value: 3}, lookahead.alpha: {value: 1.0}}}
  anderson_sgd:
    params:
      base: {value: sgd}
      lr: {value: 0.5}
      anderson.history: {value: 5}
      anderson.frequency: {value: 1}
      anderson.averaging: {value: "off"}
  exploding_sgd: {params: {base: {value: sgd}, lr: {value: 1000.0}}}
  slow_sgd: {params: {base: {value: sgd}, lr: {float: [0.01, 0.05], log: true}, budget.warmup_steps: {value: 3}}}
  half_batch_sgd: {params: {base: {value: sgd}, lr: {value: 0.5}, budget.batch_size: {value: 32}}}
"""
TRIALS_PER_FAMILY = 3


def _spec(tmp_path: Path, name: str = "known-answers", families: tuple[str, ...] | None = None, **changes) -> Path:
    """The known-answers comparison, of ``families`` of SPACE only if given (sgd, every other's baseline, always)."""
    space = yaml.safe_load(SPACE)
    if families is not None:
        space["families"] = {f: p for f, p in space["families"].items() if f == "sgd" or f in families}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    baselines = {f: "sgd" for f in space["families"] if f != "sgd"}
    spec = {
        "name": name,
        # full batch, no label noise: gradient descent on a fixed quadratic, deterministic given the seed
        "workload": {"name": "quadratic", "dim": 16, "samples": 64, "noise": 0.0},
        "space": "space.yaml",
        "budget": {"epochs": 30, "batch_size": 64},
        "compare": {
            "tuning": {"trials_per_family": TRIALS_PER_FAMILY},
            # eight seeds: with five rows corrected together a rank test decides from 8 (2/2⁸ × 5 < 5%)
            "final": {"seeds": list(range(1, 9))},
            "baselines": baselines,
        },
        "search": {"max_concurrent": 2, "seed": 0},
        "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 3},
        "device": "cpu",
        "storage": str(tmp_path / "sweeps"),
        **changes,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_a_comparison_gives_the_known_verdicts(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    assert spec.compare.baselines["anderson_sgd"] == "sgd"
    assert spec.compare.fixed_batches == {"half_batch_sgd": 32}
    result = run_sweep(spec)
    assert result["unfinished"] == 0
    runs, history = (t.to_pandas() for t in export_experiments([spec.experiment], spec.tracking_uri))
    tuning, final = runs[runs["phase"] == "tuning"], runs[runs["phase"] == "final"]
    # the equal budget: every study its own trials, each with a completed one, whatever the others learn; a family
    # whose space samples (slow_sgd) is tuned in three independent studies, each with its own sampler seed, a family
    # whose space fixes its configuration in one
    per_family = dict.fromkeys(spec.compare.families, TRIALS_PER_FAMILY) | {"slow_sgd": 3 * TRIALS_PER_FAMILY}
    assert tuning.groupby("family").size().to_dict() == per_family
    slow = tuning[tuning["family"] == "slow_sgd"]
    assert slow.groupby("tuning_replicate").size().to_dict() == dict.fromkeys([0, 1, 2], TRIALS_PER_FAMILY)
    assert slow.groupby("tuning_replicate")["sampler_seed"].nunique().eq(1).all()
    assert slow["sampler_seed"].nunique() == 3
    completed = tuning[tuning["status"] == "completed"].groupby("family").size()
    assert set(completed.index) == set(spec.compare.families) - {"exploding_sgd"}
    # slow_sgd is behind every sgd trial at ASHA's first rung: one shared set of rungs would have stopped it there
    at_rung = history[(history["key"] == "metric") & (history["epoch"] == 2)].merge(tuning, on="run_id")
    slow, fast = (at_rung.loc[at_rung["family"] == f, "value"] for f in ("slow_sgd", "sgd"))
    assert slow.min() > fast.max()
    # every study's choice re-run on the paired seeds: slow_sgd's three, each from its own study's trials
    assert len(final) == (5 + 3) * 8 and set(final["seed"]) == {str(s) for s in range(1, 9)}
    slow_final = final[final["family"] == "slow_sgd"]
    source_replicate = tuning.set_index("run_id")["tuning_replicate"]
    assert slow_final.groupby("tuning_replicate").size().to_dict() == dict.fromkeys([0, 1, 2], 8)
    assert (slow_final["study.source_run"].map(source_replicate) == slow_final["tuning_replicate"]).all()
    # the timing pass: every final run knows what a step of its configuration costs, measured alone
    assert (final["cost_per_step_s"] > 0).all()
    assert final.groupby(["study.source_run", "budget.batch_size"])["cost_per_step_s"].nunique().eq(1).all()
    # a family whose space fixes its batch keeps it; the others run at final.batch_sizes (the budget's)
    assert final.groupby("family")["budget.batch_size"].unique().map(list).to_dict() == {
        **{family: [64] for family in spec.compare.families},
        "half_batch_sgd": [32],
    }
    # a family's own budget keys go with its configuration into the final runs
    assert set(final.groupby("family")["budget.warmup_steps"].first().items()) == {
        ("sgd", 0),
        ("twin_sgd", 0),
        ("anderson_sgd", 0),
        ("exploding_sgd", 0),
        ("slow_sgd", 3),
        ("half_batch_sgd", 0),
    }
    verdict = verdict_table(runs).set_index("family")
    twin = verdict.loc["twin_sgd"]  # Lookahead with α = 1 is SGD: the same run, bit for bit, on every seed
    assert (twin["ratio"], twin["ratio_ci_low"], twin["ratio_ci_high"]) == (1.0, 1.0, 1.0)
    assert twin["verdict"] == "equivalent" and twin["difference"] == 0.0
    anderson = verdict.loc["anderson_sgd"]  # AA on gradient descent of a quadratic: a known acceleration
    assert anderson["verdict"] == "better" and anderson["ratio_ci_high"] < 0.1 and anderson["win_rate"] == 1.0
    exploding = verdict.loc["exploding_sgd"]
    assert exploding["verdict"] == "worse" and exploding["failure_rate"] == 1.0
    assert exploding["tuning_diverged_rate"] == 1.0
    assert verdict.loc["slow_sgd", "verdict"] == "worse" and verdict.loc["slow_sgd", "tuning_trials"] == 9
    half = verdict.loc["half_batch_sgd"]  # at a batch of its own: paired with SGD's seeds at SGD's batch
    assert (half["setting"], half["baseline_setting"], half["n_seeds"]) == (
        "quadratic / batch 32",
        "quadratic / batch 64",
        8,
    )
    assert (verdict.drop(index="half_batch_sgd")["baseline_setting"] == "quadratic / batch 64").all()

    written = build_report([spec.experiment], spec.tracking_uri, tmp_path / "report")
    page = Path(written["html"]).read_text()
    assert page.index("<h2>Verdict</h2>") < page.index("<h2>Overview</h2>")
    assert "anderson_sgd over sgd at quadratic / batch 64: better" in page
    assert "half_batch_sgd over sgd (batch 64) at quadratic / batch 32:" in page
    stored = pd.read_parquet(written["verdict_table"])
    for column in ("family", "baseline", "setting", "n_seeds", "ratio", "ratio_ci_low", "ratio_ci_high", "win_rate",
                   "speedup", "speedup_ci_low", "speedup_ci_high", "failure_rate", "verdict"):  # fmt: skip
        assert column in stored
    assert set(stored["verdict"]) <= {"better", "worse", "equivalent", "inconclusive"}
    for column in ("p_value", "p_adjusted", "detectable_ratio", "difference", "tuning_replicates", "test"):
        assert column in stored
    # at equal compute: the timing pass's cost per step, each row again with both sides at the same training cost
    anderson_row = stored.set_index("family").loc["anderson_sgd"]
    assert anderson_row["cost_ratio"] > 0 and np.isfinite(anderson_row["ratio_equal_time"])
    assert (
        anderson_row["ratio_equal_time_ci_low"]
        <= anderson_row["ratio_equal_time"]
        <= anderson_row["ratio_equal_time_ci_high"]
    )
    assert "× the cost per step" in page and "Tuning protocol: up to 3 independent studies per family" in page
    assert np.isfinite(stored.loc[stored["family"] == "anderson_sgd", "ratio"]).all()


def test_comparison_specs_are_checked_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"compare\.baselines\.twin_sgd.*families sgd, exploding_sgd, slow_sgd, half_batch_sgd all"
    ):
        load_spec(_spec(tmp_path, compare={"tuning": {"trials_per_family": 2}}))
    with pytest.raises(ConfigError, match=r"compare\.baselines\.twin_sgd = 'nope'"):
        load_spec(_spec(tmp_path, compare={"baselines": {"twin_sgd": "nope"}}))
    with pytest.raises(ConfigError, match=r"search\.num_samples.*trials_per_family"):
        load_spec(_spec(tmp_path, search={"num_samples": 4}))
    with pytest.raises(ConfigError, match=r"compare\.final\.seeds"):
        load_spec(_spec(tmp_path, compare={"final": {"seeds": []}}))
    # a family at its own batch (32) needs its baseline at one batch, or at 32 itself
    baselines = {f: "sgd" for f in ("twin_sgd", "anderson_sgd", "exploding_sgd", "slow_sgd", "half_batch_sgd")}
    with pytest.raises(ConfigError, match=r"compare\.final\.batch_sizes = \[16, 64\].*one batch size for sgd"):
        load_spec(_spec(tmp_path, compare={"final": {"batch_sizes": [16, 64]}, "baselines": baselines}))
    load_spec(_spec(tmp_path, compare={"final": {"batch_sizes": [32, 64]}, "baselines": baselines}))
    assert not (tmp_path / "sweeps").exists()  # nothing written


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_comparison_interrupted_mid_tuning_resumes_to_the_same_shape(tmp_path: Path) -> None:
    """Ctrl-C while a later family tunes: finished phases are not re-run, the interrupted one continues, and the
    final runs follow; one child run per trial, nothing RUNNING."""
    # three of the known-answers families, two trials each and two final seeds: the shape, not the answers; the
    # first four tuning trials run, the last two wait at their first evaluation until the gate opens (after Ctrl-C)
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "closed").touch()
    families = ("twin_sgd", "anderson_sgd")
    baselines = dict.fromkeys(families, "sgd")
    compare = {"tuning": {"trials_per_family": 2}, "final": {"seeds": [1, 2]}, "baselines": baselines}
    workload = {"name": "sweep_workloads:GatedQuadratic", "dim": 16, "samples": 64, "noise": 0.0, "gate": str(gate)}
    path = _spec(tmp_path, name="resumed", families=families, compare=compare, workload={**workload, "free": 4})
    command = [sys.executable, "-m", "autoaccel.cli", "compare", str(path), "--out", str(tmp_path / "report")]
    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
    )
    lines = []
    for line in process.stderr:  # the fourth tuning trial ended (of 6, families taking turns)
        lines.append(line)
        if "[tuning 4/" in line:
            break
    while len(list(gate.glob("ticket-*"))) < 6:  # ... and the last two run, held at their first evaluation
        assert process.poll() is None, "".join(lines)
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    _, rest = process.communicate(timeout=300)
    assert process.returncode == 130, "".join(lines) + rest
    hint = next(line for line in rest.splitlines() if line.startswith("interrupted; continue with"))
    assert hint.endswith(f"compare {path} --out {tmp_path / 'report'} --resume"), hint
    # Ctrl-C just after a trial's final report left Ray's STOP for it pending in the snapshot, and the restored trial
    # ended after one report, short of its budget, for good (2 runs in 16 under load): that moment made certain here
    snapshot = max((tmp_path / "sweeps" / "resumed" / "tune" / "tuning").glob("experiment_state-*.json"))
    state = json.loads(snapshot.read_text())
    trials = [json.loads(data) for data, _ in state["trial_data"]]
    running = [t["trial_id"] for t in trials if t["status"] == "RUNNING"]
    assert len(running) == 2, [t["status"] for t in trials]  # the two held at the gate
    state["runner_data"]["_cached_trial_decisions"] = dict.fromkeys(running, "STOP")
    snapshot.write_text(json.dumps(state))
    (gate / "closed").unlink()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "twin_sgd over sgd at gated_quadratic / batch 64: inconclusive" in resumed.stdout
    assert "Failed to fetch metrics" not in resumed.stderr  # Tune's warning about files the sweep does not write
    spec = load_spec(path)
    runs = export_experiments([spec.experiment], spec.tracking_uri)[0].to_pandas()
    assert (runs["mlflow_status"] != "RUNNING").all() and runs["trial_id"].is_unique
    tuning = runs[runs["phase"] == "tuning"]
    assert tuning.groupby("family").size().to_dict() == dict.fromkeys(spec.compare.families, 2)
    assert (runs["phase"] == "final").sum() == 3 * 2
    # each with its whole budget, or stopped by ASHA's own decision: never cut short by the stale STOP
    assert set(runs.loc[runs["trial_id"].isin(running), "status"]) <= {"completed", "stopped_early"}


def _comparison_store(uri: str, name: str, finals: dict[tuple[str, int], list]) -> None:
    """An experiment laid out as a comparison writes it: a parent with its baselines, tuning and final child runs.
    ``finals``: (family, batch size) → final metric per seed (None: diverged)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(name)
    tags = {"autoaccel.role": "sweep", "autoaccel.sweep": name, "metric": "val_mse", "mode": "min"}
    tags |= {"workload_metric": "val_mse", "workload_mode": "min", "target": "0.5", "workload": "toy"}
    parent = client.create_run(experiment, tags={**tags, "baselines": json.dumps({"fam": "base"})})
    for (family, batch), values in finals.items():
        for phase, seeds in (("tuning", [0]), ("final", range(1, len(values) + 1))):
            for seed in seeds:
                value = values[seed - 1] if phase == "final" else values[0]
                status = "completed" if value is not None else "diverged"
                run = client.create_run(
                    experiment,
                    tags={"mlflow.parentRunId": parent.info.run_id, "family": family, "phase": phase,
                          "seed": str(seed), "status": status, "workload": "toy"},
                ).info.run_id  # fmt: skip
                curve = [2.0, 1.0, 1.0e6 if value is None else value]
                metrics = [Metric(k, v, 0, e) for e, v in enumerate(curve, 1) for k in ("metric", "val_mse")]
                metrics += [Metric("time_s", 0.1 * e, 0, e) for e in range(1, 4)]
                metrics += [Metric("step", 10.0 * e, 0, e) for e in range(1, 4)]
                params = [Param("optimizer.base", family), Param("budget.batch_size", str(batch))]
                client.log_batch(run, metrics=metrics, params=params)
                client.set_terminated(run, "FINISHED")
    client.set_terminated(parent.info.run_id, "FINISHED")


def test_several_settings_add_profiles_and_top_k_from_the_final_runs(tmp_path: Path) -> None:
    """Two batch sizes: a verdict row per setting, and profiles and top-k finishes over the settings computed from
    the final runs, a diverged seed counting as a failure (the family that diverges at batch 16 loses there)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _comparison_store(
        uri,
        "two-settings",
        {  # nine seeds: with two rows corrected together, 7 is the fewest a rank test can decide on
            ("base", 16): [0.4, 0.45, 0.42, 0.41, 0.44, 0.43, 0.40, 0.46, 0.42],
            ("fam", 16): [0.3, None, None, 0.31, None, None, 0.32, None, None],
            ("base", 64): [0.6, 0.62, 0.61, 0.63, 0.6, 0.64, 0.62, 0.61, 0.6],
            ("fam", 64): [0.3, 0.32, 0.31, 0.3, 0.33, 0.31, 0.32, 0.3, 0.31],
        },
    )
    written = build_report(["two-settings"], uri, tmp_path / "report", log_artifacts=False)
    verdict = pd.read_parquet(written["verdict_table"]).set_index("setting")
    assert verdict.loc["toy / batch 64", "verdict"] == "better"
    assert verdict.loc["toy / batch 16", "failure_rate"] == pytest.approx(2 / 3)
    assert verdict.loc["toy / batch 16", "verdict"] != "better"
    markdown = Path(written["markdown"]).read_text()
    profiles = markdown.split("## Performance profiles and top-k finishes")[1].split("## ")[0]
    assert "AlgoPerf score" in profiles and "Not shown" not in profiles
    top = re.search(r"\| fam \| ([\d.]+) \| ([\d.]+) \| 2 \|", profiles)  # algorithm, top_1, top_3, n_settings
    assert top and float(top.group(1)) == 50.0  # first at batch 64 only: its median at batch 16 is a failure


def test_a_report_from_exported_parquet_is_the_stores_report_offline(tmp_path: Path) -> None:
    """`autoaccel report --parquet FOLDER ...`: the exported tables of two comparisons, each in its own folder (as
    docs/evidence/ keeps them), give the same verdict as the store they came from, with no store; a folder without
    the tables or an experiment not in them is one clear error (exit 2)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _comparison_store(uri, "first", {("base", 16): [0.4, 0.45, 0.42], ("fam", 16): [0.3, 0.31, 0.33]})
    _comparison_store(uri, "second", {("base", 64): [0.6, 0.62, 0.61], ("fam", 64): [0.7, 0.72, None]})
    online = build_report(["first", "second"], uri, tmp_path / "online", log_artifacts=False)
    for name in ("first", "second"):
        assert main(["export", "--experiment", name, "--tracking-uri", uri, "--out", str(tmp_path / name)]) == 0
    (tmp_path / "mlflow.db").unlink()  # offline: the store is gone
    folders = ["--parquet", str(tmp_path / "first"), "--parquet", str(tmp_path / "second")]
    assert main(["report", *folders, "--out", str(tmp_path / "offline")]) == 0
    expected, got = (pd.read_parquet(Path(d) / "verdict.parquet") for d in (online["folder"], tmp_path / "offline"))
    pd.testing.assert_frame_equal(got, expected)
    assert set(got["experiment"]) == {"first", "second"} and len(got) == 2
    markdown = (tmp_path / "offline" / "report.md").read_text()
    assert "autoaccel report --parquet" in markdown  # the reproduce section says how it was made
    assert main(["report", *folders, "--experiment", "second", "--out", str(tmp_path / "one")]) == 0
    assert set(pd.read_parquet(tmp_path / "one" / "verdict.parquet")["experiment"]) == {"second"}
    twice = ["--parquet", str(tmp_path / "first"), *folders]  # a folder given twice: each run counted once
    assert main(["report", *twice, "--out", str(tmp_path / "twice")]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "twice" / "verdict.parquet"), expected)
    into_input = ["--parquet", str(tmp_path / "first"), "--out", str(tmp_path / "first")]
    for bad in (["--parquet", str(tmp_path)], [*folders, "--experiment", "third"], folders, into_input):
        with pytest.raises(SystemExit) as error:
            sys.exit(
                main(["report", *bad, *(["--out", str(tmp_path / "x")] if bad not in (folders, into_input) else [])])
            )
        assert error.value.code == 2, bad


def test_comparisons_reported_together_keep_their_own_pairs_direction_and_configurations() -> None:
    """Two comparisons in one table (`autoaccel report --experiment A --experiment B`): one minimises an error, the
    other maximises an accuracy on the same workload and batch size, and each family's final runs name the tuning
    run they re-run. Each comparison is judged on its own: its direction, its seeds, its configurations."""
    errors = [0.5, 0.6, 0.55, 0.52, 0.58, 0.51, 0.57, 0.53]
    error = _table(_final("base", None, errors), _final("fam", "base", [v - 0.1 for v in errors])).assign(
        experiment="errors"
    )
    accuracies = [0.80, 0.82, 0.81, 0.79, 0.83, 0.80, 0.78, 0.81]
    accuracy = _table(
        _final("base", None, accuracies, mode="max"), _final("fam", "base", [v + 0.1 for v in accuracies], mode="max")
    ).assign(experiment="accuracies")
    both = pd.concat([error, accuracy], ignore_index=True)
    both["study.source_run"] = both["experiment"] + "-" + both["family"]  # one tuning run per family and experiment
    table = verdict_table(both).set_index("experiment")
    assert len(table) == 2 and set(table["verdict"]) == {"better"} and (table["win_rate"] == 1.0).all()
    assert table.loc["accuracies", "mode"] == "max" and table.loc["errors", "mode"] == "min"
    assert (table["n_seeds"] == 8).all()  # seed 1 of one comparison is not paired with seed 1 of the other
    assert (table["p_adjusted"] == 2 * table["p_value"]).all()  # both rows corrected together (Holm over 2 rows)


def test_exports_that_disagree_about_a_run_are_refused(tmp_path: Path) -> None:
    """Two exports of one comparison at different moments hold the same run with different rows: no one run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _comparison_store(uri, "first", {("base", 16): [0.4, 0.45, 0.42], ("fam", 16): [0.3, 0.31, 0.33]})
    assert main(["export", "--experiment", "first", "--tracking-uri", uri, "--out", str(tmp_path / "old")]) == 0
    table = pd.read_parquet(tmp_path / "old" / "runs.parquet")
    table.loc[0, "status"] = "interrupted"  # what an export taken while it still ran would hold
    (tmp_path / "new").mkdir()
    table.to_parquet(tmp_path / "new" / "runs.parquet")
    shutil.copy(tmp_path / "old" / "history.parquet", tmp_path / "new" / "history.parquet")
    with pytest.raises(ValueError, match="differ between folders"):
        read_parquet([tmp_path / "old", tmp_path / "new"])
