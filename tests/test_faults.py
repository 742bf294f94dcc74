"""Fault campaign: a real local sweep's driver killed at seeded points and at chosen ones, then resumed, checked for
the records a sweep must keep whatever the moment of the kill. Each case takes one to three minutes, so the campaign
is not part of `make test` (which must stay under six): `make faults` runs it (AUTOACCEL_FAULTS=1).

After every case, exactly the sweep that was asked for: as many Optuna trials as `num_samples`, each COMPLETE with
exactly one MLflow child run (the Ray trial it names), completed too, with a gap-free history; nothing RUNNING in MLflow
or Optuna; no configuration drawn twice; each child trained its Optuna trial's configuration; and every ask the killed
driver had made is still there, with its own configuration, finished by the resumed driver. The chosen kill points
(after 0, 1 and 3 finished trials, and twice in a row) kill the driver only once the Optuna journal holds an ask Ray's
last experiment snapshot lacks (an *orphaned* ask: the driver is stopped with SIGSTOP to look, so the state is exact),
with Ray's own snapshot period, so that each really tests the re-run of orphaned asks.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_sweep import QUICK, TESTS, _children, _count_epochs, _epochs_logged, _kill_session, _spec, _study

pytestmark = pytest.mark.campaign

SAMPLES, EPOCHS = 6, 5
TOTAL = SAMPLES * EPOCHS  # epochs the sweep logs in all


def _sweep(tmp_path: Path, snapshot_every_s: int | None = 1) -> tuple[list[str], dict[str, str], Path]:
    """The sweep, and the environment of its driver: Ray's experiment snapshot every ``snapshot_every_s`` seconds
    (None: Ray's own period, 10 s or more, in which a driver asks for trials that no snapshot records)."""
    spec = _spec(
        tmp_path,
        name="faults",
        workload={"name": "sweep_workloads:SlowQuadratic", "samples": 64, "delay": 0.4},
        budget={"epochs": EPOCHS, "batch_size": 16},
        search={"sampler": "tpe", "num_samples": SAMPLES, "max_concurrent": 2, "seed": 0},
        scheduler={"type": "fifo"},
        failure={"max_failures": 1, "checkpoint_every_s": 0},
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))}
    if snapshot_every_s is not None:
        env["TUNE_GLOBAL_CHECKPOINT_S"] = str(snapshot_every_s)
    return [sys.executable, "-m", "autoaccel.cli", "sweep", str(spec)], env, tmp_path / "sweeps" / "faults"


def _kill_after(command: list[str], env: dict[str, str], db: Path, epochs: int) -> None:
    """Start the driver and SIGKILL its whole session once ``epochs`` epochs are in MLflow (or it ended)."""
    driver = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while _count_epochs(db) < epochs and driver.poll() is None:
        time.sleep(0.1)
    _kill_session(driver)


