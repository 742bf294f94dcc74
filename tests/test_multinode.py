"""Sweeps on a real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): a head and two worker
nodes that declare fake GPUs; losing a node mid-sweep; tracking through a real ``mlflow server``.

Run alone with ``pytest -m cluster``; they also run in ``make test`` (about a minute each), except the lost node and
the 2-worker trial spread over two nodes, which are in the opt-in campaign (``make faults``).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.cluster

TESTS = str(Path(__file__).resolve().parent)
SPACE = "params:\n  base: {value: sgd}\n  lr: {float: [1.0e-2, 1.0e-1], log: true}\n  momentum: {float: [0.0, 0.9]}\n"


@pytest.fixture
def cluster() -> Any:
    """A head without GPUs and two worker nodes with one (fake) GPU each; the driver joins it."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [nodes.add_node(num_cpus=2, num_gpus=1, resources={f"worker{i}": 1}) for i in range(2)]
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, log_to_driver=False, logging_level="ERROR")
    yield nodes, workers
    ray.shutdown()
    nodes.shutdown()


def _spec(tmp_path: Path, name: str, uri: str | None = None, **changes: Any) -> Path:
    (tmp_path / "space.yaml").write_text(SPACE)
    spec = {
        "name": name,
        "workload": {"name": "sweep_workloads:SlowQuadratic", "samples": 64, "delay": 0.5},
        "space": str(tmp_path / "space.yaml"),
        "budget": {"epochs": 4, "batch_size": 16},
        "search": {"sampler": "random", "num_samples": 4, "max_concurrent": 4, "seed": 0},
        "scheduler": {"type": "fifo"},
        "resources": {"cpu": 1, "gpu": 0.5},
        "failure": {"max_failures": 2},
        "storage": str(tmp_path / "shared"),  # one file system here; on a real cluster shared storage
        **({"tracking": {"uri": uri}} if uri else {}),
        **changes,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _children(uri: str, experiment: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _history(uri: str, run_id: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    return [m.step for m in MlflowClient(uri).get_metric_history(run_id, "train_loss")]


@pytest.mark.slow
def test_fractional_gpu_trials_run_on_the_gpu_nodes_two_per_node(cluster: Any, tmp_path: Path) -> None:
    from autoaccel.sweep import run_sweep

    _, workers = cluster
    result = run_sweep(_spec(tmp_path, "packed"), log=open(os.devnull, "w"))  # noqa: SIM115
    children = _children(result["tracking_uri"], "packed")
    assert len(children) == 4 and {c.data.tags["status"] for c in children} == {"completed"}
    placed = [c.data.tags["node"] for c in children]
    assert set(placed) == {w.node_id for w in workers}  # never the head, which has no GPU
    assert sorted(placed.count(w.node_id) for w in workers) == [2, 2]  # gpu: 0.5 packs two trials per device
    # the only MLflow store is the driver's: no trial wrote a tracking file anywhere under the sweep's storage
    stores = [p for p in (tmp_path / "shared").rglob("*") if p.name.startswith("mlflow.db")]
    assert {p.parent for p in stores} == {Path(result["folder"])}
    assert not list((tmp_path / "shared").rglob("mlruns"))


@pytest.mark.campaign
def test_losing_a_worker_node_mid_sweep(cluster: Any, tmp_path: Path) -> None:
    from optuna.trial import TrialState

    from autoaccel.sweep import load_spec, run_sweep

    nodes, workers = cluster
    # a checkpoint every epoch, so that the trials on the lost node have one to continue from
    failure = {"max_failures": 2, "checkpoint_every_s": 0}
    spec = load_spec(_spec(tmp_path, "lossy", budget={"epochs": 6, "batch_size": 16}, failure=failure))
    db = spec.folder / "mlflow.db"

    def remove_when_training() -> None:
        """Remove the node once a trial on it is mid-run with a checkpoint (2 to 5 of 6 epochs logged): whatever
        the order the trials started in, one is cut there and continues elsewhere from its checkpoint."""
        import sqlite3

        # each trial's epochs logged, for the trials whose run names the first worker node (tagged at its first epoch)
        query = (
            "select max(m.step) from metrics m join tags t on t.run_uuid = m.run_uuid"
            " where m.key = 'train_loss' and t.key = 'node' and t.value = ? group by m.run_uuid"
        )
        while not swept.is_set():  # however long the trials take to get there
            try:
                with sqlite3.connect(db, timeout=1) as connection:
                    logged = [row[0] for row in connection.execute(query, (workers[0].node_id,))]
            except sqlite3.Error:
                logged = []
            if any(2 <= epochs < 6 for epochs in logged):
                nodes.remove_node(workers[0])
                return
            time.sleep(0.1)

    swept = threading.Event()
    killer = threading.Thread(target=remove_when_training)
    killer.start()
    try:
        result = run_sweep(spec, log=open(os.devnull, "w"))  # noqa: SIM115
    finally:
        swept.set()
        killer.join()
    children = _children(result["tracking_uri"], "lossy")
    assert len(children) == 4 == len({c.data.tags["trial_id"] for c in children})  # one child run per trial
    assert {c.data.tags["status"] for c in children} == {"completed"}
    for child in children:
        assert child.info.status == "FINISHED"
        assert _history(result["tracking_uri"], child.info.run_id) == [1, 2, 3, 4, 5, 6]  # gap-free, no repeats
    # the trials the loss cut (a fast one may have finished on the lost node first) ran last on the surviving node,
    # and its run says so, also for one lost between its final report and its end (it only replays there)
    moved = [c for c in children if int(c.data.tags["crashes"]) > 0]
    assert moved and {c.data.tags["node"] for c in moved} == {workers[1].node_id}
    assert result["resumed_from_checkpoint"] >= 1  # the moved trials continued from their checkpoints
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(
        study_name="lossy", storage=JournalStorage(JournalFileBackend(str(spec.folder / "optuna.journal")))
    )
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4  # every trial once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tracking_through_a_real_mlflow_server(cluster: Any, tmp_path: Path) -> None:
    from autoaccel.cluster.launch import tracking_serve_command
    from autoaccel.sweep import run_sweep

    port = _free_port()
    # the command `autoaccel tracking serve` runs: the store reaches mlflow through the environment only
    argv, env = tracking_serve_command(f"sqlite:///{tmp_path / 'server.db'}", "127.0.0.1", port, str(tmp_path / "a"))
    server = subprocess.Popen(
        [sys.executable, "-m", *argv, "--workers", "1"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        while server.poll() is None:  # up, however long it takes to start (pytest-timeout: a hang)
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        assert server.poll() is None, "the tracking server exited"
        # credentials in the URI (as behind an authenticating proxy; this server ignores them): never shown
        secret_uri = f"http://sweeper:s3cr3t-pw@127.0.0.1:{port}"
        search = {"sampler": "random", "num_samples": 2, "max_concurrent": 2, "seed": 0}
        spec = _spec(tmp_path, "served", uri=secret_uri, search=search)
        log = io.StringIO()
        result = run_sweep(spec, log=log)
        children = _children(uri, "served")
        assert len(children) == 2 and {c.data.tags["status"] for c in children} == {"completed"}
        assert all(_history(uri, c.info.run_id) == [1, 2, 3, 4] for c in children)
        assert result["tracking_uri"] == secret_uri and not (Path(result["folder"]) / "mlflow.db").exists()
        assert (tmp_path / "server.db").is_file()  # the server took its store from MLFLOW_BACKEND_STORE_URI
        # the password is in no printed line, no param of the parent run, no attached spec, no report
        from mlflow.tracking import MlflowClient

        from autoaccel.analysis import build_report

        client = MlflowClient(uri)
        parent = client.get_run(result["parent_run_id"])
        written = build_report(["served"], secret_uri, tmp_path / "report")
        spec_copy = Path(client.download_artifacts(parent.info.run_id, "spec.yaml", str(tmp_path)))
        shown = [log.getvalue(), *parent.data.params.values(), spec_copy.read_text()]
        shown += [Path(written["html"]).read_text(), Path(written["markdown"]).read_text()]
        assert "sweeper:***@" in log.getvalue() and all("s3cr3t" not in text for text in shown)
        assert "MLFLOW_TRACKING_PASSWORD" in Path(written["markdown"]).read_text()  # how to give it back
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.campaign
def test_a_two_worker_trial_spreads_over_two_nodes(cluster: Any, tmp_path: Path) -> None:
    """2 workers × 2 CPUs: no node holds both, so Ray Train places one on each worker node; they train as one
    gloo group across the nodes, and the run names both. (In the campaign, `make faults`: a Ray Train trial on a fresh
    three-node cluster takes about a minute on 2 cores.)"""
    from autoaccel.sweep import run_sweep

    _, workers = cluster
    search = {"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0}
    spec = _spec(
        tmp_path,
        "spread",
        workload={"name": "quadratic", "samples": 64},
        search=search,
        resources={"workers": 2, "cpu": 2, "gpu": 0},
    )
    result = run_sweep(spec, log=open(os.devnull, "w"))  # noqa: SIM115
    (child,) = _children(result["tracking_uri"], "spread")
    assert child.data.tags["status"] == "completed" and child.data.tags["world_size"] == "2"
    assert set(child.data.tags["node"].split(",")) == {w.node_id for w in workers}
    assert _history(result["tracking_uri"], child.info.run_id) == [1, 2, 3, 4]
