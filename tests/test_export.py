"""``autoaccel.analysis.export``: MLflow sweeps → ``runs`` and ``history`` Arrow tables and Parquet files.

One SQLite MLflow store, written with ``MlflowClient`` in the layout a sweep writes, serves every test (no Ray).
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autoaccel.analysis import export, export_experiments, read_parquet, write_parquet
from autoaccel.cli import main

T0 = 1_700_000_000_000  # ms; every timestamp is derived from it, so runs and values sort predictably
SWEEPS = ["sweep-min", "sweep-max", "no-target", "flat"]


def _sweep(client: Any, name: str, parent: dict[str, str] | None, trials: list[dict[str, Any]]) -> None:
    """An experiment ``name`` with a parent run tagged ``parent`` (None: no parent) and one child per trial."""
    from mlflow.entities import Metric, Param

    experiment = client.create_experiment(name)
    parent_id = None
    if parent is not None:
        tags = {"autoaccel.sweep": name, "autoaccel.role": "sweep", "workload": "quad", **parent}
        parent_id = client.create_run(experiment, start_time=T0, tags=tags).info.run_id
        client.log_batch(parent_id, params=[Param("search.num_samples", str(len(trials)))])
    for index, trial in enumerate(trials):
        tags = {"trial_id": f"t{index}", "workload": "quad", "seed": "0", "autoaccel.sweep": name, **trial["tags"]}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run_id = client.create_run(experiment, start_time=T0 + 1000 * (index + 1), tags=tags).info.run_id
        metrics = [
            Metric(key, value, T0 + 100_000 * epoch + extra, epoch)
            for epoch, row in enumerate(trial.get("history", []), start=1)
            for key, value, extra in ((k, *v) if isinstance(v, tuple) else (k, v, 0) for k, v in row.items())
        ]
        params = [Param(key, value) for key, value in trial["params"].items()]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.set_terminated(run_id, trial.get("end", "FINISHED"), end_time=T0 + 10**6)
    if parent_id:
        client.set_terminated(parent_id, "FINISHED", end_time=T0 + 10**6)


def _epochs(metric: list[float], **series: list[Any]) -> list[dict[str, Any]]:
    """Per-epoch rows: ``metric``, val_mse (the same), time_s = epoch seconds, step = 10 per epoch, plus ``series``."""
    rows = []
    for epoch, value in enumerate(metric, start=1):
        row = {"metric": value, "val_mse": value, "time_s": float(epoch), "step": 10.0 * epoch}
        row.update({key: values[epoch - 1] for key, values in series.items() if values[epoch - 1] is not None})
        rows.append(row)
    return rows


SGD = {"optimizer.base": "sgd", "budget.epochs": "4", "budget.steps": "None", "seeds": "0"}
# what the sweep-min sweep declared (its parent's tags): the analysis reads it with the runs
DECLARED = {"": {"optimizer.lr": {"kind": "float", "low": 1e-3, "high": 1.0, "log": True, "step": None}}}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    from mlflow.tracking import MlflowClient

    from autoaccel.tracking._store import _write_ahead_log

    uri = f"sqlite:///{tmp_path_factory.mktemp('export') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    _write_ahead_log(client)  # as a sweep's store is: the reader must cope with a WAL file beside the database
    min_tags = {"metric": "val_mse", "mode": "min", "workload_metric": "val_mse", "workload_mode": "min"}
    from autoaccel.tracking import encode_space

    _sweep(
        client,
        "sweep-min",
        {**min_tags, "target": "0.5", **encode_space(DECLARED)},
        [
            {  # reaches the target at epoch 3, then gets a little worse
                "tags": {"family": "sgd", "technique": "sgd", "status": "completed", "epochs": "4"},
                "params": {**SGD, "optimizer.lr": "0.1", "optimizer.momentum": "0.9", "optimizer.nesterov": "True"},
                "history": _epochs([1.0, 0.6, 0.4, 0.45], train_loss=[0.9, 0.5, 0.3, 0.2]),
            },
            {  # conditional params of Anderson only here; stopped before the target
                "tags": {
                    "family": "anderson_sgd",
                    "technique": "anderson+sgd",
                    "status": "stopped_early",
                    "epochs": "2",
                },
                "params": {
                    **SGD,
                    "optimizer.lr": "1e-2",
                    "optimizer.anderson.history": "5",
                    "optimizer.nesterov": "False",
                },
                "history": _epochs([0.9, 0.7], train_loss=[0.8, 0.7], aa_accepted_fraction=[None, 0.5]),
            },
            {  # diverged: the workload's worst value, and a NaN training loss MLflow stores as is_nan
                "tags": {"family": "adam", "technique": "adam", "status": "diverged", "epochs": "2"},
                "params": {**SGD, "optimizer.base": "adam", "optimizer.lr": "1", "optimizer.nesterov": "null"},
                "history": _epochs([0.8, 1e6], train_loss=[0.7, math.nan]),
            },
            {  # failed before its first epoch: no metrics at all
                "tags": {"family": "adam", "technique": "adam", "status": "errored", "epochs": "0"},
                "params": {**SGD, "optimizer.base": "adam", "optimizer.lr": "0.001"},
                "end": "FAILED",
            },
        ],
    )
    # The sweep ranks by val_loss (min) while the workload's metric, held in ``metric``, is accuracy (max).
    max_tags = {"metric": "val_loss", "mode": "min", "workload_metric": "accuracy", "workload_mode": "max"}
    _sweep(
        client,
        "sweep-max",
        {**max_tags, "target": "0.8"},
        [
            {
                "tags": {"family": "adam", "technique": "adam", "status": "completed", "epochs": "3"},
                "params": {"optimizer.base": "adam", "optimizer.lr": "0.003", "seeds": "0,1"},
                "history": _epochs([0.5, 0.85, 0.7]),
            },
            {  # epoch 2 logged twice (a replay after a resume): the later value is the final one
                "tags": {"family": "adam", "technique": "adam", "status": "interrupted", "epochs": "2"},
                "params": {"optimizer.base": "adam", "optimizer.lr": "0.002", "seeds": "0,1"},
                "history": [*_epochs([0.3, 0.6]), {"metric": (0.65, 500)}],
                "end": "KILLED",
            },
        ],
    )
    _sweep(
        client,
        "no-target",
        {**min_tags, "target": "None"},
        [
            {
                "tags": {"family": "sgd", "technique": "sgd", "status": "completed", "epochs": "2"},
                "params": {**SGD, "optimizer.lr": "0.1"},
                "history": _epochs([0.2, 0.1]),
            }
        ],
    )
    # ``autoaccel train`` runs: no parent anywhere, so every run is a trial (and no mode or target is known)
    flat = {"family": "sgd", "technique": "sgd", "status": "completed", "epochs": "1"}
    _sweep(
        client,
        "flat",
        None,
        [{"tags": flat, "params": {**SGD, "optimizer.lr": "0.1"}, "history": _epochs([0.3])} for _ in range(2)],
    )
    deleted = client.create_run(client.get_experiment_by_name("flat").experiment_id, tags=flat).info.run_id
    client.delete_run(deleted)  # left out by both readers
    client.create_experiment("empty")
    _sweep(client, "parent-only", min_tags, [])
    return uri


def _rows(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["trial_id"] + "@" + row["experiment"]: row for row in table.to_pylist()}


def test_typed_param_columns_and_nulls_for_absent_params(store: str) -> None:
    runs, _ = export_experiments(["sweep-min"], store)
    schema = runs.schema
    assert schema.field("optimizer.lr").type == pa.float64()  # '1' and '1e-2' together: float
    assert schema.field("optimizer.anderson.history").type == pa.int64()
    assert schema.field("budget.epochs").type == pa.int64()
    assert schema.field("optimizer.base").type == pa.string()
    assert schema.field("optimizer.nesterov").type == pa.bool_()
    assert schema.field("epochs").type == pa.int64() and schema.field("seed").type == pa.string()
    assert schema.field("start_time").type == pa.timestamp("ms", tz="UTC")
    rows = _rows(runs)
    assert [rows[f"t{i}@sweep-min"]["optimizer.anderson.history"] for i in range(4)] == [None, 5, None, None]
    assert [rows[f"t{i}@sweep-min"]["optimizer.nesterov"] for i in range(4)] == [True, False, None, None]
    assert [rows[f"t{i}@sweep-min"]["optimizer.lr"] for i in range(4)] == [0.1, 0.01, 1.0, 0.001]
    assert runs["budget.steps"].null_count == runs.num_rows  # 'None' everywhere
    assert "search.num_samples" not in runs.column_names  # the parent's params are not a trial's


def test_column_order_is_fixed_then_sorted(store: str) -> None:
    runs, history = export_experiments(["sweep-min"], store)
    names = runs.column_names
    assert names[:23] == [
        "run_id", "experiment", "sweep", "trial_id", "workload", "family", "technique", "seed", "phase",
        "tuning_replicate", "sampler_seed", "cost_per_step_s", "baseline", "status", "epochs", "crashes", "world_size",
        "metric_name", "mode", "target", "sweep_metric", "sweep_mode", "protocol",
    ]  # fmt: skip
    params = names[23 : names.index("final_metric")]
    assert params == sorted(params) and "optimizer.lr" in params
    finals = [n for n in names if n.startswith("final_") and n != "final_metric"]
    assert finals == sorted(finals)
    assert {"final_train_loss", "final_time_s", "final_step", "final_val_mse", "final_aa_accepted_fraction"} <= set(
        finals
    )
    assert names[names.index("final_metric") + 1] == "best_metric"
    assert names[-6:] == [
        "wall_time_s",
        "time_to_target_s",
        "steps_to_target",
        "start_time",
        "end_time",
        "mlflow_status",
    ]
    assert history.schema == pa.schema(
        {
            "run_id": pa.string(),
            "epoch": pa.int64(),
            "step": pa.int64(),
            "key": pa.string(),
            "value": pa.float64(),
            "time": pa.int64(),
        }
    )


def test_final_best_and_target_for_min_mode(store: str) -> None:
    rows = _rows(export_experiments(["sweep-min"], store)[0])
    done = rows["t0@sweep-min"]
    assert (done["final_metric"], done["best_metric"]) == (0.45, 0.4)
    assert (done["time_to_target_s"], done["steps_to_target"]) == (3.0, 30)  # first epoch ≤ 0.5 is epoch 3
    assert (done["wall_time_s"], done["final_step"], done["final_train_loss"]) == (4.0, 40.0, 0.2)
    assert (done["metric_name"], done["mode"], done["target"]) == ("val_mse", "min", 0.5)
    early = rows["t1@sweep-min"]
    assert (early["best_metric"], early["time_to_target_s"], early["steps_to_target"]) == (0.7, None, None)
    assert early["final_aa_accepted_fraction"] == 0.5 and done["final_aa_accepted_fraction"] is None
    diverged = rows["t2@sweep-min"]
    # a failed run has no final result (not the stand-in an older version logged); its best real value stays
    assert diverged["final_metric"] is None and diverged["best_metric"] == 0.8
    assert math.isnan(diverged["final_train_loss"])
    assert diverged["time_to_target_s"] is None
    empty = rows["t3@sweep-min"]  # no metrics
    for column in ("final_metric", "best_metric", "wall_time_s", "time_to_target_s", "final_train_loss"):
        assert empty[column] is None


def test_final_best_and_target_for_max_mode(store: str) -> None:
    rows = _rows(export_experiments(["sweep-max"], store)[0])
    reached = rows["t0@sweep-max"]
    # the ``metric`` history is the workload's accuracy (max); the sweep itself ranked by val_loss (min)
    assert (reached["metric_name"], reached["mode"]) == ("accuracy", "max")
    assert (reached["sweep_metric"], reached["sweep_mode"]) == ("val_loss", "min")
    assert (reached["final_metric"], reached["best_metric"]) == (0.7, 0.85)
    assert (reached["time_to_target_s"], reached["steps_to_target"]) == (2.0, 20)
    replayed = rows["t1@sweep-max"]
    assert (replayed["final_metric"], replayed["best_metric"], replayed["time_to_target_s"]) == (0.65, 0.65, None)


def test_no_target_and_no_parent(store: str) -> None:
    rows = _rows(export_experiments(["no-target", "flat"], store)[0])
    no_target = rows["t0@no-target"]
    assert no_target["target"] is None and no_target["best_metric"] == 0.1
    assert no_target["time_to_target_s"] is None and no_target["steps_to_target"] is None
    flat = [row for key, row in rows.items() if key.endswith("@flat")]
    assert len(flat) == 2 and all(row["mode"] is None and row["best_metric"] is None for row in flat)
    assert all(row["final_metric"] == 0.3 and row["sweep"] == "flat" for row in flat)


def test_statuses_preserved(store: str) -> None:
    runs, _ = export_experiments(["sweep-min", "sweep-max"], store)
    pairs = {(row["status"], row["mlflow_status"]) for row in runs.to_pylist()}
    assert pairs == {
        ("completed", "FINISHED"),
        ("stopped_early", "FINISHED"),
        ("diverged", "FINISHED"),
        ("errored", "FAILED"),
        ("interrupted", "KILLED"),
    }


def test_history_rows(store: str) -> None:
    runs, history = export_experiments(["sweep-min"], store)
    by_id = {row["run_id"]: row["trial_id"] for row in runs.to_pylist()}
    rows = history.to_pylist()
    logged = 4 * 5 + 2 * 5 + 1 + 2 * 5  # metric, val_mse, time_s, step, train_loss per epoch; one aa_ value
    assert len(rows) == logged and set(by_id) > {row["run_id"] for row in rows}  # the errored run logged nothing
    first = [r for r in rows if by_id[r["run_id"]] == "t0" and r["key"] == "metric"]
    assert [(r["epoch"], r["step"], r["value"]) for r in first] == [
        (1, 10, 1.0),
        (2, 20, 0.6),
        (3, 30, 0.4),
        (4, 40, 0.45),
    ]
    assert first[0]["time"] == T0 + 100_000
    nan = [r for r in rows if by_id[r["run_id"]] == "t2" and r["key"] == "train_loss"]
    assert nan[0]["value"] == 0.7 and math.isnan(nan[1]["value"])
    keys = [(r["run_id"], r["key"], r["epoch"]) for r in rows]
    assert keys == sorted(keys)


def test_runs_sorted_and_several_experiments(store: str) -> None:
    runs, history = export_experiments(["sweep-max", "sweep-min"], store)
    assert runs["experiment"].to_pylist() == ["sweep-max"] * 2 + ["sweep-min"] * 4  # by name, then start time
    assert runs["trial_id"].to_pylist() == ["t0", "t1", "t0", "t1", "t2", "t3"]
    assert set(history["run_id"].to_pylist()) <= set(runs["run_id"].to_pylist())
    # columns of both experiments, null where an experiment lacks them
    assert runs["optimizer.momentum"].null_count == 5 and runs["seeds"].type == pa.string()  # '0' and '0,1'


def _bits(table: pa.Table) -> pa.Table:
    """Float columns as their bit patterns: ``equals`` then holds for identical NaNs too (NaN ≠ NaN as floats)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            table = table.set_column(index, field.name, table[field.name].combine_chunks().view(pa.int64()))
    return table


