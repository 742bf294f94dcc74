"""The sweep driver: a validated spec run by Ray Tune, sampled by Optuna, recorded in MLflow by the driver alone.

Layout of the sweep folder ``<storage>/<name>/``: ``spec.yaml`` (the validated spec, to refuse a changed one on
``--resume``), ``optuna.journal`` (the study; written only by the driver), ``asha.json`` (the scheduler's rungs),
``tune/`` (Ray's experiment: each trial's latest checkpoint, taken when it reports; a comparison's two phases in
``tune/tuning`` and ``tune/final``, its progress in ``compare.json``), ``.lock`` (the running driver's),
``sweep_id`` (this sweep's unique id: its parent MLflow run is found by it, never by the name alone), and by
default ``mlflow.db`` + ``mlartifacts/``.

What this module takes care of, beyond wiring (each is a known trap of Ray 2.60 / Optuna 5.0 / MLflow 3.17):

- ``OptunaSearch`` gets metric and mode itself and a storage object; trials report with ``ray.tune.report``.
- Trials stopped by ASHA are told to Optuna as PRUNED and recorded in MLflow as ``stopped_early`` with the epochs
  they reached, not as finished runs with a low-fidelity value.
- Diverged trials report a finite worst value to Ray (its schedulers need a number), so no trial hangs on a NaN;
  that stand-in is never a measurement: Optuna gets only the measured epochs (the trial PRUNED, status diverged)
  and MLflow does not log it.
- ``Tuner.restore`` forgets the scheduler: ASHA's rungs are persisted here and reloaded on ``--resume``.
- ``Tuner.restore`` forgets the trials the dead driver asked Optuna for after Ray's last experiment snapshot, and
  counts from that snapshot: the searcher re-runs each such ask with its own configuration (its MLflow child run
  continues) and says itself when the study holds every ask (``TruthfulOptunaSearch``).
- ``Tuner.restore`` remembers the controller's pending per-trial decisions (a STOP waiting on a checkpoint save when
  the driver died) and would carry them out on the restarted trials: they are dropped first.
- After every run (and every resume) no MLflow run and no Optuna trial is left RUNNING.
- SIGTERM (systemd, Slurm, Kubernetes, ``timeout``) takes Ctrl-C's path, and Tune's SIGINT handler does not outlive
  its run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from autoaccel.config import differences
from autoaccel.errors import ConfigError
from autoaccel.ports import free_loopback_port
from autoaccel.tracking import LEGACY_SWEEP_ID

from ._ray_internals import forget_pending_decisions, ray_core_imported, restored_tune_config, use_callbacks
from ._timing import time_configurations
from .compare import TuningStudy
from .preflight import check_environment, cluster_address
from .reruns import Point, final_points
from .spec import DRIVER_RESOURCES, SWEEP_ID, TUNE_DIR, Phase, SweepSpec, load_spec
from .trainable import train_sampled

__all__ = ["run_sweep"]

COMPARE_STATE = "compare.json"  # a comparison's finished phases and its final points
LOCK_FILE = ".lock"  # held (flock) by the one driver running the sweep; names its process
_STATE = frozenset({TUNE_DIR, "optuna.journal", COMPARE_STATE})  # + asha*.json: what a fresh start must not adopt


def _scheduler(spec: SweepSpec, phase: Phase) -> Any:
    """FIFO, or ASHA with its rungs persisted: one for the sweep, or one per study in a comparison's tuning."""
    from ray.tune.schedulers import FIFOScheduler

    from ._asha import PerStudy, ResumableASHA

    if spec.scheduler["type"] == "fifo":
        return FIFOScheduler()

    def asha(path: Path) -> ResumableASHA:
        options = {k: spec.scheduler[k] for k in ("grace_period", "reduction_factor")}
        # the budget spent in epochs: the epoch, or an optimizer's own clock (AdaScale's scale-invariant steps)
        return ResumableASHA(path, time_attr="budget_epochs", max_t=spec.budget["epochs"], **options)

    if not phase.studies:
        return asha(phase.asha_path(spec.folder))
    return PerStudy({s.key: asha(phase.asha_path(spec.folder, s)) for s in phase.studies})


