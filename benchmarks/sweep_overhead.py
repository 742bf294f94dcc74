"""Sweep orchestration and tracking overhead.

    .venv/bin/python benchmarks/sweep_overhead.py [--trials 6] [--trial-seconds 10] [--epochs 10] [--json]
    .venv/bin/python benchmarks/sweep_overhead.py --short [--trials 40] [--json]

``--short``: the orchestration overhead per trial for a sweep of short trials (the quickstart's shape: the
admissions MLP, 60 epochs at batch 40, one seed, 2 trials at a time, FIFO), for autoaccel (and for autoaccel
reporting and checkpointing every epoch, ``failure.checkpoint_every_s: 0``), for a bare Ray Tune function trainable
running the same trials with reused actors (the floor), and for plain Optuna in one process, in the same run:
(time from the first trial's start to the last trial's end × 2 slots − Σ trials' own time) ÷ trials.

1. Orchestration efficiency = (Σ trial compute / concurrency) / wall, for ``--trials`` trials of about
   ``--trial-seconds`` each (fixed work per epoch, 2 at a time): ``autoaccel.sweep`` (Ray Tune + Optuna + MLflow;
   wall with and without Ray's start) against plain ``optuna`` ``study.optimize(n_jobs=2)`` running the same trials
   with ``run_trial`` in threads, in the same run.
2. Tracking cost per reported epoch in the driver: ``Tracker.log_epoch`` (one ``log_batch``) against Ray's
   ``MLflowLoggerCallback.log_trial_result`` on the same result, each into its own fresh SQLite store.
3. Time from ``autoaccel sweep`` (a fresh process) to the first trial's first epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPACE = """params:
  base: {value: sgd}
  lr: {float: [1.0e-3, 1.0e-1], log: true}
  momentum: {float: [0.0, 0.9]}