def test_sql_and_api_readers_build_identical_tables(store: str) -> None:
    runs_sql, history_sql = export_experiments(SWEEPS, store, method="sql")
    runs_api, history_api = export_experiments(SWEEPS, store, method="api")
    assert (runs_sql.num_rows, history_sql.num_rows) == (9, 78)
    assert runs_sql.schema == runs_api.schema
    # the diverged run's NaN training loss is in both tables; bit by bit they are the same
    assert _bits(runs_sql).equals(_bits(runs_api)) and _bits(history_sql).equals(_bits(history_api))
    without_nan = ["sweep-max", "no-target", "flat"]
    for sql, api in zip(*(export_experiments(without_nan, store, method=m) for m in ("sql", "api")), strict=True):
        assert sql.equals(api)
    auto = export_experiments(SWEEPS, store)
    assert _bits(auto[0]).equals(_bits(runs_sql)) and _bits(auto[1]).equals(_bits(history_sql))


def test_sql_reader_never_writes(store: str) -> None:
    path = Path(store.removeprefix("sqlite:///"))
    before = sorted(p.name for p in path.parent.iterdir()), hashlib.sha256(path.read_bytes()).hexdigest()
    export_experiments(SWEEPS, store, method="sql")
    assert (sorted(p.name for p in path.parent.iterdir()), hashlib.sha256(path.read_bytes()).hexdigest()) == before
    missing = path.parent / "absent" / "mlflow.db"
    with pytest.raises(ValueError, match="no MLflow database at"):
        export_experiments(["sweep-min"], f"sqlite:///{missing}")
    assert not missing.parent.exists()


