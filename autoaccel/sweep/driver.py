"""The sweep driver: a validated spec run by Ray Tune, sampled by Optuna, recorded in MLflow by the driver alone.

Layout of the sweep folder ``<storage>/<name>/``: ``spec.yaml`` (the validated spec, to refuse a changed one on
``--resume``), ``optuna.journal`` (the study; written only by the driver), ``asha.json`` (the scheduler's rungs),
``tune/`` (Ray's experiment: trial checkpoints, one per epoch), and by default ``mlflow.db`` + ``mlartifacts/``.

What this module takes care of, beyond wiring (each is a known trap of Ray 2.60 / Optuna 5.0 / MLflow 3.17):

- ``OptunaSearch`` gets metric and mode itself and a storage object; trials report with ``ray.tune.report``.
- Trials stopped by ASHA are told to Optuna as PRUNED and recorded in MLflow as ``stopped_early`` with the epochs
  they reached, not as finished runs with a low-fidelity value.
- Diverged trials report a finite worst value, so no Optuna trial is left RUNNING by a NaN.
- ``Tuner.restore`` forgets the scheduler: ASHA's rungs are persisted here and reloaded on ``--resume``.
- After every run (and every resume) no MLflow run and no Optuna trial is left RUNNING.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from autoaccel.errors import ConfigError

from .spec import SweepSpec, load_spec
from .trainable import train_sampled

__all__ = ["TUNE_DIR", "run_sweep"]

TUNE_DIR = "tune"


def _scheduler(spec: SweepSpec) -> Any:
    from ._asha import ResumableASHA

    if spec.scheduler["type"] == "fifo":
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
    return ResumableASHA(
        spec.folder / "asha.json",
        time_attr="epoch",
        max_t=spec.budget["epochs"],
        grace_period=spec.scheduler["grace_period"],
        reduction_factor=spec.scheduler["reduction_factor"],
    )


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        return
    # A local, private Ray: no dashboard, no usage reporting, no token written to ~/.ray.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=False)


def _prepare_folder(spec: SweepSpec, resume: bool) -> None:
    saved = spec.folder / "spec.yaml"
    tune_dir = spec.folder / TUNE_DIR
    if resume:
        if not saved.exists() or not tune_dir.exists():
            raise ConfigError("--resume", str(spec.folder), "a sweep folder with a started sweep (none found)")
        before = yaml.safe_load(saved.read_text())
        if before != spec.raw:
            raise ConfigError("--resume", str(spec.path), f"the same spec as the started sweep ({saved})")
        return
    if tune_dir.exists():
        raise ConfigError(
            "storage", str(spec.folder), "a folder without a sweep: this one has one; pass --resume or rename the sweep"
        )
    spec.folder.mkdir(parents=True, exist_ok=True)
    saved.write_text(yaml.safe_dump(spec.raw, sort_keys=False))


def run_sweep(
    spec: SweepSpec | str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    address: str | None = None,
    log: Any = sys.stderr,
) -> dict[str, Any]:
    """Run (or ``resume``) the sweep ``spec``; return its summary. Bad input raises ConfigError before Ray starts."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec, overrides)
    _prepare_folder(spec, resume)
    started = time.monotonic()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress lines replace Tune's tables
    from ._mlflow_callback import SweepTracking

    tracking = SweepTracking(spec, started=started, log=log)
    pool = ThreadPoolExecutor(1)
    # Creating a fresh MLflow store (schema migrations: seconds) overlaps with starting Ray, the tuner and the first
    # trials; the callback's first event waits for it.
    connected = pool.submit(tracking.announce, resume)
    try:
        return _run(spec, tracking, connected, resume, address)
    finally:
        pool.shutdown()


def _run(spec: SweepSpec, tracking: Any, connected: Any, resume: bool, address: str | None) -> dict[str, Any]:
    _init_ray(address)
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray import tune

    from ._optuna import DefineByRun, TruthfulOptunaSearch, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    payload = {"workload": spec.workload, "budget": spec.budget, "seeds": list(spec.seeds), "device": spec.device}
    resources = {"cpu": spec.resources["cpu"], "gpu": spec.resources["gpu"]}
    trainable = tune.with_resources(tune.with_parameters(train_sampled, payload=payload), resources)
    tune_path = spec.folder / TUNE_DIR
    run_config = tune.RunConfig(
        name=TUNE_DIR,
        storage_path=str(spec.folder),
        verbose=0,
        callbacks=[tracking],
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )
    if resume:
        # Unfinished trials continue from their checkpoints; errored ones get another chance from theirs too: a dead
        # driver can leave a trial errored that was not at fault. (Optuna keeps the FAIL it was told: it cannot
        # reopen a finished trial; MLflow records how the retry ends.)
        tuner = tune.Tuner.restore(str(tune_path), trainable, resume_unfinished=True, resume_errored=True)
        # Ray unpickles its own copy of the callback: use ours, so that one object (one lock) talks to MLflow
        tuner._local_tuner._run_config.callbacks = [tracking]
    elif spec.points:  # a robustness study: every point once, none stopped early
        tuner = tune.Tuner(
            trainable,
            param_space={"point": tune.grid_search([p.as_config()["point"] for p in spec.points])},
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent, reuse_actors=True),
            run_config=run_config,
        )
    else:
        searcher = TruthfulOptunaSearch(
            space=DefineByRun(str(spec.space)),
            metric=list(spec.metrics) if len(spec.metrics) > 1 else spec.metric,
            mode=list(spec.modes) if len(spec.modes) > 1 else spec.mode,
            sampler=make_sampler(spec.sampler, spec.seed),
            storage=JournalStorage(JournalFileBackend(str(spec.folder / "optuna.journal"))),
            study_name=spec.name,
        )
        searcher.scheduler_state = str(spec.folder / "asha.json")
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=_scheduler(spec),
                metric=spec.metric,
                mode=spec.mode,
                num_samples=spec.num_samples,
                max_concurrent_trials=spec.max_concurrent,
                reuse_actors=True,
            ),
            run_config=run_config,
        )
    grid = tuner.fit()
    connected.result()
    return tracking.close(grid)
