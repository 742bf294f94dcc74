"""The MLflow writer and batched logging, used by one process only (the driver, or ``autoaccel train``); URIs;
finding a sweep's parent run. The names it writes are ``_schema.py``'s.

A child run per trial holds params = the flattened trial config, metrics = the per-epoch history (step = epoch)
logged with one ``log_batch`` per epoch (one ``log_metric`` per value costs far more: ``docs/performance.md``), and
tags ``workload``, ``family``, ``seed``, ``status``, ``epochs``. Every run ends in a terminal MLflow state:
``FINISHED`` for the results ``completed``, ``stopped_early`` and ``diverged``, ``FAILED`` for ``errored``,
``KILLED`` for an interrupted trial.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from autoaccel.errors import ConfigError
from autoaccel.redaction import redact_uri

from ._mlflow_internals import sqlalchemy_engine
from ._schema import LEGACY_SWEEP_ID, SWEEP_ROLE, Tags, encode_param, search

__all__ = [
    "STATUSES",
    "EpochWriter",
    "Tracker",
    "check_tracking_uri",
    "default_tracking_uri",
    "find_sweep_parent",
    "flatten",
    "resolve_tracking_uri",
    "sweep_tracking_uri",
]

TERMINAL = {
    "completed": "FINISHED",
    "stopped_early": "FINISHED",
    "diverged": "FINISHED",
    "errored": "FAILED",
    "interrupted": "KILLED",
}
# Values of a report that are bookkeeping, not metrics.
_NOT_METRICS = {"status", "epoch", "epochs_planned"}
_MAX_METRICS = 1000  # MLflow's limit per log_batch
STATUSES = tuple(TERMINAL)  # every status a trial ends with


def default_tracking_uri(folder: str | os.PathLike[str] = ".") -> str:
    return f"sqlite:///{(Path(folder) / 'mlflow.db').resolve()}"


def resolve_tracking_uri(uri: str | None, folder: str | os.PathLike[str] = ".") -> str:
    """``uri`` with a relative SQLite path made absolute (trials run in other directories), or the default."""
    if not uri:
        return default_tracking_uri(folder)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(Path(folder) / uri[len('sqlite:///') :]).resolve()}"
    return uri


# The stores MLflow 3.17 opens (a SQLAlchemy URI may name its driver: postgresql+psycopg2://...).
_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "file", "http", "https", "databricks")
REACH_TIMEOUT_S = 5.0
_URIS = "an MLflow tracking URI: sqlite:///path.db, postgresql://, mysql://, mssql://, http(s)://host:port"


def check_tracking_uri(uri: str, key: str = "tracking.uri", source: str | None = None) -> None:
    """Raise ConfigError (naming ``key``) for a URI MLflow cannot open, or a tracking server that does not answer
    ``GET /health`` within a few seconds: MLflow itself would retry for minutes, printing nothing, or fail with a
    KeyError. A 401 or 403 counts as an answer (a server behind authentication)."""
    import http.client
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        scheme, host, port = parts.scheme.split("+")[0].lower(), parts.hostname, parts.port
    except ValueError as error:
        raise ConfigError(key, uri, f"a well-formed URI ({error})", source) from None
    folder = scheme == "file" or (scheme == "" and (uri.startswith("/") or Path(uri).is_dir()))  # MLflow's file store
    if folder and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1"):
        allowed = (
            f"{_URIS}; not a folder: MLflow 3.17 refuses its file store (it is in maintenance mode) unless "
            "MLFLOW_ALLOW_FILE_STORE=true; `mlflow migrate-filestore` moves an old one into a database"
        )
        raise ConfigError(key, uri, allowed, source)
    if scheme not in _SCHEMES and not folder:
        path = uri.removeprefix("./").rstrip("/")
        database = path if path.endswith(".db") else f"{path}/mlflow.db"
        hint = "" if scheme else f" (a path is not one; a SQLite file there: sqlite:///{database})"
        raise ConfigError(key, uri, f"{_URIS}{hint}", source)
    if scheme not in ("http", "https"):
        return  # a database (or a folder MLflow was told to allow): MLflow's own error names it, at once
    if not host:
        raise ConfigError(key, uri, "http(s)://host:port of an MLflow tracking server", source)
    kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    connection = kind(host, port, timeout=REACH_TIMEOUT_S)
    try:
        connection.request("GET", parts.path.rstrip("/") + "/health")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        status, reason = None, f"{type(error).__name__}: {getattr(error, 'strerror', None) or error}"
    finally:
        connection.close()
    if status in (200, 401, 403):
        return
    found = f"GET /health answered {status}" if status else f"no answer: {reason}"
    allowed = f"an MLflow server that answers within {REACH_TIMEOUT_S:g} s ({found}); start one with"
    raise ConfigError(key, uri, f"{allowed} `autoaccel tracking serve` or `mlflow server`", source)


def sweep_tracking_uri(experiment: str) -> str:
    """Where a sweep's runs are by default: its own store when `autoaccel sweep` put it in ``sweeps/<experiment>``,
    else ``./mlflow.db`` (what ``export`` and ``report`` read when no URI is given)."""
    folder = Path("sweeps") / experiment
    return default_tracking_uri(folder if (folder / "mlflow.db").exists() else ".")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"anderson": {"history": 5}}}`` → ``{"optimizer.anderson.history": 5}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def find_sweep_parent(
    client: Any, experiment_id: str, sweep: str | None = None, *, sweep_id: str | None = None, folder: str | None = None
) -> Any:
    """The newest parent run of a sweep in the experiment (of the sweep named ``sweep`` when given), or None.

    ``sweep_id``: exactly that sweep's parent (a driver finding its own: two sweeps of one name on one store, or a
    fresh start beside an older one, never share a parent). The id ``legacy`` is a sweep started before ids: its
    parent is the one without an id (or with that one) whose ``folder`` tag is ``folder``."""
    query = f"tags.`{Tags.ROLE}` = '{SWEEP_ROLE}'" + (f" and tags.`{Tags.SWEEP}` = '{sweep}'" if sweep else "")
    if sweep_id is not None and sweep_id != LEGACY_SWEEP_ID:
        query += f" and tags.`{Tags.SWEEP_ID}` = '{sweep_id}'"
    order = ["attributes.start_time DESC"]
    if sweep_id == LEGACY_SWEEP_ID:
        legacy = (
            r
            for r in search(client, experiment_id, query, order)
            if r.data.tags.get(Tags.SWEEP_ID, LEGACY_SWEEP_ID) == LEGACY_SWEEP_ID
        )
        return next((r for r in legacy if r.data.tags.get(Tags.FOLDER) == folder), None)
    return next(search(client, experiment_id, query, order), None)


class Tracker:
    """The one MLflow writer: creates the store, experiment and runs; logs epochs in batches."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | os.PathLike[str] | None = None) -> None:
        """``artifact_location``: where a new experiment keeps artifacts (MLflow's default is relative to the
        working directory, which differs between the driver, the trials and a later ``mlflow ui``)."""
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        if uri.startswith("sqlite:"):
            _write_ahead_log(self.client)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None and found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        if found is None:
            location = Path(artifact_location).resolve().as_uri() if artifact_location else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = found.experiment_id

    def start_run(
        self, name: str, params: Mapping[str, Any], tags: Mapping[str, Any], parent_id: str | None = None
    ) -> str:
        from mlflow.entities import RunTag

        tags = {**tags, **({Tags.PARENT: parent_id} if parent_id else {})}
        run = self.client.create_run(self.experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
        run_id = run.info.run_id
        self.log_params(run_id, params)
        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        return run_id

    def log_params(self, run_id: str, params: Mapping[str, Any], held: Collection[str] = ()) -> None:
        """``params`` (nested: flattened) on the run, but those it ``held`` already (MLflow refuses to change one):
        a run a kill left between its creation and its params gets them when its trial resumes."""
        from mlflow.entities import Param

        # MLflow caps a param value at 6000 characters; configs are far below it.
        flat = [Param(k, encode_param(v)) for k, v in flatten(params).items() if k not in held]
        for start in range(0, len(flat), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(run_id, params=flat[start : start + 100])

    def log_epoch(
        self, run_id: str, metrics: Mapping[str, Any], step: int, tags: Mapping[str, Any] | None = None
    ) -> None:
        """Every finite numeric value of ``metrics`` at ``step`` (and ``tags``) in one ``log_batch``."""
        self.log_epochs(run_id, [(metrics, step, tags)])

    def log_epochs(
        self, run_id: str, epochs: Sequence[tuple[Mapping[str, Any], int, Mapping[str, Any] | None]]
    ) -> None:
        """Several epochs' ``(metrics, step, tags)`` of one run in as few ``log_batch`` calls as MLflow allows (1,000
        values each), whole epochs per call, ``train_loss`` last in each: a resumed sweep reads the epochs logged off
        ``train_loss``, so it never counts an epoch whose other values a crash kept from being written."""
        from mlflow.entities import Metric, RunTag

        stamp = int(time.time() * 1000)
        batches: list[list[Metric]] = [[]]
        for metrics, step, _ in epochs:
            values = [
                Metric(key, float(value), stamp, step)
                for key, value in sorted(metrics.items(), key=lambda item: item[0] == "train_loss")
                if key not in _NOT_METRICS and _is_number(value) and math.isfinite(float(value))
            ]
            if len(batches[-1]) + len(values) > _MAX_METRICS:
                batches.append([])
            while len(values) > _MAX_METRICS:  # one epoch of more values than a call takes: its own calls
                batches[-1], values = values[:_MAX_METRICS], values[_MAX_METRICS:]
                batches.append([])
            batches[-1].extend(values)
        tags = [RunTag(k, str(v)) for _, _, epoch_tags in epochs for k, v in (epoch_tags or {}).items()]
        for i, batch in enumerate(batches):
            if batch or (tags and i == 0):
                self.client.log_batch(run_id, metrics=batch, tags=tags if i == 0 else [])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(self, run_id: str, status: str, tags: Mapping[str, Any] | None = None) -> None:
        """Tag the trial's status (and ``tags``) and end the run in the matching terminal MLflow state."""
        self.set_tags(run_id, {**(tags or {}), Tags.STATUS: status})
        self.client.set_terminated(run_id, TERMINAL[status])


class EpochWriter:
    """Per-epoch metrics written by a thread of its own, every epoch queued for a run in one ``log_batch``: the
    driver's event loop hands a result over and goes on (a SQLite commit per epoch, inline, stalled every trial's
    next report). ``flush`` waits until everything queued is written; a write that failed raises there, or at the
    next ``put``."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._pending: dict[str, list[tuple[Mapping[str, Any], int, Mapping[str, Any] | None]]] = {}
        self._busy = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="autoaccel-mlflow-writer", daemon=True)
        self._thread.start()

    def put(self, run_id: str, metrics: Mapping[str, Any], step: int, tags: Mapping[str, Any] | None = None) -> None:
        with self._changed:
            self._raise()
            self._pending.setdefault(run_id, []).append((dict(metrics), step, tags))
            self._changed.notify_all()

    def flush(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: (not self._pending and not self._busy) or self._error is not None)
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            # MLflow's own message names the URL it called, credentials included: redacted, and not chained
            message = f"writing epochs to MLflow ({self.tracker.uri}) failed: {type(error).__name__}: {error}"
            raise RuntimeError(redact_uri(message)) from None

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending))
                pending, self._pending, self._busy = self._pending, {}, True
            try:
                for run_id, epochs in pending.items():
                    self.tracker.log_epochs(run_id, epochs)
            except BaseException as error:  # kept for the driver, which flushes before it ends a run
                with self._changed:
                    self._error = error
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()


def _write_ahead_log(client: Any) -> None:
    """SQLite in WAL mode with ``synchronous=NORMAL``: a commit no longer waits for an fsync, a
    crash of the process loses nothing committed, and ``mlflow ui`` can read while the sweep writes. (Only for a
    local SQLite file: WAL does not work on network file systems, where a tracking server belongs anyway.)"""
    from sqlalchemy import event, text

    engine = sqlalchemy_engine(client)

    def configure(connection: Any, _: Any) -> None:
        connection.execute("PRAGMA synchronous=NORMAL")

    with engine.connect() as connection:
        connection.execute(text("PRAGMA journal_mode=WAL"))
    event.listen(engine, "connect", configure)
    engine.dispose()  # reopen pooled connections with the setting


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
