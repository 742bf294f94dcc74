"""Sweeps end to end on real Ray, a real Optuna journal and a real MLflow SQLite store (no mocks)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TESTS = str(Path(__file__).resolve().parent)
QUICK = str(ROOT / "search_spaces" / "quickstart.yaml")


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow database for the in-process sweeps (each its own experiment): its schema is created once."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def ray_session(shared_store: str) -> Any:
    """One small local Ray for this module; workers import the tests' own workloads through PYTHONPATH."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():  # one an earlier test on this worker left (an in-process sweep's own)
        ray.shutdown()
    # address="local": never the cluster another test (test_multinode, on the other xdist worker) has running
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield shared_store
    ray.shutdown()


def _spec(tmp_path: Path, store: str | None = None, **changes: Any) -> Path:
    spec: dict[str, Any] = {
        "name": "t",
        "workload": {"name": "quadratic", "samples": 64},
        "space": QUICK,
        "budget": {"epochs": 4, "batch_size": 16},
        "search": {"sampler": "random", "num_samples": 6, "max_concurrent": 2, "seed": 0},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "failure": {"max_failures": 0},
        "storage": str(tmp_path / "sweeps"),
        **({"tracking": {"uri": store}} if store else {}),
        **changes,
    }
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _children(uri: str, experiment: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]


def _epochs_logged(uri: str, run_id: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    return [m.step for m in MlflowClient(uri).get_metric_history(run_id, "train_loss")]


def _study(folder: Path, name: str) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    )


def test_sweep_with_asha_records_every_trial_truthfully(ray_session: Any, tmp_path: Path) -> None:
    from optuna.trial import TrialState

    from autoaccel.sweep import run_sweep

    result = run_sweep(_spec(tmp_path, ray_session), log=open(os.devnull, "w"))  # noqa: SIM115
    children = _children(result["tracking_uri"], "t")
    assert len(children) == 6 == len({c.data.tags["trial_id"] for c in children})
    statuses = {c.data.tags["trial_id"]: c.data.tags["status"] for c in children}
    assert set(statuses.values()) <= {"completed", "stopped_early"} and "stopped_early" in statuses.values()
    for child in children:
        assert child.info.status == "FINISHED"
        epochs = int(child.data.tags["epochs"])
        assert _epochs_logged(result["tracking_uri"], child.info.run_id) == list(range(1, epochs + 1))
        assert (epochs == 4) == (child.data.tags["status"] == "completed")  # the budget each reached
        assert child.data.params["optimizer.base"] in ("sgd", "adam", "demon_adam")
    study = _study(Path(result["folder"]), "t")
    assert len(study.trials) == 6
    for trial in study.trials:  # stopped trials are PRUNED with their intermediate values, not COMPLETE
        status = trial.user_attrs["status"]
        expected = TrialState.PRUNED if status in ("stopped_early", "diverged") else TrialState.COMPLETE
        assert trial.state == expected and (trial.intermediate_values or status == "diverged")
        # every epoch reached, although a short trial reports only at ASHA's rungs and its end (several per report)
        assert sorted(trial.intermediate_values) == list(range(1, max(trial.intermediate_values, default=0) + 1))
    assert sorted(t.user_attrs["status"] for t in study.trials) == sorted(statuses.values())
    assert result["statuses"] == {s: list(statuses.values()).count(s) for s in set(statuses.values())}
    assert result["best"] and result["best"][0]["value"] <= min(r["value"] for r in result["best"])
    asha = json.loads((Path(result["folder"]) / "asha.json").read_text())
    assert asha["rungs"][-1]["recorded"]  # the rungs persisted, and the trials ASHA stopped
    assert set(asha["stopped"]) == {tid for tid, status in statuses.items() if status == "stopped_early"}
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(result["tracking_uri"]).get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["autoaccel.role"] == "sweep"
    # the space the sweep declared is on its parent, and the export carries it for the analysis (no guessing)
    from autoaccel.analysis import declared_spaces, export_experiments
    from autoaccel.sweep import load_space
    from autoaccel.tracking import decode_space

    declared = load_space(QUICK).declared()
    assert decode_space(parent.data.tags) == declared and declared["sgd"]["optimizer.lr"]["log"] is True
    assert declared_spaces(export_experiments(["t"], result["tracking_uri"])[0]) == {"t": declared}

    # the report of this real sweep: every section, its plots, logged back to the sweep's parent run
    from autoaccel.analysis import SECTIONS, build_report

    written = build_report(["t"], result["tracking_uri"], tmp_path / "report")
    page = Path(written["html"]).read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert page.count("data:image/png;base64,") >= 1 and "stopped_early" in page
    assert f"autoaccel sweep {Path(result['folder']) / 'spec.yaml'}" in page
    artifacts = MlflowClient(result["tracking_uri"]).list_artifacts(result["parent_run_id"], "report")
    assert {"report/index.html", "report/report.md", "report/runs.parquet"} <= {a.path for a in artifacts}