def _init_ray(address: str | None, workers: int = 1) -> None:
    import ray

    if ray.is_initialized():
        return
    address = cluster_address(address)
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        return
    # A new local Ray, private to this sweep: without address="local", ray.init joins the cluster a `ray start` on
    # this machine last began (and the sweep would run on it, or hang on its authentication). It listens on loopback
    # and a token guards every connection (_private_ray_environment). No dashboard, unless trials have several
    # workers: Ray Train frees the workers of a trial ASHA stopped only through the State API, which the dashboard
    # serves (ray-project/ray#54305); it then listens on loopback, at a port its processes are told (with several Ray
    # instances on one machine they would not find it themselves).
    dashboard: dict[str, Any] = {"include_dashboard": False}
    if workers > 1:
        port = free_loopback_port()
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        dashboard = {"include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port}
    context = ray.init(
        address="local",
        log_to_driver=False,
        logging_level="ERROR",
        configure_logging=False,
        # nobody scrapes a private Ray's metrics: without them each node's agent opens no Prometheus port
        _system_config={"enable_metrics_collection": False},
        **dashboard,
    )
    if workers > 1 and context.dashboard_url != f"127.0.0.1:{dashboard['dashboard_port']}":
        ray.shutdown()
        raise RuntimeError(
            f"Ray's dashboard took {context.dashboard_url}, not the free port it was given: run the sweep again"
        )


def _prepare_folder(spec: SweepSpec, resume: bool) -> None:
    """A resume needs the folder a start prepared (the spec and the sweep id: a driver killed while Ray was starting
    left nothing else) and the same spec; a fresh start needs a folder with no sweep state to adopt (Ray's
    experiment, the Optuna journal, ASHA's rungs, a comparison's progress), and gets a new sweep id."""
    saved, identity = spec.folder / "spec.yaml", spec.folder / SWEEP_ID
    if resume:
        if not saved.exists():
            raise ConfigError("--resume", str(spec.folder), "a sweep folder with a started sweep (none found)")
        before = yaml.safe_load(saved.read_text())
        if before != spec.raw:
            allowed = f"the same spec as the started sweep ({saved}); it differs: {differences(before, spec.raw)}"
            raise ConfigError("--resume", str(spec.path), allowed)
        if not identity.exists():  # a folder an earlier version started: its parent run is found by folder
            _write_atomically(identity, LEGACY_SWEEP_ID)
        return
    spec.folder.mkdir(parents=True, exist_ok=True)
    state = sorted(p.name for p in spec.folder.iterdir() if p.name in _STATE or p.match("asha*.json"))
    if state:
        allowed = f"a folder without a sweep: this one has one ({', '.join(state)}); pass --resume or rename the sweep"
        raise ConfigError("storage", str(spec.folder), allowed)
    # a start that failed before any of that state (a bad tracking server, Ray that would not start) blocks nothing:
    # this start replaces its spec and its id, and its parent run, if it made one, is never found again
    saved.write_text(yaml.safe_dump(spec.raw, sort_keys=False))
    _write_atomically(identity, uuid.uuid4().hex)


def _write_atomically(path: Path, text: str) -> None:
    """``text`` at ``path``: a reader (or a kill) never finds half of it."""
    partial = path.with_name(path.name + ".part")
    partial.write_text(text)
    partial.replace(path)


def run_sweep(
    spec: SweepSpec | str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    address: str | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Run (or ``resume``) the sweep ``spec``; return its summary. Bad input raises ConfigError before Ray starts.
    Progress lines go to ``log`` (default: ``sys.stderr`` as it is at the call, so a redirection is followed)."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec, overrides)
    check_environment(spec, address)
    with _folder_lock(spec.folder, create=not resume):
        _prepare_folder(spec, resume)
        return _start(spec, resume, address, log)


@contextlib.contextmanager
def _folder_lock(folder: Path, create: bool) -> Iterator[None]:
    """The sweep folder for this driver alone while it runs: a second driver on it (a fresh start, or a --resume
    while the first still runs) would split one sweep's records. An flock ends with its process, so a killed driver
    leaves no stale lock behind."""
    if not create and not folder.is_dir():
        raise ConfigError("--resume", str(folder), "a sweep folder with a started sweep (none found)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 (held open for the whole sweep)
    except OSError as error:
        raise ConfigError(
            "storage", str(folder), f"a folder this user can create and write ({error.strerror})"
        ) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                "storage", str(folder), f"a folder no other sweep driver is using (driver {holder} runs on it now)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        handle.close()


def _private_ray_environment(address: str | None) -> None:
    """A local Ray that listens on loopback only and admits only this driver's processes.

    Loopback: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read when Ray is imported, here and in each process Ray
    starts) Ray takes 127.0.0.1 as its node address, as it does on macOS and Windows (``ray_constants.py``,
    ``services.get_node_ip_address``), and every server of the session binds it: GCS, raylet, every core worker,
    dashboard and agents, metrics. (``_node_ip_address`` cannot do it: Ray maps a loopback address given there back
    to the machine's address.) Such a Ray takes no other node, which a local sweep has none of; joining a cluster
    (``--address``) is left alone. A multi-worker trial's process group then meets through a file and connects over
    ``lo`` (``_process_group.py``): torch's TCPStore would listen on every interface.

    A token still guards every connection (other users of this machine reach 127.0.0.1): a fresh random one per
    driver, handed to its own processes through the environment and written nowhere. A user's own settings (RAY_AUTH_*,
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, GLOO_/NCCL_SOCKET_IFNAME) are kept. A Ray core this process loaded before read
    its configuration then (a setting made now would reach the servers but not this driver): Ray's own defaults apply,
    every interface, and token authentication with the token in ~/.ray/auth_token."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if cluster_address(address) or ray_core_imported():
        return
    for variable, value in (
        ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
        ("GLOO_SOCKET_IFNAME", "lo"),
        ("NCCL_SOCKET_IFNAME", "lo"),
    ):
        os.environ.setdefault(variable, value)
    if os.environ.setdefault("RAY_AUTH_MODE", "token") == "token" and "RAY_AUTH_TOKEN_PATH" not in os.environ:
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))


def _start(spec: SweepSpec, resume: bool, address: str | None, log: Any) -> dict[str, Any]:
    _private_ray_environment(address)  # before anything imports Ray
    started = time.monotonic()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress lines replace Tune's tables
    # MLflow holds every result: Tune's own JSON, CSV and TensorBoard files per result only cost the driver time
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # ... so fit()'s result grid finds none of those files and warns once per trial ("Failed to fetch metrics"):
    # about files the sweep chose not to write, never about its results
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    from ._mlflow_callback import SweepTracking

    tracking = SweepTracking(spec, started=started, log=sys.stderr if log is None else log)
    pool = ThreadPoolExecutor(1)
    # Creating a fresh MLflow store (schema migrations: seconds) overlaps with starting Ray, the tuner and the first
    # trials; the callback's first event waits for it.
    connected = pool.submit(tracking.announce, resume)
    try:
        return _run(spec, tracking, connected, resume, address)
    finally:
        pool.shutdown()
        with contextlib.suppress(RuntimeError):  # a failed write was raised already, or the sweep's own error is
            tracking.flush()  # what the writer thread still holds, whatever ended the sweep


def _run(spec: SweepSpec, tracking: Any, connected: Any, resume: bool, address: str | None) -> dict[str, Any]:
    with _sigterm_as_interrupt():  # while Ray is imported and starts, too
        try:
            _init_ray(address, spec.workers)
        except (KeyboardInterrupt, SystemExit) as stop:
            # ray.init puts its own SIGTERM handler in while it starts Ray (sys.exit(15)): either way it is the
            # Ctrl-C path, whose --resume continues the sweep (its folder holds the spec and the sweep id)
            if isinstance(stop, SystemExit) and stop.code != signal.SIGTERM:
                raise
            with contextlib.suppress(Exception):  # the parent run, if the store was up: not left RUNNING
                connected.result()
                tracking.client.set_terminated(tracking.parent, "KILLED")
            raise KeyboardInterrupt from None
    with _sigterm_as_interrupt():  # ray.init replaced ours
        return _run_phases(spec, tracking, connected, resume)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # the only one that may set signal handlers


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the sweep runs, SIGTERM does what Ctrl-C does: it calls whatever handles SIGINT now (inside a Ray Tune
    run, Tune's handler: the trials stop at their checkpoints and the sweep ends resumable; between runs, Python's:
    KeyboardInterrupt). Where SIGINT is ignored (a job started with `&` by a script inherits that), it raises
    KeyboardInterrupt itself. ``ray.init``'s own handler would exit at once, leaving trials and runs RUNNING."""
    if not _main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _sigint_restored() -> Iterator[None]:
    """Ray Tune installs its SIGINT handler for a run and leaves it behind; a Ctrl-C (or SIGTERM) after the run, as
    between a comparison's phases, would set a flag nobody reads. The handler from before the run comes back."""
    previous = signal.getsignal(signal.SIGINT) if _main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _run_phases(spec: SweepSpec, tracking: Any, connected: Any, resume: bool) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    state = _PhaseState(spec.folder / COMPARE_STATE)
    unfinished = 0
    for phase in spec.phases:
        if phase.name in state.done:
            continue
        points = spec.points
        if phase.kind == "final":
            connected.result()
            if state.points is None:  # chosen once; a resumed sweep re-runs the same configurations
                where = (tracking.client, tracking.experiment_id, tracking.parent)
                state.points = final_points(*where, spec.compare, spec.metric, spec.mode, spec.budget)
                state.save()
            if state.costs is None:  # measured once, alone, before the final runs share the machine
                state.costs = time_configurations(spec, state.points, tracking.say)
                state.save()
            tracking.costs = state.costs
            points = state.points
        tracking.begin(phase, len(points) if points is not None else spec.num_samples)
        with _sigint_restored():
            grid = _fit(spec, phase, tracking, points, resume and phase.tune_dir(spec.folder).exists())
        connected.result()
        unfinished = tracking.settle(grid)
        if unfinished:  # Ctrl-C: the sweep stops here and continues with --resume
            break
        if spec.compare:
            state.done.append(phase.name)
            state.save()
    return tracking.close(unfinished)


def _fit(spec: SweepSpec, phase: Phase, tracking: Any, points: Sequence[Point] | None, restore: bool) -> Any:
    """One Ray Tune run: restored from its folder, or started (sampling with Optuna, or over given points)."""
    from ray import tune

    scheduler = _scheduler(spec, phase) if phase.samples else None
    tune_dir = phase.tune_dir(spec.folder)
    trainable = _trainable(spec, tune_dir, milestones=getattr(scheduler, "milestones", []))
    concurrent = _concurrency(spec)
    if concurrent < spec.max_concurrent:
        needs = spec.trial_needs()
        tracking.say(
            f"{concurrent} trial(s) at a time, not {spec.max_concurrent}: each holds {spec.workers} workers "
            f"({needs['cpu']:g} CPU, {needs['gpu']:g} GPU in all), and this machine's Ray has no more"
        )
    if restore:
        # Unfinished trials continue from their checkpoints; errored ones get another chance from theirs too: a dead
        # driver can leave a trial errored that was not at fault. (Optuna keeps the FAIL it was told: it cannot
        # reopen a finished trial; MLflow records how the retry ends.)
        forget_pending_decisions(tune_dir)
        tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=True)
        # Ray unpickles its own copy of the callback: use ours, so that one object (one lock) talks to MLflow
        use_callbacks(tuner, [tracking])
        restored = restored_tune_config(tuner)  # the searcher and scheduler Ray restores its state into
        if phase.samples:  # the searcher reconciles with the journal before its first suggestion
            tracking.search_with(restored.search_alg, _resumable(restored.scheduler))
        return tuner.fit()
    run_config = tune.RunConfig(
        name=tune_dir.name,
        storage_path=str(tune_dir.parent),
        verbose=0,
        callbacks=[tracking],
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # every checkpoint kept until no snapshot can name it: the tracking callback deletes them (_checkpoints.py)
        checkpoint_config=tune.CheckpointConfig(),
    )
    if not phase.samples:  # a study's or a comparison's final runs: every point once, none stopped early
        tuner = tune.Tuner(
            trainable,
            param_space={"point": tune.grid_search([p.as_config()["point"] for p in points or ()])},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=spec.workers == 1),
            run_config=run_config,
        )
        return tuner.fit()
    search = _search(spec, phase)
    tracking.search_with(search, _resumable(scheduler))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search,
            scheduler=scheduler,
            metric=spec.metric,
            mode=spec.mode,
            # the searcher says when the study holds every ask (FINISHED), not Ray's count of the trials it made: a
            # resumed Ray counts from its last snapshot, and forgets the asks a killed driver made after it
            num_samples=-1,
            max_concurrent_trials=concurrent,
            reuse_actors=spec.workers == 1,  # a Ray Train driver is not reusable (and cheap)
        ),
        run_config=run_config,
    )
    return tuner.fit()


