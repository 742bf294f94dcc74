"""Sweep specs (``trials/*.yaml``): the schema, and validation of everything before Ray starts.

::

    name: admissions-quickstart           # letters, digits, . _ -; the MLflow experiment and the sweep folder
    workload: {name: admissions_mlp}      # + the workload's options
    space: ../search_spaces/quickstart.yaml   # relative to this file
    budget: {epochs: 30, batch_size: 40}  # as a trial's budget (epochs or steps, batch_size, schedule, warmup_steps)
    search: {sampler: tpe, num_samples: 24, max_concurrent: 2, seed: 0, metric: val_mse, mode: min}
    scheduler: {type: asha, grace_period: 3, reduction_factor: 3}   # or {type: fifo}
    seeds: [0]                            # each configuration trains once per seed, in lockstep; the mean is ranked
    resources: {cpu: 1, gpu: 0}           # per trial; fractional gpu packs trials onto one device; with
                                          # workers: N > 1 a trial is a data-parallel job of N workers, each
                                          # with cpu and gpu (0 or 1: NCCL needs a GPU per worker)
    failure: {max_failures: 2, checkpoint_every_s: 10}   # retries of a trial that raised, from its last
                                          # checkpoint, taken at most this many seconds apart (0: every epoch)
    storage: sweeps                       # the sweep folder is <storage>/<name>; relative to the working directory
    tracking: {uri: null, experiment: null}   # default sqlite:///<storage>/<name>/mlflow.db, experiment = name
    device: auto                          # auto | cpu | cuda

A robustness study replaces ``space`` (and ``seeds``) with a ``study`` section that re-runs the best configurations
of a finished sweep over seeds and batch sizes (see :mod:`autoaccel.sweep.reruns`).

``search.metric``/``mode`` default to the workload's primary metric. ``sampler: nsga2`` takes a list of metrics
and modes (e.g. ``[val_mse, time_s]``, ``[min, min]``) and needs ``scheduler: fifo``: successive halving ranks
one number. Every error names the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from autoaccel.config import Hyperparameter, apply_overrides, check_all, check_int_list
from autoaccel.errors import ConfigError
from autoaccel.run.budget import check_budget
from autoaccel.tracking import resolve_tracking_uri
from autoaccel.workloads import Workload, get_workload
from autoaccel.workloads._registry import check_reaches_workers

from ._importable import make_importable
from .compare import FINAL_PHASE, TUNING_PHASE, Compare, TuningStudy, check_compare
from .reruns import study_points
from .space import SearchSpace, check, load_space
from .trainable import REPORT_EVERY_S

if TYPE_CHECKING:
    from .reruns import Point

__all__ = ["DRIVER_RESOURCES", "SAMPLERS", "SWEEP_ID", "TUNE_DIR", "Phase", "SweepSpec", "load_spec"]

TUNE_DIR = "tune"  # Ray's experiment(s) in the sweep folder
SWEEP_ID = "sweep_id"  # the file in the sweep folder with the sweep's unique id, tagged on its parent MLflow run
SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2")
_TOP = (
    "study",
    "compare",
    "name",
    "workload",
    "space",
    "budget",
    "search",
    "scheduler",
    "seeds",
    "resources",
    "failure",
    "storage",
    "tracking",
    "device",
    "description",
)
_SEARCH = (
    Hyperparameter("num_samples", int, 16, "configurations to try", 1),
    Hyperparameter("max_concurrent", int, 2, "trials running at once", 1),
    Hyperparameter("seed", int, 0, "seed of the sampler", 0),
)
_ASHA = (
    Hyperparameter("grace_period", int, 1, "epochs before a trial can be stopped", 1),
    Hyperparameter("reduction_factor", float, 3.0, "keep the best 1/η at each rung", 1.0, low_open=True),
)
_RESOURCES = (
    Hyperparameter("cpu", float, 1.0, "CPUs per trial (per worker when workers > 1)", 0.0, low_open=True),
    Hyperparameter("gpu", float, 0.0, "GPUs per trial (fractions share a device; per worker: 0 or 1)", 0.0),
    Hyperparameter("workers", int, 1, "data-parallel workers per trial (> 1: a Ray Train job)", 1),
)
# What the Tune trial of a multi-worker trial holds itself: it only drives its Ray Train workers, which Ray places
# apart (they are not part of the trial's placement group). No CPU: a sliver of one would split a node whose CPUs the
# workers fill exactly (4 workers × 12 CPUs on a 48-CPU node), and that node would then hold one worker fewer. Ray
# wants some resource per trial: one MiB of memory, which every node has.
DRIVER_RESOURCES = {"cpu": 0, "gpu": 0, "memory": 2**20}
_FAILURE = (
    Hyperparameter("max_failures", int, 1, "retries of a trial that raised", 0),
    Hyperparameter(
        "checkpoint_every_s",
        float,
        REPORT_EVERY_S,
        "seconds of a trial's work a crash may cost: it reports and checkpoints at least this often (0: every epoch)",
        0.0,
    ),
    Hyperparameter(
        "worker_start_timeout_s",
        float,
        300.0,
        "seconds a multi-worker trial waits for its workers (an autoscaling cluster adds nodes) before it fails",
        1.0,
    ),
)
# What every trial reports besides the workload's metrics.
TRIAL_METRICS = ("train_loss", "time_s", "step", "metric")


@dataclass(frozen=True)
class Phase:
    """One Ray Tune run of a sweep: the whole of a plain sweep or a study, or one stage of a comparison (the tuning
    of every family, each in its own independent studies, each with its own Optuna study and ASHA rungs; then the
    final runs). Where it keeps its state in the sweep folder follows from its name and studies."""

    name: str  # "" for a single-phase sweep; "tuning" or "final" in a comparison
    kind: str  # sweep | study | tuning | final
    studies: tuple[TuningStudy, ...] = ()  # a comparison's tuning: every family's independent studies

    def tune_dir(self, folder: Path) -> Path:
        return folder / TUNE_DIR / self.name if self.name else folder / TUNE_DIR

    def asha_path(self, folder: Path, study: TuningStudy | None = None) -> Path:
        return folder / (f"asha-{study.family}-{study.replicate}.json" if study else "asha.json")

    def asha_paths(self, folder: Path) -> list[Path]:
        """Where the scheduler(s) of this phase record the trials they stopped."""
        return [self.asha_path(folder, s) for s in self.studies] or [self.asha_path(folder)]

    def study_names(self, sweep: str) -> list[str]:
        """The Optuna study of each of a comparison's tuning studies, or the sweep's one."""
        return [f"{sweep}:{s.key}" for s in self.studies] or [sweep]

    @property
    def samples(self) -> bool:
        """Whether Optuna samples this phase (else it runs given points)."""
        return self.kind in ("sweep", "tuning")


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    name: str
    workload: dict[str, Any]
    space: Path | None
    budget: dict[str, Any]
    sampler: str
    num_samples: int
    max_concurrent: int
    seed: int
    metrics: tuple[str, ...]  # one, or several for nsga2
    modes: tuple[str, ...]
    scheduler: dict[str, Any]
    seeds: tuple[int, ...]
    resources: dict[str, float]
    max_failures: int
    checkpoint_every_s: float
    worker_start_timeout_s: float
    folder: Path
    tracking_uri: str
    experiment: str
    device: str
    raw: dict[str, Any]
    points: tuple[Point, ...] | None = None  # a robustness study: these trials instead of sampling a space
    study: dict[str, Any] | None = None
    compare: Compare | None = None  # a comparison: per-family tuning, then final runs on paired seeds

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def workers(self) -> int:
        return int(self.resources["workers"])

    def trial_needs(self) -> dict[str, float]:
        """What one running trial occupies in all, ``{"cpu": …, "gpu": …}``: its workers' (its driver takes none)."""
        if self.workers == 1:
            return {"cpu": self.resources["cpu"], "gpu": self.resources["gpu"]}
        return {
            "cpu": self.workers * self.resources["cpu"],
            "gpu": self.workers * self.resources["gpu"],
        }

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The Ray Tune runs of this sweep, in order."""
        if self.compare is not None:
            return (Phase(TUNING_PHASE, "tuning", self.compare.studies), Phase(FINAL_PHASE, "final"))
        return (Phase("", "study" if self.points else "sweep"),)

    @property
    def mode(self) -> str:
        return self.modes[0]

    @property
    def sweep_id(self) -> str:
        """The unique id the sweep in :attr:`folder` got when it started (the driver writes it there first)."""
        return (self.folder / SWEEP_ID).read_text().strip()


def _section(spec: Mapping[str, Any], key: str, table: tuple[Hyperparameter, ...], extra: Sequence[str] = ()) -> dict:
    raw = spec.get(key) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, "a mapping")
    checked = check_all(table, {k: v for k, v in raw.items() if k not in extra}, prefix=f"{key}.")
    return {**{h.name: h.default for h in table}, **checked, **{k: raw[k] for k in extra if k in raw}}


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a sweep spec (``overrides`` are ``--set key=value``); raise ConfigError naming the file."""
    path = Path(path)
    source = str(path)
    make_importable(path.parent, Path.cwd())  # a "module:Class" workload beside the spec or here, for Ray's workers too
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError("spec", source, f"a readable sweep spec ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError("spec", source, f"valid YAML ({error})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError("spec", raw, "a YAML mapping with at least name, workload, space and budget", source)
    try:
        raw = apply_overrides(raw, overrides)
        return _validate(path, raw)
    except ConfigError as error:
        raise (error if error.source else error.in_file(source)) from None


def _validate(path: Path, raw: dict[str, Any]) -> SweepSpec:
    for key in raw:
        if key not in _TOP:
            raise ConfigError(key, raw[key], "unknown key; allowed keys: " + ", ".join(_TOP))
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError("name", name, "a name of letters, digits, '.', '_' or '-'")
    spec = raw.get("workload")
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError("workload", spec, "a mapping with 'name' and the workload's options")
    workload = get_workload(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    check_reaches_workers(spec["name"])  # a class registered in this process only: Ray's workers never see it

    budget = check_budget(raw.get("budget"))
    resources = _resources(raw)  # first: a space's optimizers are built as a trial of this many workers builds them
    storage = raw.get("storage", "sweeps")
    if not isinstance(storage, str) or not storage:
        raise ConfigError("storage", storage, "a folder path (or a URI such as s3://bucket/path on a cluster)")
    folder = Path(storage).expanduser().resolve() / name
    points, study, space_path, space = _source(raw, path, folder, resources["workers"])

    search = _section(raw, "search", _SEARCH, extra=("sampler", "metric", "mode"))
    sampler = search.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError("search.sampler", sampler, "one of " + ", ".join(SAMPLERS))
    metrics, modes = _objectives(search, workload, sampler)
    scheduler = _scheduler(raw, budget, metrics, study=points is not None, comparison="compare" in raw)
    seeds = check_int_list(raw.get("seeds", [0]), "seeds", 0)
    compare = None
    if "compare" in raw:
        setting = {"workload": {"name": spec["name"], **workload.config}, "budget": budget}
        compare = _compare(raw, study, metrics, search, space, seeds, workload, resources["workers"], setting)
    failure = _section(raw, "failure", _FAILURE)
    num_samples = search["num_samples"]  # what the driver samples (a comparison: its tuning trials)
    if points:
        num_samples = len(points)
    elif compare:
        num_samples = compare.tuning_trials
    uri, experiment = _tracking(raw, name)
    return SweepSpec(
        path=path.resolve(),
        name=name,
        workload={"name": spec["name"], **workload.config},
        space=space_path,
        budget=budget,
        sampler=sampler,
        num_samples=num_samples,
        max_concurrent=search["max_concurrent"],
        seed=search["seed"],
        metrics=metrics,
        modes=modes,
        scheduler=scheduler,
        seeds=tuple(seeds),
        resources=resources,
        max_failures=failure["max_failures"],
        checkpoint_every_s=failure["checkpoint_every_s"],
        worker_start_timeout_s=failure["worker_start_timeout_s"],
        folder=folder,
        tracking_uri=resolve_tracking_uri(uri, folder),
        experiment=experiment,
        device=_device(raw, resources),
        raw=copy.deepcopy(raw),
        points=tuple(points) if points else None,
        study=study,
        compare=compare,
    )


def _resources(raw: Mapping[str, Any]) -> dict[str, Any]:
    resources = _section(raw, "resources", _RESOURCES)
    if resources["gpu"] > 1 and not float(resources["gpu"]).is_integer():
        raise ConfigError("resources.gpu", resources["gpu"], "a fraction ≤ 1 or a whole number of GPUs")
    if resources["workers"] > 1 and resources["gpu"] not in (0, 1):
        allowed = "0 or 1 per worker when workers > 1 (NCCL gives each worker one whole GPU)"
        raise ConfigError("resources.gpu", resources["gpu"], allowed)
    return resources


def _source(raw: Mapping[str, Any], path: Path, folder: Path, workers: int) -> tuple[Any, Any, Any, Any]:
    """What the sweep trains: (points, study section, space path, space) — a study's points, or a space."""
    study = raw.get("study")
    if study is None:
        space_path, space, samples = _space(path, raw.get("space"), workers)
        for sample in samples:  # a sampled budget.<key> must be a budget key with a valid value, with the spec's
            check_budget(sample.budget, f"space ({space_path}) budget", complete=False)
            check_budget({**raw.get("budget", {}), **sample.budget}, f"space ({space_path}) budget")
        return None, None, space_path, space
    for key in ("space", "seeds"):
        if key in raw:
            raise ConfigError(key, raw[key], "left out in a study: study.from and study.seeds give them")
    source = study.get("from") if isinstance(study, Mapping) else None
    # the source sweep's own default store, next to this sweep's folder
    points, study = study_points(study, resolve_tracking_uri(None, folder.parent / str(source)))
    return points, study, None, None


def _scheduler(
    raw: Mapping[str, Any], budget: Mapping[str, Any], metrics: Sequence[str], *, study: bool, comparison: bool
) -> dict[str, Any]:
    """The ``scheduler`` section: ASHA by default in a plain sweep; FIFO (every trial its whole budget) in a study,
    and by default in a comparison, whose verdict must not judge a family by its first epochs."""
    scheduler = dict(raw.get("scheduler") or {"type": "fifo" if study or comparison else "asha"})
    kind = scheduler.pop("type", "asha")
    if kind not in ("asha", "fifo"):
        raise ConfigError("scheduler.type", kind, "one of asha, fifo")
    if study and kind != "fifo":
        raise ConfigError("scheduler.type", kind, "fifo in a study (a truncated run is no robustness evidence)")
    if kind == "asha":
        scheduler = {**{h.name: h.default for h in _ASHA}, **check_all(_ASHA, scheduler, prefix="scheduler.")}
        if budget["epochs"] is None:
            raise ConfigError("scheduler.type", kind, "fifo with a budget in steps (ASHA's rungs are epochs)")
        if len(metrics) > 1:
            raise ConfigError("scheduler.type", kind, "fifo with several objectives (ASHA ranks one metric)")
        if scheduler["grace_period"] > budget["epochs"]:
            allowed = f"at most budget.epochs ({budget['epochs']}): ASHA's first rung must lie inside the budget"
            raise ConfigError("scheduler.grace_period", scheduler["grace_period"], allowed)
    elif scheduler:
        raise ConfigError(f"scheduler.{next(iter(scheduler))}", next(iter(scheduler.values())), "no options for fifo")
    scheduler["type"] = kind
    return scheduler


def _compare(
    raw: Mapping[str, Any],
    study: Any,
    metrics: Sequence[str],
    search: Mapping[str, Any],
    space: SearchSpace,
    seeds: Sequence[int],
    workload: Workload,
    workers: int,
    setting: Mapping[str, Any],
) -> Compare:
    if study is not None:
        raise ConfigError("compare", raw["compare"], "left out in a study (a study re-runs a finished sweep)")
    if len(metrics) > 1:
        raise ConfigError("search.metric", list(metrics), "one metric in a comparison (a verdict ranks one)")
    if "num_samples" in (raw.get("search") or {}):
        allowed = "left out in a comparison: compare.tuning.trials_per_family sets each family's tuning budget"
        raise ConfigError("search.num_samples", search["num_samples"], allowed)
    batch = setting["budget"]["batch_size"] or workload.default_batch_size
    compare = check_compare(raw["compare"], space, seeds, batch, search["seed"], setting)
    for family in compare.families:  # every family builds, not only those 20 random draws happened to pick
        check(space, n=5, seed=0, family=family, workers=workers)
    return compare


def _device(raw: Mapping[str, Any], resources: Mapping[str, Any]) -> str:
    device = raw.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError("device", device, "one of auto, cpu, cuda")
    if device == "cpu" and resources["workers"] > 1 and resources["gpu"] > 0:
        allowed = "auto or cuda when workers > 1 have a GPU each (NCCL trains on GPUs), or resources.gpu: 0"
        raise ConfigError("device", device, allowed)
    if device == "cuda" and resources["gpu"] == 0:
        raise ConfigError(
            "device", device, "auto or cpu when resources.gpu is 0 (a trial uses only the GPU it asks for)"
        )
    return device


def _tracking(raw: Mapping[str, Any], name: str) -> tuple[str | None, str]:
    """(the tracking URI given, or None for the sweep folder's own store; the MLflow experiment)."""
    tracking = raw.get("tracking") or {}
    if not isinstance(tracking, Mapping) or set(tracking) - {"uri", "experiment"}:
        raise ConfigError("tracking", tracking, "a mapping with uri and/or experiment")
    uri = tracking.get("uri")
    if uri is not None and not isinstance(uri, str):
        raise ConfigError("tracking.uri", uri, "an MLflow tracking URI, e.g. sqlite:///mlflow.db or http://host:5000")
    return uri, tracking.get("experiment") or name


def _space(path: Path, space_file: Any, workers: int) -> tuple[Path, SearchSpace, list[Any]]:
    if not isinstance(space_file, str):
        raise ConfigError("space", space_file, "the path of a search-space YAML file, relative to the spec")
    space_path = (path.parent / space_file).resolve()
    if not space_path.is_file():
        raise ConfigError("space", space_file, f"an existing search-space file, relative to the spec ({space_path})")
    space = load_space(space_path)
    samples = check(space, n=20, seed=0, workers=workers)  # errors name the space file; impossible stacks fail here
    return space_path, space, samples


def _objectives(search: Mapping[str, Any], workload: Workload, sampler: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    produced = (*workload.metrics, *TRIAL_METRICS)
    metric = search.get("metric", workload.metric)
    metrics = tuple(metric) if isinstance(metric, list) else (metric,)
    for m in metrics:
        if m not in produced:
            raise ConfigError("search.metric", m, f"a metric {workload.name} reports: " + ", ".join(produced))
    default_mode = [workload.mode if m in workload.metrics or m == "metric" else "min" for m in metrics]
    mode = search.get("mode", default_mode if len(metrics) > 1 else default_mode[0])
    modes = tuple(mode) if isinstance(mode, list) else (mode,)
    if len(modes) != len(metrics) or any(m not in ("min", "max") for m in modes):
        raise ConfigError("search.mode", mode, f"min or max for each of {len(metrics)} metric(s)")
    if (sampler == "nsga2") != (len(metrics) > 1):
        allowed = "one metric unless search.sampler is nsga2" if len(metrics) > 1 else "a list of ≥ 2 metrics for nsga2"
        raise ConfigError("search.metric", metric, allowed)
    return metrics, modes