"""


def calibrate(seconds_per_epoch: float) -> int:
    """Matrix products per epoch that take ``seconds_per_epoch`` on one thread here."""
    torch.set_num_threads(1)
    a = torch.full((256, 256), 1.0 / 256)
    start, n = time.perf_counter(), 200
    for _ in range(n):
        a = a @ a
    return max(1, round(n * seconds_per_epoch / (time.perf_counter() - start)))


def _spec(folder: Path, trials: int, epochs: int, work: int, sampler: str = "random") -> Path:
    (folder / "space.yaml").write_text(SPACE)
    spec = {
        "name": "overhead",
        "workload": {"name": "busy_workload:BusyQuadratic", "samples": 256, "work": work},
        "space": str(folder / "space.yaml"),
        "budget": {"epochs": epochs, "batch_size": 32},
        "search": {"sampler": sampler, "num_samples": trials, "max_concurrent": 2, "seed": 0},
        "scheduler": {"type": "fifo"},
        "storage": str(folder / "sweeps"),
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def orchestration(trials: int, epochs: int, work: int) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    from autoaccel.sweep import run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        spec = _spec(Path(tmp), trials, epochs, work)
        start = time.perf_counter()
        result = run_sweep(spec, log=open(os.devnull, "w"))  # noqa: SIM115
        wall = time.perf_counter() - start
        client = MlflowClient(result["tracking_uri"])
        runs = client.search_runs([client.get_experiment_by_name("overhead").experiment_id])
        compute = sum(r.data.metrics.get("time_s", 0.0) for r in runs if "mlflow.parentRunId" in r.data.tags)
        import ray

        (Path(tmp) / "warm").mkdir()
        spec2 = _spec(Path(tmp) / "warm", trials, epochs, work)
        warm_start = time.perf_counter()  # Ray already running: the cost of the sweep machinery alone
        result2 = run_sweep(spec2, log=open(os.devnull, "w"))  # noqa: SIM115
        warm_wall = time.perf_counter() - warm_start
        client2 = MlflowClient(result2["tracking_uri"])
        runs2 = client2.search_runs([client2.get_experiment_by_name("overhead").experiment_id])
        compute2 = sum(r.data.metrics.get("time_s", 0.0) for r in runs2 if "mlflow.parentRunId" in r.data.tags)
        ray.shutdown()
    return {
        "sweep_wall_s": wall,
        "sweep_compute_s": compute,
        "sweep_efficiency": compute / 2 / wall,
        "sweep_warm_wall_s": warm_wall,
        "sweep_warm_efficiency": compute2 / 2 / warm_wall,
        "first_report_s": result["first_report_s"],
    }


def plain_optuna(trials: int, epochs: int, work: int) -> dict[str, Any]:
    import optuna

    from autoaccel.run import run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # as Ray gives each 1-CPU trial
    compute, lock = [], threading.Lock()

    def objective(trial: optuna.Trial) -> float:
        optimizer = {
            "base": "sgd",
            "lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True),
            "momentum": trial.suggest_float("momentum", 0.0, 0.9),
        }
        config = {
            "workload": {"name": "busy_workload:BusyQuadratic", "samples": 256, "work": work},
            "optimizer": optimizer,
            "budget": {"epochs": epochs, "batch_size": 32},
            "seed": 0,
            "device": "cpu",
        }
        result = run_trial(config)
        with lock:
            compute.append(result["time_s"])
        return result["metric"]

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=2)
    wall = time.perf_counter() - start
    return {"optuna_wall_s": wall, "optuna_compute_s": sum(compute), "optuna_efficiency": sum(compute) / 2 / wall}


def tracking(epochs: int = 200) -> dict[str, Any]:
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.experiment import Trial as TuneTrial

    from autoaccel.run import Trial
    from autoaccel.tracking import Tracker

    config = {
        "workload": {"name": "admissions_mlp"},
        "optimizer": {"base": "adam", "lr": 1e-3, "anderson": {"history": 5, "averaging": "auto"}},
        "budget": {"epochs": 1},
        "seed": 0,
        "device": "cpu",
    }
    metrics = next(Trial(config).epochs())
    ray_keys = {
        "training_iteration": 1,
        "time_this_iter_s": 0.1,
        "time_total_s": 1.0,
        "timestamp": 0,
        "pid": 1,
        "done": False,
        "trial_id": "x",
        "date": "d",
        "hostname": "h",
        "node_ip": "n",
        "time_since_restore": 1.0,
        "iterations_since_restore": 1,
        "config": {"lr": 1e-3, "base": "adam"},
    }
    result = {**metrics, **ray_keys}
    with tempfile.TemporaryDirectory() as tmp:
        ours = Tracker(f"sqlite:///{tmp}/ours.db", "bench")
        run_id = ours.start_run("t", {"lr": 1e-3}, {"status": "running"})
        start = time.perf_counter()
        for epoch in range(1, epochs + 1):
            ours.log_epoch(run_id, metrics, step=epoch, tags={"epochs": epoch})
        ours_s = (time.perf_counter() - start) / epochs
        callback = MLflowLoggerCallback(tracking_uri=f"sqlite:///{tmp}/ray.db", experiment_name="bench")
        callback.setup()
        trial = TuneTrial("f", config={"lr": 1e-3}, stub=True)
        callback.log_trial_start(trial)
        start = time.perf_counter()
        for epoch in range(1, epochs + 1):
            callback.log_trial_result(epoch, trial, {**result, "training_iteration": epoch})
        ray_s = (time.perf_counter() - start) / epochs
        callback.log_trial_end(trial)
    return {
        "values_per_epoch": len(metrics),
        "ours_ms_per_epoch": ours_s * 1e3,
        "ray_callback_ms_per_epoch": ray_s * 1e3,
        "tracking_speedup": ray_s / ours_s,
    }


def first_trial() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = _spec(Path(tmp), trials=2, epochs=2, work=1)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "autoaccel.cli", "sweep", str(spec)],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        first = None
        for line in process.stderr:
            if first is None and "first report from trial" in line:
                first = time.perf_counter() - start
        process.wait()
        total = time.perf_counter() - start
    return {"command_to_first_epoch_s": first, "command_total_s": total}


SHORT_SPACE = """params:
  base: {value: sgd}
  lr: {float: [1.0e-3, 3.0e-1], log: true}
  momentum: {float: [0.0, 0.95]}
"""
SHORT_BUDGET = {"epochs": 60, "batch_size": 40}


def _short_config(lr: float, momentum: float) -> dict[str, Any]:
    return {
        "workload": {"name": "admissions_mlp"},
        "optimizer": {"base": "sgd", "lr": lr, "momentum": momentum},
        "budget": SHORT_BUDGET,
        "seed": 0,
        "device": "cpu",
    }


def _overhead(spans: list[tuple[float, float]], own: list[float], slots: int = 2) -> dict[str, float]:
    """Per-trial overhead from each trial's (start, end) and its own training time."""
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return {"wall_s": wall, "own_s": sum(own), "overhead_per_trial_s": (wall * slots - sum(own)) / len(spans)}