def test_trial_that_raises_once_is_retried_from_its_checkpoint(ray_session: Any, tmp_path: Path) -> None:
    from autoaccel.sweep import run_sweep

    marker = tmp_path / "failed-once"
    spec = _spec(
        tmp_path,
        ray_session,
        name="flaky",
        workload={"name": "sweep_workloads:FlakyQuadratic", "samples": 64, "marker": str(marker)},
        search={"sampler": "random", "num_samples": 2, "max_concurrent": 1, "seed": 0},
        scheduler={"type": "fifo"},
        failure={"max_failures": 1, "checkpoint_every_s": 0},  # epochs 1 and 2 checkpointed before the failure
    )
    result = run_sweep(spec, log=open(os.devnull, "w"))  # noqa: SIM115
    assert marker.exists()  # it did fail
    children = _children(result["tracking_uri"], "flaky")
    assert len(children) == 2 and {c.data.tags["status"] for c in children} == {"completed"}
    for child in children:  # the retried trial's history has no gap and no duplicate
        assert _epochs_logged(result["tracking_uri"], child.info.run_id) == [1, 2, 3, 4]
    assert sorted(int(c.data.tags["crashes"]) for c in children) == [0, 1]  # the recovered crash is counted
    from autoaccel.analysis import export_experiments

    runs = export_experiments(["flaky"], result["tracking_uri"])[0].to_pandas()
    assert sorted(runs["crashes"]) == [0, 1]


def test_a_trial_moved_after_its_last_epoch_is_tagged_with_its_new_node(tmp_path: Path) -> None:
    # a node lost after a trial's final report but before Ray saw it end: the retry elsewhere replays epochs the run
    # holds already; nothing is logged twice, and the run says where the trial ran last
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from autoaccel.sweep import load_spec
    from autoaccel.sweep._mlflow_callback import SweepTracking
    from autoaccel.sweep.driver import _prepare_folder

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = load_spec(_spec(tmp_path, uri, name="moved"))
    _prepare_folder(spec, resume=False)  # as a start does: the sweep's id, which its parent run is tagged with
    tracking = SweepTracking(spec, time.monotonic(), open(os.devnull, "w"))  # noqa: SIM115
    trial = SimpleNamespace(trial_id="t0", config={"base": "sgd", "lr": 0.1})
    epochs = [{"epoch": e, "train_loss": 1.0 / e, "metric": 1.0 / e, "status": "completed"} for e in (1, 2)]
    tracking.on_trial_result(0, [trial], trial, {**epochs[-1], "node_id": "node-a", "epochs": epochs})
    tracking.on_trial_result(1, [trial], trial, {**epochs[-1], "node_id": "node-b", "epochs": epochs})
    tracking.flush()
    run_id = tracking.runs["t0"]
    assert MlflowClient(uri).get_run(run_id).data.tags["node"] == "node-b"
    assert _epochs_logged(uri, run_id) == [1, 2]


