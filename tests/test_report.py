"""``autoaccel report`` on hand-made MLflow experiments: complete, partial, single-trial and empty ones."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from autoaccel.analysis import SECTIONS, build_report
from autoaccel.cli import main


def _sweep(uri: str, name: str, trials: list[dict], running: bool = False) -> None:
    """An experiment laid out as `autoaccel sweep` writes it: a parent run and one child run per trial."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(name)
    parent = client.create_run(
        experiment,
        tags={
            "autoaccel.role": "sweep",
            "autoaccel.sweep": name,
            "metric": "val_mse",
            "mode": "min",
            "workload_metric": "val_mse",
            "workload_mode": "min",
            "target": "0.5",
            "workload": "toy",
        },
    )
    for i, trial in enumerate(trials):
        tags = {
            "mlflow.parentRunId": parent.info.run_id,
            "trial_id": f"t{i}",
            "workload": "toy",
            "family": trial["family"],
            "technique": trial["family"],
            "seed": str(trial.get("seed", 0)),
            "status": trial["status"],
            "epochs": str(len(trial["curve"])),
        }
        run = client.create_run(experiment, tags=tags).info.run_id
        params = {
            "optimizer.base": trial["family"].split("_")[-1],
            "optimizer.lr": trial["lr"],
            "budget.epochs": 5,
            "budget.batch_size": trial.get("batch", 32),
        }
        if "k" in trial:
            params["optimizer.lookahead.k"] = trial["k"]
        metrics = []
        for epoch, value in enumerate(trial["curve"], start=1):
            for key, v in (
                ("metric", value),
                ("val_mse", value),
                ("train_loss", value),
                ("time_s", epoch * 0.1),
                ("step", epoch * 10),
            ):
                metrics.append(Metric(key, v, 0, epoch))
        client.log_batch(
            run, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()], tags=[RunTag("x", "y")]
        )
        if trial["status"] != "running":
            client.set_terminated(run, "FINISHED")
    if not running:
        client.set_terminated(parent.info.run_id, "FINISHED")


def _trials(n: int) -> list[dict]:
    trials = []
    for i in range(n):
        lr = 10 ** (-3 + 2 * i / max(n - 1, 1))
        final = (math.log10(lr) + 2) ** 2 + 0.1
        family = ("sgd", "lookahead_sgd")[i % 2]
        trial = {
            "family": family,
            "lr": lr,
            "status": "completed",
            "curve": [1.0, 0.8, final + 0.2, final],
            "seed": i % 2,
            "batch": (16, 64)[i % 3 == 0],
        }
        if family == "lookahead_sgd":
            trial["k"] = 3 + i % 5
        trials.append(trial)
    trials.append({"family": "sgd", "lr": 5.0, "status": "diverged", "curve": [1.0e6]})
    trials.append({"family": "lookahead_sgd", "lr": 0.2, "k": 5, "status": "stopped_early", "curve": [1.0, 0.9]})
    return trials


def test_report_has_every_section_with_tables_and_images(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _sweep(uri, "full", _trials(16))
    written = build_report(["full"], uri, tmp_path / "out")
    page = Path(written["html"]).read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 5  # plots embedded
    assert "<script" not in page and "http" not in page.split("Reproduce")[0]  # readable offline
    markdown = Path(written["markdown"]).read_text()
    assert "| diverged |" in markdown or "diverged" in markdown
    assert (tmp_path / "out" / "runs.parquet").exists() and (tmp_path / "out" / "history.parquet").exists()
    assert written["runs"] == 18
    # the lr the synthetic objective cares about is found most important over all trials
    overall = re.search(r"\| \(all\) \| (\S+) \|", markdown)
    assert overall and overall.group(1) == "optimizer.lr"
    from mlflow.tracking import MlflowClient

    artifacts = [a.path for a in MlflowClient(uri).list_artifacts(written["parent_run_id"], "report")]
    assert "report/index.html" in artifacts and "report/runs.parquet" in artifacts


def test_partial_and_single_trial_sweeps_explain_what_is_missing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    running = [{"family": "sgd", "lr": 0.01, "status": "running", "curve": [1.0, 0.9]}]
    _sweep(uri, "partial", running, running=True)
    page = Path(build_report(["partial"], uri, tmp_path / "partial")["html"]).read_text()
    assert "no completed trial yet" in page and "Not shown" in page
    _sweep(uri, "single", [{"family": "sgd", "lr": 0.01, "status": "completed", "curve": [1.0, 0.4]}])
    page = Path(build_report(["single"], uri, tmp_path / "single")["html"]).read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "importance needs ≥ 10 completed trials with varied hyperparameters (have 1" in page


def test_empty_or_unknown_experiment_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("empty")
    assert main(["report", "--experiment", "empty", "--tracking-uri", uri, "--out", str(tmp_path / "r")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["report", "--experiment", "nope", "--tracking-uri", uri, "--out", str(tmp_path / "r")]) == 2
    assert "nope" in capsys.readouterr().err


def test_adascale_runs_are_grouped_by_their_scale() -> None:
    """S = the scale a run set, else workers × accumulation (each 1 where not recorded); a failed run counts, with
    no value; runs of other techniques are not in it."""
    import numpy as np
    import pandas as pd

    from autoaccel.analysis import by_scale

    runs = pd.DataFrame(
        {
            "technique": ["adascale+sgd", "adascale+sgd", "sgd", "adascale+sgd", "adascale+sgd"],
            "workload": ["q"] * 5,
            "optimizer.adascale.num_gradients_to_accumulate": [np.nan, 4, np.nan, 2, 1],
            "optimizer.adascale.scale": [np.nan, np.nan, np.nan, np.nan, 8.0],
            "world_size": [2, 1, 1, np.nan, 2],
            "status": ["completed", "errored", "completed", "completed", "completed"],
            "final_metric": [0.1, np.nan, 0.3, 0.2, 0.4],
            "final_adascale_gain": [1.5, np.nan, np.nan, 1.2, 3.0],
        }
    )
    table = by_scale(runs).set_index(["S", "workers"])
    assert sorted(table.index) == [(2.0, 1), (2.0, 2), (4.0, 1), (8.0, 2)]
    assert table.loc[(2.0, 2), "median final gain"] == 1.5 and table.loc[(2.0, 1), "median final metric"] == 0.2
    assert table.loc[(4.0, 1), "runs"] == 1 and table.loc[(4.0, 1), "completed"] == 0
    assert np.isnan(table.loc[(4.0, 1), "median final metric"])
    assert by_scale(runs[runs["technique"] == "sgd"]) is None
