"""Export speed: ``export_experiments`` on a SQLite store (the SQL reader) against a naive loop over the MLflow API.

    .venv/bin/python benchmarks/export_speed.py [--runs 1000] [--epochs 100] [--store DIR] [--api-export] [--json]

1. Builds, once, a SQLite MLflow store in the layout a sweep writes: one parent run and ``--runs`` child runs of
   ``--epochs`` epochs × 5 metrics (metric, train_loss, val_loss, time_s, step), written with ``log_batch`` (up to
   1000 values per call) in WAL mode. It lives in ``--store`` (default: the temp folder, named by its size) and is
   reused while its row counts match; it is built in a side folder first, so an interrupted build is never reused.
2. Times, in the same process, on the same (OS-cached) store:
   - ``export_experiments`` with the SQL reader (best and median of ``--repeat``; the first call, which pays the
     one-off Arrow kernel set-up, separately);
   - the naive loop: ``MlflowClient.search_runs`` then ``get_metric_history`` per run per key, every value into a
     Python list (no table built; the client is created before the clock starts, so the loop is favoured);
   - with ``--api-export``, ``export_experiments(method="api")``, the fallback a tracking server gets.
Targets (1000 × 100): the SQL reader ≤ 2 s and ≥ 20× faster than the naive loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EXPERIMENT = "export-bench"
KEYS = ("metric", "train_loss", "val_loss", "time_s", "step")
PER_CALL = 1000  # MLflow's log_batch limit on metrics + params + tags in one call


def _counts(db: Path) -> tuple[int, int]:
    """(child runs, metric values) of the benchmark experiment in ``db``, read-only."""
    connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        children = connection.execute(
            "SELECT count(*) FROM tags WHERE key = 'mlflow.parentRunId' AND run_uuid IN "
            "(SELECT run_uuid FROM runs WHERE experiment_id = "
            "(SELECT experiment_id FROM experiments WHERE name = ?))",
            (EXPERIMENT,),
        ).fetchone()[0]
        values = connection.execute("SELECT count(*) FROM metrics").fetchone()[0]
    finally:
        connection.close()
    return children, values


def populate(folder: Path, runs: int, epochs: int) -> float:
    """Write the store into ``folder`` (a fresh one); return the seconds it took."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from autoaccel.tracking._store import _write_ahead_log

    started = time.perf_counter()
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    _write_ahead_log(client)  # as a sweep writes: no fsync per commit
    experiment = client.create_experiment(EXPERIMENT)
    parent_tags = {
        "autoaccel.sweep": EXPERIMENT,
        "autoaccel.role": "sweep",
        "workload": "bench",
        "metric": "val_loss",
        "mode": "min",
        "workload_metric": "val_loss",
        "workload_mode": "min",
        "target": "0.1",
    }
    parent = client.create_run(experiment, run_name=EXPERIMENT, tags=parent_tags).info.run_id
    rng = random.Random(0)
    for index in range(runs):
        family = ("sgd", "adam", "anderson_sgd")[index % 3]
        tags = {
            "mlflow.parentRunId": parent,
            "autoaccel.sweep": EXPERIMENT,
            "trial_id": f"{index:05d}",
            "workload": "bench",
            "family": family,
            "technique": family.replace("anderson_", "anderson+"),
            "seed": "0",
            "status": "completed",
            "epochs": str(epochs),
        }
        run_id = client.create_run(experiment, run_name=f"{family}-{index}", tags=tags).info.run_id
        params = {"optimizer.base": family.removeprefix("anderson_"), "optimizer.lr": f"{10 ** rng.uniform(-4, -1)}"}
        if family == "anderson_sgd":
            params["optimizer.anderson.history"] = str(rng.randint(2, 10))
        params.update({"budget.epochs": str(epochs), "budget.batch_size": "64", "seeds": "0"})
        metrics = _history(rng, epochs)
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        for start in range(0, len(metrics), PER_CALL):
            client.log_batch(run_id, metrics=metrics[start : start + PER_CALL])
        client.set_terminated(run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return time.perf_counter() - started


def _history(rng: random.Random, epochs: int) -> list[Any]:
    from mlflow.entities import Metric

    rate, floor = rng.uniform(0.01, 0.1), rng.uniform(0.02, 0.3)
    stamp, out = int(time.time() * 1000), []
    for epoch in range(1, epochs + 1):
        loss = floor + math.exp(-rate * epoch) + rng.gauss(0, 0.01)
        values = {"metric": loss, "train_loss": loss * 0.9, "val_loss": loss, "time_s": 0.5 * epoch, "step": 50 * epoch}
        out.extend(Metric(key, float(values[key]), stamp + epoch, epoch) for key in KEYS)
    return out


def store(folder: Path | None, runs: int, epochs: int) -> tuple[str, float | None]:
    """The store's URI and, when it had to be built, the seconds that took."""
    folder = folder or Path(tempfile.gettempdir()) / f"autoaccel-export-bench-{runs}x{epochs}"
    db = folder / "mlflow.db"
    if db.is_file() and _counts(db) == (runs, runs * epochs * len(KEYS)):
        return f"sqlite:///{db}", None
    building = folder.with_name(folder.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    print(f"building {runs} runs × {epochs} epochs × {len(KEYS)} metrics in {folder} (once)...", file=sys.stderr)
    seconds = populate(building, runs, epochs)
    shutil.rmtree(folder, ignore_errors=True)
    building.rename(folder)
    return f"sqlite:///{db}", seconds


def naive_loop(uri: str) -> tuple[float, int, int]:
    """search_runs + get_metric_history per run per key: (seconds, runs, values)."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    client.search_runs([experiment_id], max_results=1)  # the engine and its schema check, outside the clock
    started = time.perf_counter()
    runs, token, rows = [], None, []
    while True:
        page = client.search_runs(
            [experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=5000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    for run in runs:
        run_id = run.info.run_id
        for key in run.data.metrics:
            rows.extend((run_id, key, m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key))
    return time.perf_counter() - started, len(runs), len(rows)


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--store", type=Path, help="folder of the cached store (default: in the temp folder)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls of the SQL reader")
    parser.add_argument("--api-export", action="store_true", help="also time export_experiments(method='api')")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    from autoaccel.analysis import export_experiments

    uri, built = store(args.store, args.runs, args.epochs)
    first, (runs, history) = timed(export_experiments, [EXPERIMENT], uri)
    sql = [timed(export_experiments, [EXPERIMENT], uri)[0] for _ in range(args.repeat)]
    naive, naive_runs, naive_values = naive_loop(uri)
    assert (runs.num_rows, history.num_rows) == (naive_runs - 1, naive_values), "the two disagree on the store"
    result: dict[str, Any] = {
        "runs": runs.num_rows,
        "values": history.num_rows,
        "store": uri,
        "populate_s": built,
        "sql_first_s": first,
        "sql_best_s": min(sql),
        "sql_median_s": statistics.median(sql),
        "naive_api_s": naive,
        "ratio_median": naive / statistics.median(sql),
    }
    if args.api_export:
        result["api_export_s"] = timed(export_experiments, [EXPERIMENT], uri, method="api")[0]
    if args.json:
        print(json.dumps(result, indent=2))
        return result
    if built is not None:
        print(f"populated {uri} in {built:.1f} s")
    print(f"{result['runs']} runs, {result['values']:,} metric values")
    print(
        f"export_experiments, SQL reader: {result['sql_median_s']:.3f} s median of {args.repeat} "
        f"(best {result['sql_best_s']:.3f} s; first call {first:.3f} s)"
    )
    print(f"naive MLflow API loop (search_runs + get_metric_history per run per key): {naive:.2f} s")
    if "api_export_s" in result:
        print(f"export_experiments, API reader: {result['api_export_s']:.2f} s")
    print(f"ratio naive / SQL reader: {result['ratio_median']:.0f}×")
    return result


if __name__ == "__main__":
    main()