def _finished_trials(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as connection:
            query = "select count(*) from tags where key = 'status' and value = 'completed'"
            return connection.execute(query).fetchone()[0]
    except sqlite3.Error:
        return 0


def _asks(folder: Path) -> dict[str, Any] | None:
    """What the journal holds beside Ray's newest experiment snapshot (the one a resume restores): each ask's
    configuration and state by number, and the orphaned ones (their Ray trial in no snapshot) with their Ray trial
    (None: killed before it was bound); and each Ray trial's MLflow child run; None while a file is half written."""
    snapshots = sorted((folder / "tune").glob("experiment_state-*.json"))
    try:
        state = json.loads(snapshots[-1].read_text()) if snapshots else {"trial_data": []}
        study = _study(folder, "faults")
        with sqlite3.connect(folder / "mlflow.db", timeout=1) as connection:
            runs = dict(connection.execute("select value, run_uuid from tags where key = 'trial_id'"))
    except (ValueError, KeyError, OSError, sqlite3.Error):
        return None
    recorded = {json.loads(trial)["trial_id"] for trial, _ in state["trial_data"]}
    return {
        "params": {t.number: t.params for t in study.trials},
        "orphans": {
            t.number: (t.user_attrs.get("ray_trial_id"), t.state.name)
            for t in study.trials
            if t.user_attrs.get("ray_trial_id") not in recorded
        },
        "runs": runs,
    }


def _kill_when(command: list[str], env: dict[str, str], folder: Path, finished: int, orphaned: bool) -> dict[str, Any]:
    """Start the driver; SIGKILL its session once ``finished`` trials are completed and an epoch is logged (the
    trials under way, checkpointed) and, if ``orphaned``, the journal holds an ask Ray's newest snapshot lacks. The
    driver is stopped (SIGSTOP) while the files are read, so what they say is what the kill leaves. Returns that."""
    db = folder / "mlflow.db"
    driver = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while True:
        assert driver.poll() is None, "the sweep ended before the kill point"
        if _finished_trials(db) >= finished and _count_epochs(db) > EPOCHS * finished:
            os.kill(driver.pid, signal.SIGSTOP)
            found = _asks(folder)
            if found is not None and (found["orphans"] or not orphaned):
                _kill_session(driver)
                return found
            os.kill(driver.pid, signal.SIGCONT)
        time.sleep(0.2)


def _resume(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _configuration(params: dict[str, Any]) -> dict[str, str]:
    """The optimizer an Optuna trial's parameters make (the space's fixed values with them), as its run logs it."""
    from optuna.trial import FixedTrial

    from autoaccel.sweep.space import load_space, to_config
    from autoaccel.tracking import encode_param, flatten

    drawn = load_space(QUICK).suggest(FixedTrial(params))
    return {f"optimizer.{k}": encode_param(v) for k, v in flatten(to_config(drawn).optimizer).items()}


def _check(folder: Path, kills: Sequence[dict[str, Any]] = ()) -> None:
    """Exactly the sweep asked for (the module docstring); ``kills``: what the journal held at each kill."""
    from optuna.trial import TrialState

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    children = _children(uri, "faults")
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    study = _study(folder, "faults")
    shape = (
        [(c.data.tags["trial_id"], c.data.tags["status"], c.info.status) for c in children],
        [(t.number, t.state.name, t.user_attrs) for t in study.trials],
    )
    assert len(children) == SAMPLES == len(by_trial) == len(study.trials), shape
    for child in children:
        assert (child.info.status, child.data.tags["status"]) == ("FINISHED", "completed"), shape
        assert _epochs_logged(uri, child.info.run_id) == list(range(1, EPOCHS + 1))  # gap-free, no duplicates
    for trial in study.trials:  # each Optuna trial, its one child run: the same ending, its configuration
        assert (trial.state, trial.user_attrs["status"]) == (TrialState.COMPLETE, "completed"), shape
        child = by_trial[trial.user_attrs["ray_trial_id"]]
        assert {k: v for k, v in child.data.params.items() if k.startswith("optimizer.")} == _configuration(
            trial.params
        )
    drawn = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(set(drawn)) == len(drawn)  # no configuration drawn again after a kill
    trials = {t.number: t for t in study.trials}
    for kill in kills:  # each ask the killed driver made: still there, its own configuration, finished now
        for number, params in kill["params"].items():  # (one killed while drawing it: the rest drawn on its re-run)
            assert trials[number].params.items() >= params.items(), (trials[number].params, params)
        for number, (ray_id, state) in kill["orphans"].items():
            rerun = trials[number]
            if state == "RUNNING" and ray_id is not None:  # re-run under a new Ray trial
                assert ray_id in rerun.user_attrs["earlier_ray_trial_ids"], rerun.user_attrs
                child = by_trial[rerun.user_attrs["ray_trial_id"]]
                if ray_id in kill["runs"]:  # it had started: its child run continued, not a second one
                    assert child.info.run_id == kill["runs"][ray_id], (child.data.tags, kill["runs"])
                    assert ray_id in child.data.tags["earlier_trial_ids"].split(","), child.data.tags


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_seeded_moment_then_resume(tmp_path: Path, seed: int) -> None:
    """The kill lands after a seeded number of logged epochs, from the first trial's first epoch to near the end."""
    command, env, folder = _sweep(tmp_path)
    _kill_after(command, env, folder / "mlflow.db", random.Random(seed).randint(1, TOTAL - 3))
    _resume(command, env)
    _check(folder)


def test_sigkill_near_the_end_then_resume(tmp_path: Path) -> None:
    command, env, folder = _sweep(tmp_path)
    _kill_after(command, env, folder / "mlflow.db", TOTAL - 1)
    _resume(command, env)
    _check(folder)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("finished", [0, 1, 3])
def test_sigkill_after_finished_trials_with_asks_no_snapshot_holds_then_resume(tmp_path: Path, finished: int) -> None:
    """Killed after 0 trials finished (the first trials under way: every ask is in Ray's first snapshot), after 1
    and after 3, each time with an ask made after Ray's last snapshot (orphaned) in the journal."""
    command, env, folder = _sweep(tmp_path, snapshot_every_s=None)
    kill = _kill_when(command, env, folder, finished, orphaned=finished > 0)
    _resume(command, env)
    _check(folder, [kill])


@pytest.mark.timeout(900)
def test_sigkill_twice_in_a_row_with_orphaned_asks_then_resume(tmp_path: Path) -> None:
    """Killed with an orphaned ask after 1 finished trial, resumed and killed again with another after 3, resumed."""
    command, env, folder = _sweep(tmp_path, snapshot_every_s=None)
    kills = [_kill_when(command, env, folder, 1, orphaned=True)]
    kills.append(_kill_when([*command, "--resume"], env, folder, 3, orphaned=True))
    _resume(command, env)
    _check(folder, kills)


def test_sigkill_during_the_resume_itself_then_resume_again(tmp_path: Path) -> None:
    command, env, folder = _sweep(tmp_path)
    db = folder / "mlflow.db"
    _kill_after(command, env, db, 8)
    _kill_after([*command, "--resume"], env, db, _count_epochs(db) + 6)
    _resume(command, env)
    _check(folder)


def test_sigterm_to_the_whole_process_group_then_resume(tmp_path: Path) -> None:
    """`kill -TERM -PGID` (a terminal closing, some supervisors): Ray's processes stop at once with the driver; the
    trials they ran continue on --resume from their last checkpoints."""
    command, env, folder = _sweep(tmp_path)
    driver = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while _count_epochs(folder / "mlflow.db") < 8 and driver.poll() is None:
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGTERM)
    assert driver.wait(timeout=120) != 0  # its running trials errored with Ray's processes: not a clean end
    with contextlib.suppress(ProcessLookupError):
        os.killpg(driver.pid, signal.SIGKILL)  # whatever of the group outlived it
    _resume(command, env)
    _check(folder)


# -- multi-worker trials (Ray Train inside Tune) -----------------------------------------------------------------


def _workers_sweep(tmp_path: Path, name: str, marker: Path | None = None) -> tuple[list[str], dict[str, str], Path]:
    """One 2-worker trial of 5 epochs (SlowQuadratic: time to kill it mid-run), checkpointed every epoch; with
    ``marker`` its rank-1 worker is SIGKILLed at its first step (DyingQuadratic), once."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    workload = {"name": "sweep_workloads:SlowQuadratic", "samples": 128, "delay": 0.5}
    if marker is not None:
        marker.write_text("once")
        workload = {"name": "sweep_workloads:DyingQuadratic", "samples": 128, "marker": str(marker)}
    spec = _spec(
        tmp_path,
        name=name,
        workload=workload,
        budget={"epochs": EPOCHS, "batch_size": 16},
        search={"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0},
        scheduler={"type": "fifo"},
        resources={"workers": 2, "cpu": 0.5},
        failure={"max_failures": 1, "checkpoint_every_s": 0, "worker_start_timeout_s": 60},
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))}
    return [sys.executable, "-m", "autoaccel.cli", "sweep", str(spec)], env, tmp_path / "sweeps" / name


def _values(folder: Path) -> list[float]:
    """The one trial's metric history, epoch by epoch, after checking that every epoch is there once."""
    from mlflow.tracking import MlflowClient

    (run,) = _children(f"sqlite:///{folder / 'mlflow.db'}", folder.name)
    assert run.data.tags["status"] == "completed" and run.data.tags["world_size"] == "2"
    history = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").get_metric_history(run.info.run_id, "metric")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, EPOCHS + 1))
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def test_a_killed_worker_and_a_killed_driver_cost_a_2_worker_trial_nothing(tmp_path: Path) -> None:
    """The same 2-worker trial three times: undisturbed; with its rank-1 worker SIGKILLed (Ray Train restarts the
    group from the last checkpoint); with the sweep's driver SIGKILLed mid-trial and the sweep resumed (the Tune
    trial starts a new TorchTrainer of the same name, which continues from Ray Train's checkpoint). Each history is
    whole and every value equal, bit for bit."""
    command, env, folder = _workers_sweep(tmp_path / "plain", "plain")
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=400)
    plain = _values(folder)

    marker = tmp_path / "kill-rank-1"
    command, env, folder = _workers_sweep(tmp_path / "worker", "worker", marker)
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=400)
    assert not marker.exists()  # the worker was killed
    assert _values(folder) == plain

    command, env, folder = _workers_sweep(tmp_path / "driver", "driver")
    _kill_after(command, env, folder / "mlflow.db", 2)
    _resume(command, env)
    assert _values(folder) == plain