def test_schema_is_the_one_the_sql_reader_was_checked_against(store: str) -> None:
    """The SQL reader reads MLflow's internal tables; a new schema needs the reader parity test re-checked (it falls
    back to the API by itself only when a column it needs is gone)."""
    path = store.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("dc11669786a5",)]


def test_parquet_round_trip(store: str, tmp_path: Path) -> None:
    runs, history = export_experiments(SWEEPS, store)
    runs_path, history_path = write_parquet(runs, history, tmp_path / "out")
    assert (runs_path.name, history_path.name) == ("runs.parquet", "history.parquet")
    assert _bits(pq.read_table(runs_path)).equals(_bits(runs))
    assert _bits(pq.read_table(history_path)).equals(_bits(history))
    import pandas as pd

    frame = pd.read_parquet(runs_path)
    assert len(frame) == runs.num_rows and frame["optimizer.lr"].dtype == "float64"
    assert not list(tmp_path.glob("out/*.part"))


@pytest.mark.parametrize("method", ["sql", "api"])
def test_the_declared_space_travels_with_the_runs(store: str, tmp_path: Path, method: str) -> None:
    """Both readers carry each experiment's declared space in the runs table, kept through Parquet and a join of
    several folders; an experiment whose sweep recorded none (or that has no sweep) has none."""
    from autoaccel.analysis import declared_spaces

    runs, history = export_experiments(["sweep-min", "flat"], store, method=method)
    assert declared_spaces(runs) == {"sweep-min": DECLARED}
    write_parquet(runs, history, tmp_path / "a")
    other, other_history = export_experiments(["no-target"], store, method=method)
    write_parquet(other, other_history, tmp_path / "b")
    joined, _ = read_parquet([tmp_path / "a", tmp_path / "b"])
    assert declared_spaces(joined) == {"sweep-min": DECLARED}
    assert declared_spaces(read_parquet([tmp_path / "a", tmp_path / "b"], ["flat"])[0]) == {}