def test_a_resumed_driver_continues_the_child_run_of_each_orphaned_ask(tmp_path: Path) -> None:
    """A driver killed after asking Optuna for two trials that Ray's snapshot never recorded: one had logged an epoch,
    the other's run was created and the kill came before its params. The resumed driver's new Ray trials re-run the
    two asks (their own configurations) and continue their child runs: relabelled, params complete, no epoch twice,
    no second run."""
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from autoaccel.sweep import load_spec
    from autoaccel.sweep._mlflow_callback import SweepTracking
    from autoaccel.sweep._optuna import DefineByRun, TruthfulOptunaSearch
    from autoaccel.sweep.driver import _prepare_folder
    from autoaccel.tracking import Tags, encode_param, flatten

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = load_spec(_spec(tmp_path, uri, name="orphans", scheduler={"type": "fifo"}))
    _prepare_folder(spec, resume=False)

    def searcher() -> TruthfulOptunaSearch:
        storage = JournalStorage(JournalFileBackend(str(spec.folder / "optuna.journal")))
        options = {"metric": spec.metric, "mode": spec.mode, "sampler_name": "random", "seed": 0, "trials": 6}
        return TruthfulOptunaSearch(space=DefineByRun(QUICK), storage=storage, study_name="orphans", **options)

    dead, killed = searcher(), SweepTracking(spec, time.monotonic(), open(os.devnull, "w"))  # noqa: SIM115
    x, y = (SimpleNamespace(trial_id=t, config=dead.suggest(t)) for t in ("x", "y"))
    killed.on_trial_start(0, [x], x)
    killed.on_trial_result(0, [x], x, {"epoch": 1, "train_loss": 0.5, "metric": 0.5, "status": "completed"})
    killed.flush()
    _, _, tags = killed._describe(y)  # y's run created, the kill before its params
    client = MlflowClient(uri)
    client.create_run(killed.experiment_id, run_name="y", tags={**tags, Tags.PARENT: killed.parent})

    resumed, tracking = searcher(), SweepTracking(spec, time.monotonic(), open(os.devnull, "w"))  # noqa: SIM115
    tracking.search_with(resumed, None)
    tracking.on_step_begin(0, [])  # Ray restored none of them: both asks are orphaned
    x2, y2 = (SimpleNamespace(trial_id=t, config=resumed.suggest(t)) for t in ("x2", "y2"))
    assert (x2.config, y2.config) == (x.config, y.config)  # their own configurations
    for trial in (x2, y2):
        tracking.on_trial_start(0, [x2, y2], trial)
    tracking.on_trial_result(0, [x2], x2, {"epoch": 1, "train_loss": 0.5, "metric": 0.5, "status": "completed"})
    tracking.flush()
    children = _children(uri, "orphans")
    assert len(children) == 2  # one run per ask
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    assert by_trial["x2"].info.run_id == killed.runs["x"] and by_trial["x2"].data.tags["earlier_trial_ids"] == "x"
    assert _epochs_logged(uri, by_trial["x2"].info.run_id) == [1]  # the replayed epoch not logged twice
    _, params, _ = tracking._describe(y2)
    assert by_trial["y2"].data.params == {k: encode_param(v) for k, v in flatten(params).items()}  # logged now
    assert {c.info.status for c in children} == {"RUNNING"}