def test_a_starved_multi_worker_trial_fails_with_the_reason_instead_of_waiting(tmp_path: Path) -> None:
    """Something else holds the CPUs a trial's second worker needs (as a leaked worker group would): the trial fails
    after `failure.worker_start_timeout_s`, its run says why, and the sweep ends."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from autoaccel.sweep import run_sweep

    if ray.is_initialized():
        ray.shutdown()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    hog = placement_group([{"CPU": 1.5}])
    ray.get(hog.ready())
    try:
        spec = _spec(
            tmp_path,
            name="starved",
            budget={"epochs": 2, "batch_size": 16},
            search={"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0},
            scheduler={"type": "fifo"},
            resources={"workers": 2, "cpu": 0.5},
            failure={"max_failures": 0, "worker_start_timeout_s": 5},
        )
        run_sweep(spec, log=open(os.devnull, "w"))  # noqa: SIM115 (it ends: it does not wait for the CPUs)
        (run,) = _children(f"sqlite:///{tmp_path / 'sweeps' / 'starved' / 'mlflow.db'}", "starved")
        assert run.data.tags["status"] == "errored"
        assert "worker group startup timed out after 5.0 seconds waiting for 2 workers" in run.data.tags["error"]
    finally:
        remove_placement_group(hog)
        ray.shutdown()
