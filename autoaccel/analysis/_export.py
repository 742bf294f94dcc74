"""Export sweeps from MLflow into two Arrow tables (and Parquet files) readable with plain pyarrow or pandas.

``runs``: one row per trial (an MLflow child run; a sweep's parent run is left out), sorted by
(experiment, start_time, run_id); its columns, in this order:

    run_id string, experiment string, sweep string, trial_id string, workload string, family string,
    technique string, seed string,
    phase string         tuning | final in a comparison, else null,
    tuning_replicate int64, sampler_seed int64   a comparison's trial: which of its family's independent tuning
                         studies (a final run: whose choice it re-runs), and that study's sampler seed; else null,
    cost_per_step_s double   a comparison's final run: its configuration's seconds per step, timed alone,
    baseline string      the family a comparison measures this trial's family against, else null,
    status string        completed | stopped_early | diverged | errored | interrupted,
    epochs int64,
    crashes int64        times the trial crashed and was retried from its checkpoint (null: not recorded),
    world_size int64     its data-parallel workers (null: not recorded, runs from before multi-worker trials),
    metric_name string   the key the ``metric`` history holds (the parent's ``workload_metric`` tag),
    mode string          its direction, min | max (the parent's ``workload_mode`` tag),
    target float64       the workload's target for time-to-target (the parent's ``target`` tag),
    sweep_metric string, sweep_mode string   what the sweep ranked trials by (the parent's ``metric``/``mode``),
    protocol string      a comparison's tuning protocol as its parent run recorded it (JSON), else null,
    <param> ...          one column per MLflow param (``optimizer.lr``, ``budget.epochs``, ``seeds`` ...), sorted by
                         name, typed from all its values: bool, int64, float64, else string; 'None'/'null' and an
                         absent (conditional) param are null,
    final_metric float64, best_metric float64   last (null for a diverged or errored run: it has no final result),
                                                and best per ``mode``, value of the ``metric`` history,
    final_<key> float64 ...                     last value of every other logged metric, sorted by key,
    wall_time_s float64                         last ``time_s``,
    time_to_target_s float64, steps_to_target int64   ``time_s`` and ``step`` at the first epoch whose ``metric``
                                                      reaches ``target`` (null if never, or no target),
    start_time timestamp[ms, UTC], end_time timestamp[ms, UTC], mlflow_status string.

``history``: one row per logged metric value of those trials (NaN where MLflow recorded NaN), sorted by
(run_id, key, epoch, time, value):

    run_id string, epoch int64 (the MLflow step), step int64 (the run's ``step`` metric at that epoch, i.e. optimizer
    steps so far; null if not logged), key string, value float64, time int64 (MLflow timestamp, ms).

Two readers fetch the same raw rows (runs, tags, params, metric values) and one function builds the tables from
them: a ``sqlite:///`` store is read straight from its tables through a read-only connection (far faster than the
MLflow API, which needs a request per run and metric key: ``docs/performance.md``, ``benchmarks/export_speed.py``);
any other store (a tracking server, Postgres) goes through ``MlflowClient``.
Deleted runs and experiments are left out, as MLflow's searches leave them out.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from autoaccel.redaction import redact_uri
from autoaccel.tracking import SWEEP_ROLE, Tags, decode_param, decode_space, search

__all__ = ["SPACES_KEY", "declared_spaces", "export", "export_experiments", "write_parquet"]

# The ``runs`` table's schema metadata key (kept in its Parquet file): experiment → the search space its sweep
# declared (family → column → distribution, as ``autoaccel.tracking.decode_space`` reads it from the parent run).
SPACES_KEY = b"autoaccel.spaces"

METHODS = ("auto", "sql", "api")
_SQLITE = "sqlite:///"
# The columns the SQL reader needs; a store whose schema lacks one is read through the API instead.
_SCHEMA = {
    "experiments": {"experiment_id", "name", "lifecycle_stage"},
    "runs": {"run_uuid", "experiment_id", "status", "start_time", "end_time", "lifecycle_stage"},
    "tags": {"run_uuid", "key", "value"},
    "params": {"run_uuid", "key", "value"},
    "metrics": {"run_uuid", "key", "step", "value", "timestamp", "is_nan"},
}
_METRIC_SCHEMA = pa.schema(
    {"run_id": pa.string(), "key": pa.string(), "epoch": pa.int64(), "value": pa.float64(), "time": pa.int64()}
)
_HISTORY_SORT = [("run_id", "ascending"), ("key", "ascending"), ("epoch", "ascending"), ("time", "ascending")]
_TIMESTAMP = pa.timestamp("ms", tz="UTC")


@dataclass
class _Raw:
    """What either reader fetches for the requested experiments, before any interpretation."""

    experiments: dict[str, str]  # experiment id → name
    runs: list[tuple[str, str, str, int | None, int | None]]  # run_id, experiment id, status, start, end (ms)
    tags: list[tuple[str, str, str | None]]  # run_id, key, value
    params: list[tuple[str, str, str]]  # run_id, key, value
    metrics: pa.Table  # _METRIC_SCHEMA, every logged value, in no particular order


# -- public API ---------------------------------------------------------------------------------------------------
def export_experiments(
    experiments: Sequence[str], tracking_uri: str, *, method: str = "auto"
) -> tuple[pa.Table, pa.Table]:
    """The ``runs`` and ``history`` tables (see the module docstring) of the named MLflow experiments.

    ``method``: ``"auto"`` reads a ``sqlite:///`` store directly and any other through the MLflow API; ``"sql"``
    and ``"api"`` force one reader (both give identical tables). Raises ``ValueError`` for an unknown experiment
    (listing the existing ones), an experiment without trial runs, or a SQLite file that does not exist.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    names = list(dict.fromkeys(experiments))  # the order given, once each
    if not names:
        raise ValueError("no experiment to export: name at least one")
    path = _sqlite_path(tracking_uri)
    if method == "sql" and path is None:
        raise ValueError(f"method 'sql' needs a sqlite:/// tracking URI, not {redact_uri(tracking_uri)!r}")
    raw = None
    if path is not None and method != "api":
        raw = _read_sqlite(path, names, tracking_uri)
        if raw is None and method == "sql":
            raise ValueError(f"{path} does not have the MLflow schema the SQL reader knows")
    if raw is None:
        raw = _read_api(tracking_uri, names)
    return _build(raw, names)


