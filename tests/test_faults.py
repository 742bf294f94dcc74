"""Fault campaign: a real local sweep's driver killed at seeded points, then resumed, checked for the records a
sweep must keep whatever the moment of the kill. Each case takes one to two minutes, so the campaign is not part of
`make test` (which must stay under six): `make faults` runs it (AUTOACCEL_FAULTS=1).

After every case: one completed child run per trial, nothing RUNNING in MLflow or Optuna, each trial's history
gap-free and without duplicates, and Optuna and MLflow agreeing trial by trial (each Optuna trial names its Ray
trial; an ask the dead driver made after Ray's last snapshot is closed as ``abandoned``).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep import TESTS, _children, _count_epochs, _epochs_logged, _kill_session, _spec, _study

pytestmark = pytest.mark.campaign

SAMPLES, EPOCHS = 6, 5
TOTAL = SAMPLES * EPOCHS  # epochs the sweep logs in all


def _sweep(tmp_path: Path) -> tuple[list[str], dict[str, str], Path]:
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
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "1"
    return [sys.executable, "-m", "autoaccel.cli", "sweep", str(spec)], env, tmp_path / "sweeps" / "faults"


def _kill_after(command: list[str], env: dict[str, str], db: Path, epochs: int) -> None:
    """Start the driver and SIGKILL its whole session once ``epochs`` epochs are in MLflow (or it ended)."""
    driver = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while _count_epochs(db) < epochs and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.1)
    _kill_session(driver)


def _resume(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]


def _check(folder: Path) -> None:
    from optuna.trial import TrialState

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    children = _children(uri, "faults")
    assert all(c.info.status != "RUNNING" for c in children)
    live = [c for c in children if c.data.tags["status"] != "interrupted"]
    assert len(live) == SAMPLES == len({c.data.tags["trial_id"] for c in live})  # one child run per trial
    for child in live:
        assert child.data.tags["status"] == "completed"
        assert _epochs_logged(uri, child.info.run_id) == list(range(1, EPOCHS + 1))  # gap-free, no duplicates
    study = _study(folder, "faults")
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["ray_trial_id"] for t in complete) == sorted(c.data.tags["trial_id"] for c in live)
    for trial in study.trials:
        if trial.state != TrialState.COMPLETE:
            assert trial.user_attrs["status"] == "abandoned", trial.user_attrs
            ray_id = trial.user_attrs["ray_trial_id"]
            assert ray_id not in by_trial or by_trial[ray_id].data.tags["status"] == "interrupted"


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
    deadline = time.monotonic() + 240
    while _count_epochs(folder / "mlflow.db") < 8 and time.monotonic() < deadline and driver.poll() is None:
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
        started = time.monotonic()
        run_sweep(spec, log=open(os.devnull, "w"))  # noqa: SIM115
        assert time.monotonic() - started < 120
        (run,) = _children(f"sqlite:///{tmp_path / 'sweeps' / 'starved' / 'mlflow.db'}", "starved")
        assert run.data.tags["status"] == "errored"
        assert "worker group startup timed out after 5.0 seconds waiting for 2 workers" in run.data.tags["error"]
    finally:
        remove_placement_group(hog)
        ray.shutdown()
