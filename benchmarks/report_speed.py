"""Report speed: ``build_report`` over a sweep of 1,000 trials × 100 epochs (target ≤ 30 s).

    .venv/bin/python benchmarks/report_speed.py [--runs 1000] [--epochs 100] [--store DIR]

Uses the store of ``export_speed.py`` (built once, reused): three families, a log-uniform learning rate and
Anderson's history, statuses as a sweep writes them. Times the whole report (export, statistics with 10-resample
bootstrap importance, plots, HTML, Markdown, Parquet) without logging it back to MLflow.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from export_speed import EXPERIMENT, store

from autoaccel.analysis import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--store", type=Path)
    args = parser.parse_args()
    uri, _ = store(args.store, args.runs, args.epochs)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        written = build_report([EXPERIMENT], uri, out, log_artifacts=False)
        seconds = time.perf_counter() - start
    print(f"report of {written['runs']} trials × {args.epochs} epochs: {seconds:.1f} s (target ≤ 30 s)")


if __name__ == "__main__":
    main()