def write_parquet(runs: pa.Table, history: pa.Table, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``runs.parquet`` and ``history.parquet`` under ``out_dir`` (created if needed)."""
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "runs.parquet", out / "history.parquet"
    for table, path in zip((runs, history), paths, strict=True):
        partial = path.with_name(path.name + ".part")
        pq.write_table(table, partial)
        partial.replace(path)  # a reader never sees half a file, and a failed export leaves the previous one
    return paths


def read_parquet(folders: Sequence[str | Path], experiments: Sequence[str] = ()) -> tuple[pa.Table, pa.Table]:
    """The ``runs`` and ``history`` tables that :func:`write_parquet` wrote in ``folders``, joined (columns one
    folder lacks are null), restricted to ``experiments`` when given. Raises ``ValueError`` naming what is missing."""
    import pyarrow.parquet as pq

    runs, history = [], []
    for folder in folders:
        paths = Path(folder) / "runs.parquet", Path(folder) / "history.parquet"
        for path in paths:
            if not path.is_file():
                raise ValueError(f"{path}: no such file (a folder written by `autoaccel export` or `report`)")
        runs.append(pq.read_table(paths[0]))
        history.append(pq.read_table(paths[1]))
    try:
        runs_table = pa.concat_tables(runs, promote_options="permissive")
        history_table = pa.concat_tables(history, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:  # one column typed differently in two exports
        raise ValueError(f"{', '.join(map(str, folders))}: tables that do not join ({error})") from None
    # the same folder twice, or overlapping exports: each run once (a run counted twice would double its weight);
    # a run whose rows differ between folders (an older export beside a newer one) is no one run: refused
    ids = runs_table.column("run_id").to_pylist()
    if len(set(ids)) < len(ids):
        frame = runs_table.to_pandas()
        distinct = frame.astype(str).drop_duplicates()
        differing = sorted(set(distinct["run_id"][distinct["run_id"].duplicated()]))
        if differing:
            raise ValueError(
                f"{', '.join(map(str, folders))}: run(s) {', '.join(differing[:5])} differ between folders (exports "
                "of different moments?): give each run once"
            )
        runs_table = runs_table.take(sorted({run_id: i for i, run_id in reversed(list(enumerate(ids)))}.values()))
        history_table = pa.Table.from_pandas(history_table.to_pandas().drop_duplicates(), preserve_index=False)
    if experiments:
        found = set(runs_table.column("experiment").to_pylist())
        missing = [e for e in experiments if e not in found]
        if missing:
            raise ValueError(
                f"{', '.join(missing)}: not in {', '.join(map(str, folders))} (found {', '.join(sorted(found))})"
            )
        runs_table = runs_table.filter(pc.is_in(runs_table.column("experiment"), pa.array(list(experiments))))
        history_table = history_table.filter(pc.is_in(history_table.column("run_id"), runs_table.column("run_id")))
    spaces = {name: space for table in runs for name, space in declared_spaces(table).items()}
    if experiments:
        spaces = {name: space for name, space in spaces.items() if name in experiments}
    return _with_spaces(runs_table, spaces), history_table


def export(experiments: Sequence[str], tracking_uri: str, out_dir: str | Path) -> dict[str, Any]:
    """Export the experiments to ``out_dir``; return the file paths (as strings), row counts and seconds taken."""
    started = time.perf_counter()
    runs, history = export_experiments(experiments, tracking_uri)
    runs_path, history_path = write_parquet(runs, history, out_dir)
    return {
        "experiments": list(dict.fromkeys(experiments)),
        "tracking_uri": tracking_uri,
        "runs": str(runs_path),
        "history": str(history_path),
        "runs_rows": runs.num_rows,
        "history_rows": history.num_rows,
        "seconds": time.perf_counter() - started,
    }


# -- the two readers ----------------------------------------------------------------------------------------------
def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working folder, like SQLAlchemy), else None."""
    if not uri.startswith(_SQLITE):
        return None
    location = uri[len(_SQLITE) :].split("?", 1)[0]  # SQLAlchemy URL options (``?timeout=20``) are not the path
    if location in ("", ":memory:"):
        return None
    return Path(location).resolve()


def _read_sqlite(path: Path, names: list[str], uri: str) -> _Raw | None:
    """Fetch the raw rows with plain SQL; None when the schema is not the one expected (then the API reads it)."""
    if not path.is_file():  # the API would create an empty store there: say so instead
        raise ValueError(f"no MLflow database at {path} (tracking URI {uri})")
    # mode=ro: the export can never write to, lock for writing, or migrate a store a sweep may be writing to.
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        if not _schema_known(connection):
            warnings.warn(f"{path}: unknown MLflow schema, exporting through the MLflow API", stacklevel=3)
            return None
        connection.execute("BEGIN")  # one read snapshot for every query, even while a sweep commits epochs
        existing = connection.execute("SELECT name, experiment_id FROM experiments WHERE lifecycle_stage = 'active'")
        ids = _experiment_ids(names, dict(existing.fetchall()), uri)  # MLflow's SQL ids are integers
        active = f"FROM runs WHERE experiment_id IN ({','.join('?' * len(ids))}) AND lifecycle_stage = 'active'"
        in_runs = f"run_uuid IN (SELECT run_uuid {active})"
        runs = connection.execute(
            f"SELECT run_uuid, CAST(experiment_id AS TEXT), status, start_time, end_time {active}", ids
        ).fetchall()
        tags = connection.execute(f"SELECT run_uuid, key, value FROM tags WHERE {in_runs}", ids).fetchall()
        params = connection.execute(f"SELECT run_uuid, key, value FROM params WHERE {in_runs}", ids).fetchall()
        # MLflow stores NaN as 0 with is_nan = 1; NULL marks it here (value is NOT NULL) and becomes NaN below.
        value = "CASE WHEN is_nan THEN NULL ELSE value END"
        metrics = connection.execute(
            f"SELECT run_uuid, key, step, {value}, timestamp FROM metrics WHERE {in_runs}", ids
        ).fetchall()
    finally:
        connection.close()
    experiments = {str(id_): name for name, id_ in zip(names, ids, strict=True)}
    return _Raw(experiments, runs, tags, params, _metric_table(metrics))


def _schema_known(connection: sqlite3.Connection) -> bool:
    for table, needed in _SCHEMA.items():
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if not needed <= present:
            return False
    return True


def _read_api(uri: str, names: list[str]) -> _Raw:
    """Fetch the raw rows through ``MlflowClient``: pages of ``search_runs``, one ``get_metric_history`` per run
    and key (the client has no bulk history call)."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    existing = {e.name: e.experiment_id for e in _pages(client.search_experiments, view_type=ViewType.ACTIVE_ONLY)}
    ids = _experiment_ids(names, existing, uri)
    raw = _Raw({id_: name for name, id_ in zip(names, ids, strict=True)}, [], [], [], _metric_table([]))
    metrics: list[tuple[str, str, int, float, int]] = []
    for run in search(client, ids):
        info, data = run.info, run.data
        raw.runs.append((info.run_id, str(info.experiment_id), info.status, info.start_time, info.end_time))
        raw.tags.extend((info.run_id, key, value) for key, value in data.tags.items())
        raw.params.extend((info.run_id, key, value) for key, value in data.params.items())
        for key in data.metrics:  # the latest value of each key: the keys the run has logged
            history = client.get_metric_history(info.run_id, key)
            metrics.extend((info.run_id, key, m.step, m.value, m.timestamp) for m in history)
    raw.metrics = _metric_table(metrics)
    return raw


def _pages(search: Any, *args: Any, **kwargs: Any) -> Iterable[Any]:
    token = None
    while True:
        page = search(*args, **kwargs, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _experiment_ids(names: list[str], existing: dict[str, Any], uri: str) -> list[Any]:
    missing = [name for name in names if name not in existing]
    if missing:
        known = ", ".join(sorted(existing)) or "none"
        shown = redact_uri(uri)
        raise ValueError(f"no MLflow experiment named {', '.join(map(repr, missing))} in {shown}; existing: {known}")
    return [existing[name] for name in names]


def _metric_table(rows: list[tuple[str, str, int, float | None, int]]) -> pa.Table:
    """(run_id, key, step, value, timestamp) tuples as a table of _METRIC_SCHEMA."""
    # One struct conversion in C: half the time of transposing 500k tuples in Python first.
    table = pa.Table.from_struct_array(pa.array(rows, pa.struct(_METRIC_SCHEMA)))
    return table.set_column(3, "value", pc.fill_null(table["value"], math.nan))  # the SQL reader's NULL is NaN


# -- building the tables (shared by both readers) -----------------------------------------------------------------
def _build(raw: _Raw, names: list[str]) -> tuple[pa.Table, pa.Table]:
    tags = _by_run(raw.tags)
    params = _by_run(raw.params)
    parents = _parent_ids(raw.runs, tags)
    trials = [run for run in raw.runs if run[0] not in parents]
    _require_trials(raw, trials, parents)
    trials.sort(key=lambda run: (raw.experiments[run[1]], run[3] is None, run[3] or 0, run[0]))
    history = _history(raw.metrics, [run[0] for run in trials])
    runs = _runs_table(raw, trials, tags, params, history)
    spaces: dict[str, Any] = {}
    for run in sorted((r for r in raw.runs if r[0] in parents), key=lambda r: r[3] or 0):  # the newest sweep last
        declared = decode_space(tags.get(run[0], {}))
        if declared:
            spaces.setdefault(raw.experiments[run[1]], {}).update(declared)
    return _with_spaces(runs, spaces), history


def _with_spaces(runs: pa.Table, spaces: dict[str, Any]) -> pa.Table:
    return runs.replace_schema_metadata({**(runs.schema.metadata or {}), SPACES_KEY: json.dumps(spaces).encode()})


def declared_spaces(runs: pa.Table) -> dict[str, Any]:
    """experiment → the search space its sweep declared (empty for sweeps from before it was recorded)."""
    return json.loads((runs.schema.metadata or {}).get(SPACES_KEY, b"{}"))


def _by_run(rows: Iterable[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for run_id, key, value in rows:
        out.setdefault(run_id, {})[key] = value
    return out


def _parent_ids(runs: list[tuple], tags: dict[str, dict[str, Any]]) -> set[str]:
    """A sweep's parent run: tagged ``autoaccel.role=sweep``, or named by a run's ``mlflow.parentRunId``. Without
    either (runs of ``autoaccel train``, or another tool's flat runs) every run is a trial."""
    ids = {run[0] for run in runs}
    parents = {run_id for run_id in ids if tags.get(run_id, {}).get(Tags.ROLE) == SWEEP_ROLE}
    return parents | {tags.get(run_id, {}).get(Tags.PARENT) for run_id in ids} & ids


def _require_trials(raw: _Raw, trials: list[tuple], parents: set[str]) -> None:
    counted = {run[1] for run in trials}
    for id_, name in raw.experiments.items():
        if id_ not in counted:
            only = sum(1 for run in raw.runs if run[1] == id_ and run[0] in parents)
            detail = f" (only {only} sweep parent run(s): no trial has started)" if only else ""
            raise ValueError(f"MLflow experiment {name!r} has no runs to export{detail}")


def _history(metrics: pa.Table, run_ids: list[str]) -> pa.Table:
    table = metrics.filter(pc.is_in(metrics["run_id"], pa.array(run_ids, pa.string())))
    steps = _last_per_epoch(table, "step")
    step = pc.cast(steps["step"], pa.int64(), safe=False)  # optimizer steps, logged as floats (8.0)
    table = table.join(steps.set_column(2, "step", step), keys=["run_id", "epoch"], join_type="left outer")
    # A join returns rows in any order, and the API returns them in another: sort on every column to be exact.
    table = table.sort_by([*_HISTORY_SORT, ("value", "ascending")])
    return table.select(["run_id", "epoch", "step", "key", "value", "time"])


def _last_per_epoch(metrics: pa.Table, key: str) -> pa.Table:
    """(run_id, epoch, <key>): the run's last value of ``key`` logged at each epoch (a resumed trial may log an
    epoch twice); a non-finite value is null."""
    rows = metrics.filter(pc.equal(metrics["key"], key)).sort_by([*_HISTORY_SORT, ("value", "ascending")])
    rows = rows.filter(pc.is_finite(rows["value"]))
    last = rows.group_by(["run_id", "epoch"], use_threads=False).aggregate([("value", "last")])
    return pa.table({"run_id": last["run_id"], "epoch": last["epoch"], key: last["value_last"]})


def _runs_table(
    raw: _Raw, trials: list[tuple], tags: dict[str, dict], params: dict[str, dict], history: pa.Table
) -> pa.Table:
    ids = [run[0] for run in trials]
    own = [tags.get(run_id, {}) for run_id in ids]
    sweep = [tags.get(t.get("mlflow.parentRunId"), {}) for t in own]  # the parent's tags: what the sweep measured
    mode = [s.get("workload_mode", s.get("mode")) for s in sweep]
    target = [_float(s.get("target")) for s in sweep]
    columns: dict[str, pa.Array] = {
        "run_id": pa.array(ids, pa.string()),
        "experiment": pa.array([raw.experiments[run[1]] for run in trials], pa.string()),
        "sweep": _strings(t.get("autoaccel.sweep", s.get("autoaccel.sweep")) for t, s in zip(own, sweep, strict=True)),
        "trial_id": _strings(t.get("trial_id") for t in own),
        "workload": _strings(t.get("workload", s.get("workload")) for t, s in zip(own, sweep, strict=True)),
        "family": _strings(t.get("family") for t in own),
        "technique": _strings(t.get("technique") for t in own),
        "seed": _strings(t.get("seed") for t in own),
        # a comparison's trials: tuning or final, and the family each technique is measured against
        "phase": _strings(t.get("phase") for t in own),
        # which of its family's independent tuning studies (a final run: whose choice it re-runs); null before them
        "tuning_replicate": pa.array([_int(t.get(Tags.REPLICATE)) for t in own], pa.int64()),
        "sampler_seed": pa.array([_int(t.get(Tags.SAMPLER_SEED)) for t in own], pa.int64()),
        "cost_per_step_s": pa.array([_float(t.get(Tags.COST_PER_STEP)) for t in own], pa.float64()),
        "baseline": _strings(_baseline(t.get("family"), s) for t, s in zip(own, sweep, strict=True)),
        "status": _strings(t.get("status") for t in own),
        "epochs": pa.array([_int(t.get("epochs")) for t in own], pa.int64()),
        "crashes": pa.array([_int(t.get("crashes")) for t in own], pa.int64()),
        "world_size": pa.array([_int(t.get("world_size")) for t in own], pa.int64()),
        # The ``metric`` history holds the workload's primary metric; the sweep may rank by another one.
        "metric_name": _strings(s.get("workload_metric", s.get("metric")) for s in sweep),
        "mode": _strings(mode),
        "target": pa.array(target, pa.float64()),
        "sweep_metric": _strings(s.get("metric") for s in sweep),
        "sweep_mode": _strings(s.get("mode") for s in sweep),
        # a comparison's tuning protocol (studies, scheduler, sampler, margin, what they can cost), JSON
        "protocol": _strings(s.get(Tags.PROTOCOL) for s in sweep),
    }
    summary = _metric_summary(history, ids, mode, target)
    for key in sorted({key for run_id in ids for key in params.get(run_id, {})}):
        name = key if key not in columns and key not in summary else f"param.{key}"
        columns[name] = _typed([params.get(run_id, {}).get(key) for run_id in ids])
    failed = pc.is_in(columns["status"], pa.array(["diverged", "errored"]))
    # a failed run has no final result: its last logged value is from before the failure, never a stand-in for one
    summary["final_metric"] = pc.if_else(failed, pa.scalar(None, pa.float64()), summary["final_metric"])
    columns.update(summary)
    columns["start_time"] = pa.array([run[3] for run in trials], _TIMESTAMP)
    columns["end_time"] = pa.array([run[4] for run in trials], _TIMESTAMP)
    columns["mlflow_status"] = pa.array([run[2] for run in trials], pa.string())
    return pa.table(columns)


def _metric_summary(history: pa.Table, ids: list[str], mode: list[str | None], target: list[float | None]) -> dict:
    """final_metric, best_metric, final_<key> (sorted), wall_time_s, time_to_target_s, steps_to_target: one value
    per run of ``ids``, null where the run did not log what it takes."""
    # history is sorted by (run_id, key, epoch, time): "last" is the value of the latest epoch, as MLflow reports it
    last = history.group_by(["run_id", "key"], use_threads=False).aggregate([("value", "last")])
    finals = _pivot(last["run_id"], last["key"], last["value_last"])
    metric = history.filter(pc.and_(pc.equal(history["key"], "metric"), pc.invert(pc.is_nan(history["value"]))))
    extremes = metric.group_by(["run_id"], use_threads=False).aggregate([("value", "min"), ("value", "max")])
    low = dict(zip(extremes["run_id"].to_pylist(), extremes["value_min"].to_pylist(), strict=True))
    high = dict(zip(extremes["run_id"].to_pylist(), extremes["value_max"].to_pylist(), strict=True))
    reached = _reached(history, metric, ids, mode, target)
    pick = {"min": low, "max": high}
    best = [pick[m].get(run_id) if m in pick else None for run_id, m in zip(ids, mode, strict=True)]
    columns = {
        "final_metric": pa.array([finals.get("metric", {}).get(run_id) for run_id in ids], pa.float64()),
        "best_metric": pa.array(best, pa.float64()),
    }
    for key in sorted(set(finals) - {"metric"}):
        columns[f"final_{key}"] = pa.array([finals[key].get(run_id) for run_id in ids], pa.float64())
    columns["wall_time_s"] = pa.array([finals.get("time_s", {}).get(run_id) for run_id in ids], pa.float64())
    columns["time_to_target_s"] = pa.array([reached.get(run_id, (None, None))[0] for run_id in ids], pa.float64())
    columns["steps_to_target"] = pa.array([reached.get(run_id, (None, None))[1] for run_id in ids], pa.int64())
    return columns


def _pivot(run_ids: pa.ChunkedArray, keys: pa.ChunkedArray, values: pa.ChunkedArray) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for run_id, key, value in zip(run_ids.to_pylist(), keys.to_pylist(), values.to_pylist(), strict=True):
        out.setdefault(key, {})[run_id] = value
    return out


def _reached(
    history: pa.Table, metric: pa.Table, ids: list[str], mode: list[str | None], target: list[float | None]
) -> dict[str, tuple[float | None, int | None]]:
    """run_id → (``time_s``, ``step``) at the first epoch whose ``metric`` reaches the run's target (min: ≤,
    max: ≥); runs that never reach it, or have no target or mode, are absent."""
    goals = pa.table(
        {"run_id": pa.array(ids, pa.string()), "mode": _strings(mode), "target": pa.array(target, pa.float64())}
    )
    rows = metric.join(goals, keys="run_id", join_type="inner")
    at_most = pc.and_(pc.equal(rows["mode"], "min"), pc.less_equal(rows["value"], rows["target"]))
    at_least = pc.and_(pc.equal(rows["mode"], "max"), pc.greater_equal(rows["value"], rows["target"]))
    rows = rows.filter(pc.or_(at_most, at_least))  # a null mode or target compares as null: dropped
    rows = rows.join(_last_per_epoch(history, "time_s"), keys=["run_id", "epoch"], join_type="left outer")
    rows = rows.sort_by([("run_id", "ascending"), ("epoch", "ascending"), ("time", "ascending")])
    whole = pc.ScalarAggregateOptions(skip_nulls=False)  # the first epoch's time_s, even when that one is null
    first = rows.group_by(["run_id"], use_threads=False).aggregate(
        [("time_s", "first", whole), ("step", "first", whole)]
    )
    return {
        run_id: (seconds, step)
        for run_id, seconds, step in zip(
            first["run_id"].to_pylist(), first["time_s_first"].to_pylist(), first["step_first"].to_pylist(), strict=True
        )
    }


def _baseline(family: str | None, sweep: dict[str, Any]) -> str | None:
    """The family a technique family is measured against, from its sweep's ``baselines`` tag (a comparison)."""
    baselines = json.loads(sweep["baselines"]) if "baselines" in sweep else {}
    return baselines.get(family)


# -- typing values ------------------------------------------------------------------------------------------------
def _strings(values: Iterable[str | None]) -> pa.Array:
    return pa.array(list(values), pa.string())


def _int(text: str | None) -> int | None:
    value = decode_param(text)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(text: str | None) -> float | None:
    value = decode_param(text)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _typed(texts: list[str | None]) -> pa.Array:
    """Param strings as the narrowest type that holds every value of the column, decoded as the sweep reads them
    back (``decode_param``): bool, int64, float64, else string ('None', 'null' and absent are null in every type)."""
    decoded = [decode_param(text) for text in texts]
    present = [value for value in decoded if value is not None]
    kinds = {type(v) if isinstance(v, bool | int | float) else str for v in present}
    if present and kinds == {bool}:
        return pa.array(decoded, pa.bool_())
    if present and kinds == {int} and all(-(2**63) <= v < 2**63 for v in present):
        return pa.array(decoded, pa.int64())
    if present and kinds <= {int, float}:  # ints beyond int64 too
        return pa.array([None if v is None else float(v) for v in decoded], pa.float64())
    return pa.array([None if v is None else text for v, text in zip(decoded, texts, strict=True)], pa.string())