def short_autoaccel(trials: int, checkpoint_every_s: float | None = None) -> dict[str, float]:
    """``checkpoint_every_s=0``: a report and a checkpoint every epoch (the policy before reports were batched)."""
    from mlflow.tracking import MlflowClient

    from autoaccel.sweep import run_sweep

    failure = {} if checkpoint_every_s is None else {"failure": {"checkpoint_every_s": checkpoint_every_s}}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "space.yaml").write_text(SHORT_SPACE)
        spec = {
            "name": "short",
            "workload": {"name": "admissions_mlp"},
            "space": str(Path(tmp) / "space.yaml"),
            "budget": SHORT_BUDGET,
            "search": {"sampler": "random", "num_samples": trials, "max_concurrent": 2, "seed": 0},
            "scheduler": {"type": "fifo"},
            "device": "cpu",
            "storage": str(Path(tmp) / "sweeps"),
            **failure,
        }
        (Path(tmp) / "spec.yaml").write_text(yaml.safe_dump(spec))
        result = run_sweep(Path(tmp) / "spec.yaml", log=open(os.devnull, "w"))  # noqa: SIM115
        client = MlflowClient(result["tracking_uri"])
        runs = client.search_runs([client.get_experiment_by_name("short").experiment_id], max_results=5000)
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        spans = [(r.info.start_time / 1000, r.info.end_time / 1000) for r in children]
        return _overhead(spans, [r.data.metrics["time_s"] for r in children])


def short_ray_floor(trials: int) -> dict[str, float]:
    """The same trials as a bare function trainable: reused actors, one report per epoch, no checkpoint, no
    searcher, no callback."""
    import random

    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        from autoaccel.run import Trial

        start = time.time()
        trial = Trial(_short_config(config["lr"], config["momentum"]))
        for metrics in trial.epochs():
            tune.report({"metric": metrics["metric"], "time_s": metrics["time_s"], "start": start, "end": time.time()})

    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # without Tune's result files it warns per trial
    rng = random.Random(0)
    space = {"lr": tune.sample_from(lambda _: 10 ** rng.uniform(-3, -0.5)), "momentum": tune.uniform(0.0, 0.95)}
    with tempfile.TemporaryDirectory() as tmp:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=2, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=tmp, verbose=0),
        )
        grid = tuner.fit()
        results = [r.metrics for r in grid]
    return _overhead([(m["start"], m["end"]) for m in results], [m["time_s"] for m in results])


def short_optuna(trials: int) -> dict[str, float]:
    import optuna

    from autoaccel.run import run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # as Ray gives each 1-CPU trial
    spans, own, lock = [], [], threading.Lock()

    def objective(trial: optuna.Trial) -> float:
        start = time.time()
        lr, momentum = trial.suggest_float("lr", 1e-3, 3e-1, log=True), trial.suggest_float("momentum", 0.0, 0.95)
        result = run_trial(_short_config(lr, momentum))
        with lock:
            spans.append((start, time.time()))
            own.append(result["time_s"])
        return result["metric"]

    optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).optimize(objective, trials, n_jobs=2)
    return _overhead(spans, own)


def short(trials: int) -> dict[str, Any]:
    """Per-trial overhead of autoaccel, Ray Tune's floor and plain Optuna on the same short trials, in one run."""
    import ray

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # as a sweep sets it: the floor under the same conditions
    rows: dict[str, Any] = {"trials": trials}
    measures = (
        ("optuna", short_optuna),
        ("autoaccel", short_autoaccel),
        ("autoaccel_every_epoch", lambda n: short_autoaccel(n, checkpoint_every_s=0)),
        ("ray_floor", short_ray_floor),
    )
    for name, measure in measures:
        rows.update({f"{name}_{key}": value for key, value in measure(trials).items()})
    ray.shutdown()
    rows["autoaccel_over_floor"] = rows["autoaccel_overhead_per_trial_s"] / rows["ray_floor_overhead_per_trial_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--trial-seconds", type=float, default=10.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--short", action="store_true", help="per-trial overhead of short trials (see above)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    if args.short:
        rows: dict[str, Any] = short(args.trials if args.trials != 6 else 40)
    else:
        work = calibrate(args.trial_seconds / args.epochs)
        rows = {"trials": args.trials, "epochs": args.epochs, "work_per_epoch": work}
        rows.update(tracking())
        rows.update(first_trial())
        rows.update(plain_optuna(args.trials, args.epochs, work))
        rows.update(orchestration(args.trials, args.epochs, work))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for key, value in rows.items():
        print(f"{key:<28} {value:.4g}" if isinstance(value, float) else f"{key:<28} {value}")


if __name__ == "__main__":
    main()
