"""Sweeps whose trials are 2-worker data-parallel jobs (Ray Train inside Ray Tune, gloo on 2 CPU processes), on the
local Ray the sweep starts itself, recorded in a real MLflow store (no mocks).

Ray Train's worker-group start makes each such trial cost seconds (docs/performance.md), so `make test` runs one;
the 3-trial ASHA sweep (a stopped 2-worker trial, then the next one starting) joins the opt-in campaign (`make
faults`)."""

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


def _space(tmp_path: Path, families: tuple[str, ...]) -> Path:
    lr = {"float": [1.0e-4, 1.0e-1], "log": True}
    plain = {"include": [BASE_SGD], "params": {"lr": lr, "momentum": {"value": 0.0}, "_decay": {"value": False}}}
    adascale = {  # S = 2 workers × 1 micro-batch: the gain comes from the two workers' gradients alone
        "include": [BASE_SGD],
        "params": {**plain["params"], "adascale.num_gradients_to_accumulate": {"value": 1}},
    }
    path = tmp_path / "space.yaml"
    spaces = {"sgd": plain, "adascale_sgd": adascale}
    path.write_text(yaml.safe_dump({"name": "workers", "families": {f: spaces[f] for f in families}}))
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


def _sweep(tmp_path: Path, families: tuple[str, ...], samples: int, scheduler: dict[str, Any]) -> tuple[str, list]:
    """Run a local sweep of ``samples`` 2-worker trials (3 allowed at a time, 1 possible): its log, and its child
    runs in the order they started."""
    from mlflow.tracking import MlflowClient

    from autoaccel.sweep import run_sweep

    spec = {
        "name": "workers",
        "workload": {"name": "quadratic", "samples": 256},
        "space": str(_space(tmp_path, families)),
        "budget": {"epochs": 3, "batch_size": 16},
        "search": {"sampler": "random", "num_samples": samples, "max_concurrent": 3, "seed": 2},
        "scheduler": scheduler,
        "resources": {"workers": 2, "cpu": 1},  # a trial holds both CPUs: one at a time, whatever the spec says
        # a leaked worker group would starve the next trial: it then fails in 60 s instead of hanging
        "failure": {"max_failures": 1, "worker_start_timeout_s": 60},
        "storage": str(tmp_path / "sweeps"),
    }
    path = tmp_path / "workers.yaml"
    path.write_text(yaml.safe_dump(spec))
    log = io.StringIO()
    run_sweep(path, log=log)
    client = MlflowClient(f"sqlite:///{tmp_path / 'sweeps' / 'workers' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("workers")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    runs.sort(key=lambda r: r.info.start_time)
    for run in runs:  # every epoch once
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert epochs == list(range(1, int(run.data.tags["epochs"]) + 1))
    assert {r.data.tags["world_size"] for r in runs} == {"2"}  # measured by the trials' process group
    return log.getvalue(), runs


def _assert_resources_back(ray: Any) -> None:
    """Every trial's workers were given back: the cluster's free resources return to what it has."""
    # Ray's placement-group cleaner polls: waited for, however long it takes on a loaded machine (never given back,
    # the test ends at pytest-timeout's limit)
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        time.sleep(0.5)
    from ray.util import placement_group_table

    assert {pg["state"] for pg in placement_group_table().values()} <= {"REMOVED"}


@pytest.mark.slow
def test_a_two_worker_adascale_trial_in_a_sweep(own_ray: Any, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    log, runs = _sweep(tmp_path, ("adascale_sgd",), samples=1, scheduler={"type": "fifo"})
    assert "1 trial(s) at a time, not 3: each holds 2 workers (2 CPU, 0 GPU in all)" in log
    (run,) = runs
    assert run.data.tags["status"] == "completed"
    # S = 2 workers × 1 micro-batch: the gain from the two workers' gradients alone
    client = MlflowClient(f"sqlite:///{tmp_path / 'sweeps' / 'workers' / 'mlflow.db'}")
    gains = [m.value for m in client.get_metric_history(run.info.run_id, "adascale_gain")]
    assert gains and all(1.0 <= g <= 2.0 for g in gains) and max(gains) > 1.0
    # the export keeps the world size, and the report's AdaScale table counts S = 2 workers × 1 micro-batch
    from autoaccel.analysis import by_scale, export_experiments

    table, _ = export_experiments(["workers"], client.tracking_uri)
    exported = table.to_pandas()
    assert set(exported["world_size"]) == {2}
    scales = by_scale(exported)
    assert list(scales["S"]) == [2.0] and list(scales["workers"]) == [2] and list(scales["runs"]) == [1]
    _assert_resources_back(own_ray)


@pytest.mark.campaign
def test_asha_stops_a_two_worker_trial_and_the_next_still_starts(own_ray: Any, tmp_path: Path) -> None:
    scheduler = {"type": "asha", "grace_period": 1, "reduction_factor": 2}
    _, runs = _sweep(tmp_path, ("sgd", "adascale_sgd"), samples=3, scheduler=scheduler)
    statuses = [r.data.tags["status"] for r in runs]
    assert len(runs) == 3 and set(statuses) <= {"completed", "stopped_early"}, statuses
    # ASHA stopped a 2-worker trial, and a trial started after it still got its workers
    stopped = [i for i, s in enumerate(statuses) if s == "stopped_early"]
    assert stopped and stopped[0] < len(runs) - 1, statuses
    _assert_resources_back(own_ray)
