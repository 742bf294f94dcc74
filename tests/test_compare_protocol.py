"""A comparison's default protocol on a family whose advantage shows only late: every tuning trial trains its whole
budget, so the configuration that starts slowly and ends best is the one chosen, in every study that drew it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoaccel.analysis import export_experiments, verdict_table
from autoaccel.sweep import load_spec, run_sweep

# Gradient descent on a noiseless quadratic, one full-batch step per epoch. late_sgd either decays its rate fast
# (lr 0.5 × 0.7^epoch: the sum of its rates is 1.7, most of it in the first epochs: ahead of SGD at epoch 2, behind
# it at the end) or warms up over 20 of its 30 steps (lr sum 10: far behind at epoch 2, far ahead at the end). SGD at
# lr 0.1 has a rate sum of 3 at the end and 0.2 at epoch 2: only the slow starter beats it.
SPACE = """
name: late-bloomer
families:
  sgd: {params: {base: {value: sgd}, lr: {value: 0.1}}}
  late_sgd:
    params:
      base: {value: sgd}
      lr: {value: 0.5}
      budget.schedule: {choice: [exponential, constant]}
      budget.gamma: {value: 0.7, when: {budget.schedule: exponential}}
      budget.warmup_steps: {value: 20, when: {budget.schedule: constant}}
"""


@pytest.mark.slow
def test_the_default_protocol_finds_a_slow_starter(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)
    spec = {
        "name": "late-bloomer",
        "workload": {"name": "quadratic", "dim": 16, "samples": 64, "noise": 0.0},
        "space": "space.yaml",
        "budget": {"epochs": 30, "batch_size": 64},
        "compare": {
            "tuning": {"trials_per_family": 3, "replicates": 2},
            "final": {"seeds": [1, 2, 3, 4, 5, 6]},
            "baselines": {"late_sgd": "sgd"},  # it trains plain SGD: it would be a baseline itself
        },
        "search": {"max_concurrent": 2, "seed": 0},  # no scheduler: the comparison's default
        "device": "cpu",
        "storage": str(tmp_path / "sweeps"),
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(path)
    assert loaded.scheduler == {"type": "fifo"}
    assert run_sweep(loaded)["unfinished"] == 0
    runs, history = (t.to_pandas() for t in export_experiments([loaded.experiment], loaded.tracking_uri))
    tuning = runs[runs["phase"] == "tuning"]
    assert (tuning["status"] == "completed").all() and (tuning["epochs"] == 30).all()  # none judged early
    late = tuning[tuning["family"] == "late_sgd"]
    # the premise: at epoch 2 every decaying trial is ahead of every warming-up one, at the end behind it
    at_two = history[(history["key"] == "metric") & (history["epoch"] == 2)].set_index("run_id")["value"]
    decaying, warming = (late[late["budget.schedule"] == s] for s in ("exponential", "constant"))
    assert len(decaying) and len(warming)
    assert at_two[decaying["run_id"]].max() < at_two[warming["run_id"]].min()
    assert decaying["final_metric"].min() > warming["final_metric"].max()
    # every study that drew the slow starter chose it
    final = runs[(runs["phase"] == "final") & (runs["family"] == "late_sgd")]
    chosen = final.groupby("tuning_replicate")["budget.schedule"].unique().map(list).to_dict()
    drew = late.groupby("tuning_replicate")["budget.schedule"].unique().map(set).to_dict()
    assert chosen == {r: ["constant" if "constant" in s else "exponential"] for r, s in drew.items()}
    row = verdict_table(runs).set_index("family").loc["late_sgd"]
    assert row["verdict"] == "better" and row["ratio_ci_high"] < 1
