"""A sweep whose trials are 2-worker data-parallel jobs (Ray Train inside Ray Tune, gloo on 2 CPU processes), on the
local Ray the sweep starts itself, recorded in a real MLflow store (no mocks)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

TESTS = str(Path(__file__).resolve().parent)
BASE_SGD = str(Path(__file__).resolve().parent.parent / "search_spaces" / "base_sgd.yaml")


def _space(tmp_path: Path) -> Path:
    lr = {"float": [1.0e-4, 1.0e-1], "log": True}
    plain = {"include": [BASE_SGD], "params": {"lr": lr, "momentum": {"value": 0.0}, "_decay": {"value": False}}}
    adascale = {  # S = 2 workers × 1 micro-batch: the gain comes from the two workers' gradients alone
        "include": [BASE_SGD],
        "params": {**plain["params"], "adascale.num_gradients_to_accumulate": {"value": 1}},
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"name": "workers", "families": {"sgd": plain, "adascale_sgd": adascale}}))
    return path


@pytest.fixture()
def own_ray() -> Any:
    """No Ray running: the sweep starts its own (with the dashboard that multi-worker trials need), as it would
    from the command line; it is left up afterwards, so that the test can read its resources."""
    import ray

    if ray.is_initialized():  # one an earlier test on this worker left
        ray.shutdown()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))
    yield ray
    ray.shutdown()
    os.environ.pop("RAY_API_SERVER_ADDRESS", None)


@pytest.mark.slow
def test_a_sweep_of_two_worker_trials(own_ray: Any, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from autoaccel.sweep import run_sweep

    spec = {
        "name": "workers",
        "workload": {"name": "quadratic", "samples": 256},
        "space": str(_space(tmp_path)),
        "budget": {"epochs": 3, "batch_size": 16},
        "search": {"sampler": "random", "num_samples": 3, "max_concurrent": 3, "seed": 2},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"workers": 2, "cpu": 1},  # a trial holds both CPUs: one at a time, whatever the spec says
        # a leaked worker group would starve the next trial: it then fails in 60 s instead of hanging
        "failure": {"max_failures": 1, "worker_start_timeout_s": 60},
        "storage": str(tmp_path / "sweeps"),
    }
    path = tmp_path / "workers.yaml"
    path.write_text(yaml.safe_dump(spec))
    log = io.StringIO()
    run_sweep(path, log=log)
    assert "1 trial(s) at a time, not 3: each holds 2 workers (2 CPU, 0 GPU in all)" in log.getvalue()

    ray = own_ray
    client = MlflowClient(f"sqlite:///{tmp_path / 'sweeps' / 'workers' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("workers")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    runs.sort(key=lambda r: r.info.start_time)
    statuses = [r.data.tags["status"] for r in runs]
    assert len(runs) == 3 and set(statuses) <= {"completed", "stopped_early"}, statuses
    assert {r.data.tags["world_size"] for r in runs} == {"2"}  # measured by the trials' process group
    # ASHA stopped a 2-worker trial, and a trial started after it still got its workers
    stopped = [i for i, s in enumerate(statuses) if s == "stopped_early"]
    assert stopped and stopped[0] < len(runs) - 1, statuses
    for run in runs:  # every epoch once
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert epochs == list(range(1, int(run.data.tags["epochs"]) + 1))
    gains = [
        m.value
        for r in runs
        if r.data.tags["family"] == "adascale_sgd"
        for m in client.get_metric_history(r.info.run_id, "adascale_gain")
    ]
    assert gains and all(1.0 <= g <= 2.0 for g in gains) and max(gains) > 1.0
    # the export keeps the world size, and the report's AdaScale table counts S = 2 workers × 1 micro-batch
    from autoaccel.analysis import adascale_by_scale, export_experiments

    table, _ = export_experiments(["workers"], client.tracking_uri)
    exported = table.to_pandas()
    assert set(exported["world_size"]) == {2}
    scales = adascale_by_scale(exported)
    assert list(scales["S"]) == [2.0] and list(scales["workers"]) == [2]
    assert scales["runs"].iloc[0] == sum(r.data.tags["family"] == "adascale_sgd" for r in runs)
    # every trial's workers were given back: the cluster's free resources return to what it has
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]
    from ray.util import placement_group_table

    assert {pg["state"] for pg in placement_group_table().values()} <= {"REMOVED"}