def _trainable(spec: SweepSpec, tune_dir: Path, milestones: Sequence[float]) -> Any:
    """What each Ray trial runs (``train_sampled`` with the sweep's payload) and the resources it holds."""
    from ray import tune

    payload = {
        "workload": spec.workload,
        "budget": spec.budget,
        "seeds": list(spec.seeds),
        "device": spec.device,
        "milestones": list(milestones),  # where ASHA decides: the trials report there
        "report_every_s": spec.checkpoint_every_s,
    }
    resources = {"cpu": spec.resources["cpu"], "gpu": spec.resources["gpu"]}
    if spec.workers > 1:  # the trial drives a Ray Train job: its workers ask for the resources, Ray places them
        payload.update(
            workers=spec.workers,
            resources=dict(spec.resources),
            max_failures=spec.max_failures,
            worker_start_timeout_s=spec.worker_start_timeout_s,
            train_storage=str(tune_dir),
        )
        resources = dict(DRIVER_RESOURCES)
    return tune.with_resources(tune.with_parameters(train_sampled, payload=payload), resources)


def _search(spec: SweepSpec, phase: Phase) -> Any:
    """The searcher of a sampled phase: one Optuna study over the space (its sampler seeded with the spec's seed),
    or one per tuning study of a comparison over its family (seeded with the study's own seed), all in the sweep's
    journal."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from ._optuna import DefineByRun, PerStudySearch, TruthfulOptunaSearch

    storage = JournalStorage(JournalFileBackend(str(spec.folder / "optuna.journal")))

    def searcher(study: TuningStudy | None, name: str) -> TruthfulOptunaSearch:
        found = TruthfulOptunaSearch(
            space=DefineByRun(str(spec.space), study),
            metric=list(spec.metrics) if len(spec.metrics) > 1 else spec.metric,
            mode=list(spec.modes) if len(spec.modes) > 1 else spec.mode,
            sampler_name=spec.sampler,
            seed=spec.seed if study is None else study.sampler_seed,
            trials=spec.compare.trials_per_family if study else spec.num_samples,  # the asks its study holds
            storage=storage,
            study_name=name,
        )
        found.scheduler_state = str(phase.asha_path(spec.folder, study))
        return found

    if not phase.studies:
        return searcher(None, spec.name)
    named = zip(phase.studies, phase.study_names(spec.name), strict=True)
    return PerStudySearch({s.key: searcher(s, name) for s, name in named})


def _resumable(scheduler: Any) -> Any:
    """The scheduler if it keeps records of its own across drivers (ASHA's), else None."""
    from ._asha import PerStudy, ResumableASHA

    return scheduler if isinstance(scheduler, PerStudy | ResumableASHA) else None


def _concurrency(spec: SweepSpec) -> int:
    """Trials at once: the spec's ``max_concurrent``, or, on a Ray this program started, no more multi-worker trials
    than its CPUs and GPUs hold. Tune cannot see a trial's Ray Train workers (they are not in its placement group):
    it would start trials whose workers then wait for each other's resources until their start times out. On a
    cluster ``autoaccel cluster validate`` checks the same against the cluster file."""
    import ray

    if spec.workers == 1 or len(ray.nodes()) > 1:
        return spec.max_concurrent
    there, needs = ray.cluster_resources(), spec.trial_needs()
    fits = [int(there.get(key.upper(), 0) // needs[key]) for key in ("cpu", "gpu") if needs[key] > 0]
    return max(1, min([spec.max_concurrent, *fits]))


class _PhaseState:
    """A comparison's progress across driver lives: the phases finished, the final points once chosen, and what a
    training step of each of them costs (the timing pass)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        saved = json.loads(path.read_text()) if path.exists() else {}
        self.done: list[str] = saved.get("done", [])
        points = saved.get("final")
        self.points: list[Point] | None = None if points is None else [Point.from_config(p) for p in points]
        self.costs: dict[str, float] | None = saved.get("costs")  # the timing pass's seconds per step

    def save(self) -> None:
        points = None if self.points is None else [p.as_config()["point"] for p in self.points]
        saved = {"done": self.done, "final": points, "costs": self.costs}
        _write_atomically(self.path, json.dumps(saved, indent=1))