def test_export_and_command(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = export(["sweep-min", "sweep-max"], store, tmp_path / "a")
    assert (result["runs_rows"], result["runs"]) == (6, str(tmp_path / "a" / "runs.parquet"))
    assert result["history_rows"] == pq.read_metadata(result["history"]).num_rows
    args = ["export", "--experiment", "sweep-min", "--tracking-uri", store, "--out", str(tmp_path / "b")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "exported 4 runs" in out and "sweep-min" in out
    assert (tmp_path / "b" / "runs.parquet").is_file()
    args[2] = "nope"
    assert main(args) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["sql", "api"])
def test_errors_name_the_experiment(store: str, tmp_path: Path, method: str) -> None:
    listed = "Default, empty, flat, no-target, parent-only, sweep-max, sweep-min"
    with pytest.raises(ValueError, match=rf"'missing' in sqlite:///.*; existing: {listed}$"):
        export_experiments(["sweep-min", "missing"], store, method=method)
    with pytest.raises(ValueError, match="'empty' has no runs"):
        export_experiments(["sweep-min", "empty"], store, method=method)
    with pytest.raises(ValueError, match=r"'parent-only' has no runs to export \(only 1 sweep parent"):
        export_experiments(["parent-only"], store, method=method)
    with pytest.raises(ValueError, match="'empty' has no runs"):
        export(["empty"], store, tmp_path)
    assert not list(tmp_path.iterdir())