def test_a_sweep_with_an_errored_trial_exits_1(
    ray_session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from autoaccel.cli import main

    spec = _spec(
        tmp_path,
        ray_session,
        name="errored",
        workload={"name": "sweep_workloads:FlakyQuadratic", "samples": 64, "marker": str(tmp_path / "failed")},
        search={"sampler": "random", "num_samples": 2, "max_concurrent": 1, "seed": 0},
        scheduler={"type": "fifo"},
        failure={"max_failures": 0},  # no retry: the first trial errors for good, the second completes
    )
    assert main(["sweep", str(spec)]) == 1  # a failure a script or a scheduler can see
    err = capsys.readouterr().err
    assert "done: 1 completed, 1 errored" in err and "1 trial(s) errored" in err, err[-2000:]
    why = r"errored after \d+ epoch\(s\)( \(best [^)]*\))?: RuntimeError: transient failure"  # the reason, said
    assert re.search(why, err), err[-2000:]
    errored = [c for c in _children(ray_session, "errored") if c.data.tags["status"] == "errored"]
    assert [c.data.tags["error"] for c in errored] == ["RuntimeError: transient failure"]
    # --resume gives the errored trial another chance (its workload fails only once): finished, its old reason goes
    assert main(["sweep", str(spec), "--resume"]) == 0
    resumed = {c.info.run_id: c for c in _children(ray_session, "errored")}[errored[0].info.run_id]
    assert resumed.data.tags["status"] == "completed" and "error" not in resumed.data.tags, resumed.data.tags


_PRIVATE_RAY = """
import os, pathlib, subprocess, sys, tempfile
os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray puts its sockets there
known = pathlib.Path(os.environ["RAY_TMPDIR"], "ray", "ray_current_cluster")  # what `ray start` leaves behind
known.parent.mkdir()
known.write_text("127.0.0.1:9")  # a cluster this machine knows of: a local sweep must not join it
from autoaccel.sweep.driver import _init_ray, _private_ray_environment
_private_ray_environment(None)  # what a local sweep starts
_init_ray(None)
import ray
token, gcs = os.environ["RAY_AUTH_TOKEN"], ray.get_runtime_context().gcs_address
probe = f"import ray; ray.init(address={gcs!r}, logging_level='ERROR'); print('CONNECTED')"
clients = {"own": {}, "no token": {"RAY_AUTH_MODE": "disabled"}, "another token": {"RAY_AUTH_TOKEN": "0" * 64}}
results = {}
for name, env in clients.items():  # one try each (Ray's default: 20 retries, a second apart)
    env = {**os.environ, "RAY_NUM_REDIS_GET_RETRIES": "1", **env}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    results[name] = "CONNECTED" in done.stdout
commands = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
print(results, len(token) == 64, token in commands)
"""


def test_a_local_sweeps_ray_is_its_own_and_admits_only_its_own_processes() -> None:
    """A new Ray, whatever cluster this machine started last; it listens on loopback only (tests/test_listeners.py),
    and a per-driver token (in no command line) keeps out other users of this machine, who reach loopback too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    done = subprocess.run([sys.executable, "-c", _PRIVATE_RAY], env=env, capture_output=True, text=True, timeout=240)
    assert done.stdout.strip().splitlines()[-1:] == [
        "{'own': True, 'no token': False, 'another token': False} True False"
    ], done.stdout + done.stderr[-3000:]


def test_diverging_configuration_is_a_result(ray_session: Any, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from autoaccel.analysis import export_experiments
    from autoaccel.sweep import run_sweep

    space = tmp_path / "huge_lr.yaml"
    space.write_text("params:\n  base: {value: sgd}\n  lr: {float: [1.0e+4, 1.0e+5], log: true}\n")
    spec = _spec(
        tmp_path,
        ray_session,
        name="diverge",
        space=str(space),
        scheduler={"type": "fifo"},
        search={"sampler": "tpe", "num_samples": 2, "max_concurrent": 2, "seed": 0},
    )
    result = run_sweep(spec, log=open(os.devnull, "w"))  # noqa: SIM115
    children = _children(result["tracking_uri"], "diverge")
    assert [c.data.tags["status"] for c in children] == ["diverged", "diverged"]
    assert all(c.info.status == "FINISHED" for c in children)
    # the workload's finite stand-in (1e6) is no measurement: never logged, never told to Optuna
    for child in children:
        for key in ("val_suboptimality", "metric", "train_loss"):
            assert all(
                m.value < 1e6 for m in MlflowClient(result["tracking_uri"]).get_metric_history(child.info.run_id, key)
            )
    study = _study(Path(result["folder"]), "diverge")
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2  # none RUNNING, none with a made-up value
    assert all(
        t.user_attrs["status"] == "diverged" and max(t.intermediate_values.values(), default=0) < 1e6
        for t in study.trials
    )
    assert result["best"] == []  # a diverged trial is never "best"
    runs = export_experiments(["diverge"], result["tracking_uri"])[0].to_pandas()
    assert runs["final_metric"].isna().all() and (runs["status"] == "diverged").all()


def test_each_sweep_has_its_own_parent_run_and_a_start_never_adopts_another(ray_session: Any, tmp_path: Path) -> None:
    """Two sweeps of one name in two folders on one store get two parent runs (before, the second adopted the
    first's: it was found by name); a driver killed while Ray was starting (its folder holds only the spec and the
    sweep id) resumes; a fresh start refuses a folder whose Optuna journal would be adopted even without tune/."""
    import shutil

    from autoaccel.errors import ConfigError
    from autoaccel.sweep import load_spec, run_sweep
    from autoaccel.sweep.driver import _prepare_folder
    from autoaccel.tracking import Tags

    quiet = open(os.devnull, "w")  # noqa: SIM115
    small = {"name": "same", "scheduler": {"type": "fifo"}, "budget": {"epochs": 2, "batch_size": 16}}
    small["search"] = {"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = run_sweep(_spec(tmp_path / "a", ray_session, **small), log=quiet)
    # the second: what a SIGKILL during Ray's start leaves (the spec and the id), then --resume
    spec = load_spec(_spec(tmp_path / "b", ray_session, **small))
    _prepare_folder(spec, resume=False)
    second = run_sweep(spec, resume=True, log=quiet)
    assert first["parent_run_id"] != second["parent_run_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(ray_session)
    for result, folder in ((first, tmp_path / "a"), (second, tmp_path / "b")):
        parent = client.get_run(result["parent_run_id"])
        assert parent.data.tags[Tags.SWEEP_ID] == (folder / "sweeps" / "same" / "sweep_id").read_text()
        children = [
            c for c in _children(ray_session, "same") if c.data.tags["mlflow.parentRunId"] == parent.info.run_id
        ]
        assert len(children) == 1 and {c.data.tags["status"] for c in children} == {"completed"}
    shutil.rmtree(tmp_path / "b" / "sweeps" / "same" / "tune")  # what "rename or --resume" once invited
    with pytest.raises(ConfigError, match=r"this one has one \(optuna.journal\); pass --resume"):
        run_sweep(_spec(tmp_path / "b", ray_session, **small), log=quiet)


def test_a_sigterm_while_ray_starts_takes_the_ctrl_c_path(
    ray_session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ray.init installs its own SIGTERM handler while it starts Ray, `sys.exit(15)`: a SIGTERM then (a Slurm or
    systemd stop at the wrong moment) exited 15 with no resume hint. It is Ctrl-C's path now: exit 130, the command
    that continues the sweep, the parent run not left RUNNING; and that command completes the sweep."""
    import signal as signals

    from mlflow.tracking import MlflowClient

    import autoaccel.sweep.driver as driver
    from autoaccel.cli import main

    small = {"name": "termed", "scheduler": {"type": "fifo"}, "budget": {"epochs": 2, "batch_size": 16}}
    small["search"] = {"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0}
    path = _spec(tmp_path, ray_session, **small)

    def sigterm_in_ray_init(address: Any, workers: int = 1) -> None:
        sys.exit(signals.SIGTERM)  # what Ray's handler does when the signal lands inside ray.init

    monkeypatch.setattr(driver, "_init_ray", sigterm_in_ray_init)
    assert main(["sweep", str(path)]) == 130
    assert f"continue with: autoaccel sweep {path} --resume" in capsys.readouterr().err
    client = MlflowClient(ray_session)
    parents = client.search_runs(
        [client.get_experiment_by_name("termed").experiment_id], "tags.`autoaccel.role` = 'sweep'"
    )
    assert [p.info.status for p in parents] == ["KILLED"]
    monkeypatch.undo()
    assert main(["sweep", str(path), "--resume"]) == 0
    children = _children(ray_session, "termed")
    assert len(children) == 1 and children[0].data.tags["status"] == "completed"


def test_a_sweep_started_before_sweep_ids_resumes_into_its_own_parent(tmp_path: Path) -> None:
    """A folder an earlier version started has no sweep_id: its parent is the one its folder tag names."""
    from mlflow.tracking import MlflowClient

    from autoaccel.tracking import LEGACY_SWEEP_ID, SWEEP_ROLE, Tags, find_sweep_parent

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("old")
    tags = {Tags.ROLE: SWEEP_ROLE, "autoaccel.sweep": "old"}
    ours = client.create_run(experiment, tags={**tags, "folder": "/x/old"}).info.run_id
    client.create_run(experiment, tags={**tags, "folder": "/elsewhere/old"})  # newer, same name, another folder
    client.create_run(experiment, tags={**tags, "folder": "/x/old", Tags.SWEEP_ID: "abc"})  # a newer sweep's
    found = find_sweep_parent(client, experiment, "old", sweep_id=LEGACY_SWEEP_ID, folder="/x/old")
    assert found.info.run_id == ours
    assert find_sweep_parent(client, experiment, "old", sweep_id="abc").data.tags["folder"] == "/x/old"
    assert find_sweep_parent(client, experiment, "old", sweep_id="nope") is None


def _count_epochs(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as connection:
            rows = connection.execute("select count(*) from metrics where key = 'train_loss'").fetchone()
    except sqlite3.Error:
        return 0
    return rows[0]


def _snapshot_names_checkpoints(tune_dir: Path, running: int) -> bool:
    """Whether Ray's newest experiment snapshot (what --resume restores) holds ``running`` RUNNING trials, each with a
    checkpoint from its last report."""
    snapshots = sorted(tune_dir.glob("experiment_state-*.json"))
    try:
        trials = [(json.loads(t), json.loads(m)) for t, m in json.loads(snapshots[-1].read_text())["trial_data"]]
    except (IndexError, ValueError, OSError):  # none yet, or one being copied
        return False
    held = [m for t, m in trials if t["status"] == "RUNNING" and (m["last_result"] or {}).get("checkpoint_dir_name")]
    return len(held) == running


def _kill_session(process: subprocess.Popen) -> None:
    """SIGKILL the driver by PID, then whatever Ray processes it left in its session (never `ray stop`)."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(1.0)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# SIGTERM (what systemd, Slurm and `timeout` send) takes Ctrl-C's path; test_compare.py sends SIGINT itself and
# resumes. Both cases are in the campaign, `make faults` (half a minute to a minute each), beside test_faults.py's kills
# at seeded moments: this one adds the resumed sweep's summary and the checkpoints it keeps; in `make test`, SIGTERM's
# path is test_a_sigterm_while_ray_starts_takes_the_ctrl_c_path and Ctrl-C's resume test_compare.py's.
@pytest.mark.campaign
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killed_driver_then_resume_completes_with_one_run_per_trial(tmp_path: Path, how: str) -> None:
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    # the first two trials run to the end; the last two report two epochs each and wait at the third (a gate)
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "closed").touch()
    spec = _spec(
        tmp_path,
        name="killed",
        workload={"name": "sweep_workloads:GatedQuadratic", "samples": 64, "gate": str(gate), "free": 2, "at": 3},
        budget={"epochs": 5, "batch_size": 16},
        search={"sampler": "tpe", "num_samples": 4, "max_concurrent": 2, "seed": 0},
        scheduler={"type": "fifo"},
        failure={"max_failures": 1, "checkpoint_every_s": 0},  # a checkpoint every epoch: resumes mid-trial
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))}
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "1"  # Ray's snapshot each second (10 s or more by default): the kill finds one
    command = [sys.executable, "-m", "autoaccel.cli", "sweep", str(spec)]
    db = tmp_path / "sweeps" / "killed" / "mlflow.db"
    # SIGTERM's driver starts with SIGINT ignored, as a job a script starts with `&` does: SIGTERM must still stop it
    started = ["bash", "-c", 'trap "" INT; exec "$@"', "driver", *command] if how == "SIGTERM" else command
    driver = subprocess.Popen(
        started, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # mid-sweep, whatever the machine's load: 2 × 5 + 2 × 2 epochs logged, and Ray's newest snapshot names the held
    # trials' checkpoints (the resume continues from them)
    while _count_epochs(db) < 14 or not _snapshot_names_checkpoints(db.parent / "tune", 2):
        assert driver.poll() is None, "the sweep ended before the test could kill it"
        time.sleep(0.2)
    if how == "SIGKILL":
        _kill_session(driver)
    else:  # as Ctrl-C: Ray stops the trials, the sweep records them as interrupted and says how to resume
        os.kill(driver.pid, signal.SIGTERM)
        assert driver.wait(timeout=120) == 130
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        from mlflow.tracking import MlflowClient

        interrupted = _children(f"sqlite:///{db}", "killed")
        assert "interrupted" in {c.data.tags["status"] for c in interrupted}
        assert all(c.info.status != "RUNNING" for c in interrupted)
        (parent,) = [
            r
            for r in MlflowClient(f"sqlite:///{db}").search_runs(
                [MlflowClient(f"sqlite:///{db}").get_experiment_by_name("killed").experiment_id],
                "tags.`autoaccel.role` = 'sweep'",
            )
        ]
        assert parent.info.status == "KILLED"
        # from here on it is Ctrl-C's state, whose --resume test_compare.py's SIGINT test runs to the end
        assert _count_epochs(db) == 14
        return
    assert _count_epochs(db) == 14  # nothing more: the held trials waited
    (gate / "closed").unlink()

    summary = tmp_path / "summary.json"
    resumed = subprocess.run(
        [*command, "--resume", "--output-json", str(summary)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    uri = f"sqlite:///{db}"
    children = _children(uri, "killed")
    errors = [p.read_text()[-1500:] for p in (tmp_path / "sweeps" / "killed" / "tune").rglob("error.txt")]
    states = [(c.data.tags.get("trial_id"), c.data.tags["status"], c.info.status) for c in children], errors
    assert len(children) == 4 == len({c.data.tags["trial_id"] for c in children}), states  # one child run per trial
    for child in children:  # nothing left RUNNING, nothing interrupted
        assert (child.info.status, child.data.tags["status"]) == ("FINISHED", "completed"), states
        assert _epochs_logged(uri, child.info.run_id) == [1, 2, 3, 4, 5]  # gap-free, no duplicates
    parent = MlflowClient(uri).get_run(json.loads(summary.read_text())["parent_run_id"])
    assert parent.info.status == "FINISHED"
    study = _study(tmp_path / "sweeps" / "killed", "killed")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4  # exactly the trials asked for
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    for trial in study.trials:  # Optuna and MLflow agree trial by trial: each ask names its Ray trial's child run
        assert by_trial[trial.user_attrs["ray_trial_id"]].data.tags["status"] == trial.user_attrs["status"]
    assert json.loads(summary.read_text())["resumed_from_checkpoint"] >= 1  # mid-run trials continued
    # every checkpoint a snapshot could name was kept until the end; then each trial keeps its latest only
    kept = [sorted(d.name for d in t.glob("checkpoint_*")) for t in (tmp_path / "sweeps" / "killed" / "tune").iterdir()]
    # (a trial the killed driver started and its last snapshot missed is re-run under another Ray trial: its own folder
    # stays as it was)
    assert all(len(k) <= 1 for k in kept) and sum(len(k) == 1 for k in kept) >= 4, kept


def test_seeds_train_in_lockstep_and_each_equals_its_own_run(ray_session: Any, tmp_path: Path) -> None:
    from autoaccel.run import run_trial
    from autoaccel.sweep import run_sweep

    space = tmp_path / "fixed.yaml"
    space.write_text("params:\n  base: {value: sgd}\n  lr: {value: 0.1}\n  momentum: {float: [0.5, 0.9]}\n")
    spec = _spec(
        tmp_path,
        ray_session,
        name="seeds",
        space=str(space),
        seeds=[0, 1],
        scheduler={"type": "fifo"},
        search={"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0},
    )
    result = run_sweep(spec, log=open(os.devnull, "w"))  # noqa: SIM115
    (child,) = _children(result["tracking_uri"], "seeds")
    metrics, params = child.data.metrics, child.data.params
    momentum = float(params["optimizer.momentum"])
    for seed in (0, 1):
        alone = run_trial(
            {
                "workload": {"name": "quadratic", "samples": 64},
                "budget": {"epochs": 4, "batch_size": 16},
                "optimizer": {"base": "sgd", "lr": 0.1, "momentum": momentum},
                "seed": seed,
                "device": "cpu",
            }
        )
        assert metrics[f"val_suboptimality_seed{seed}"] == pytest.approx(alone["val_suboptimality"], rel=1e-12)
    assert metrics["val_suboptimality"] == pytest.approx(
        (metrics["val_suboptimality_seed0"] + metrics["val_suboptimality_seed1"]) / 2, rel=1e-12
    )
    assert metrics["val_suboptimality_std"] > 0 and child.data.tags["seed"] == "0,1"


def test_multi_objective_sweep_with_nsga2(ray_session: Any, tmp_path: Path) -> None:
    from optuna.trial import TrialState

    from autoaccel.sweep import run_sweep

    spec = _spec(
        tmp_path,
        ray_session,
        name="pareto",
        scheduler={"type": "fifo"},
        search={
            "sampler": "nsga2",
            "num_samples": 3,
            "max_concurrent": 2,
            "seed": 0,
            "metric": ["metric", "time_s"],
            "mode": ["min", "min"],
        },
    )
    result = run_sweep(spec, log=open(os.devnull, "w"))  # noqa: SIM115
    study = _study(Path(result["folder"]), "pareto")
    assert len(study.directions) == 2
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3 and all(
        len(t.values) == 2 for t in study.trials
    )
    assert result["statuses"] == {"completed": 3}


@pytest.mark.slow
def test_robustness_study_reruns_the_best_configuration_over_seeds_and_batch_sizes(
    ray_session: Any, tmp_path: Path
) -> None:
    from autoaccel.sweep import run_sweep

    source = run_sweep(
        _spec(
            tmp_path,
            ray_session,
            name="source",
            scheduler={"type": "fifo"},
            budget={"epochs": 2, "batch_size": 16},
            search={"sampler": "random", "num_samples": 3, "max_concurrent": 2, "seed": 1},
        ),
        log=open(os.devnull, "w"),  # noqa: SIM115
    )
    best_run = source["best"][0]["run_id"]
    study = {
        "from": "source",
        "tracking_uri": ray_session,
        "top": 1,
        "per": "all",
        "seeds": [3, 4],
        "batch_sizes": [8, 32],
    }
    path = tmp_path / "study.yaml"
    spec = yaml.safe_load(
        _spec(tmp_path, ray_session, name="study", budget={"epochs": 2, "batch_size": 16}).read_text()
    )
    del spec["space"], spec["scheduler"], spec["search"]
    path.write_text(yaml.safe_dump({**spec, "study": study, "search": {"max_concurrent": 2}}))
    result = run_sweep(path, log=open(os.devnull, "w"))  # noqa: SIM115
    children = _children(result["tracking_uri"], "study")
    assert len(children) == 4 and {c.data.tags["status"] for c in children} == {"completed"}
    assert {c.data.tags["source_run"] for c in children} == {best_run}
    assert sorted((c.data.params["budget.batch_size"], c.data.tags["seed"]) for c in children) == [
        ("32", "3"),
        ("32", "4"),
        ("8", "3"),
        ("8", "4"),
    ]
    from mlflow.tracking import MlflowClient

    assert MlflowClient(result["tracking_uri"]).get_run(result["parent_run_id"]).data.tags["study_of"] == "source"

    # a perturbation study of the same configuration: each hyperparameter × and ÷ 2, and the report's loss table
    spec["name"], spec["study"] = "perturbed", {**study, "batch_sizes": None, "seeds": [0], "perturb": 2.0}
    del spec["study"]["batch_sizes"]
    path.write_text(yaml.safe_dump({**spec, "search": {"max_concurrent": 2}}))
    result = run_sweep(path, log=open(os.devnull, "w"))  # noqa: SIM115
    labels = sorted(c.data.params["study.perturbation"] for c in _children(result["tracking_uri"], "perturbed"))
    assert labels.count("base") == 1 and "lr:up" in labels and "lr:down" in labels
    assert all(re.fullmatch(r"[\w.]+:(up|down)", label) for label in labels if label != "base")
    from autoaccel.analysis import build_report

    page = Path(build_report(["perturbed"], ray_session, tmp_path / "perturbed")["html"]).read_text()
    assert "worst_rel_loss" in page and "Not shown: no perturbation study" not in page
