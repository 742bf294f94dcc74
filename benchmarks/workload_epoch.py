"""Per-epoch time of each workload, and the share of it spent batching data (target ≤ 5% for in-memory data).

    .venv/bin/python benchmarks/workload_epoch.py [--epochs 3] [--device cpu|cuda] [--only NAME ...] [--json]

For each case: one warm-up epoch, then the median over ``--epochs`` of (a) a full training epoch of the trial
runner with Adam (``Trial._train_epoch``: batching, forward, backward, step, evaluation) and (b) drawing the same
epoch's batches alone. The batching share is (b)/(a).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from autoaccel.run import Trial

CASES: list[tuple[str, dict[str, Any], int]] = [
    ("admissions_mlp", {"name": "admissions_mlp"}, 40),
    ("quadratic", {"name": "quadratic", "samples": 4096}, 32),
    ("burgers_pinn dim=1", {"name": "burgers_pinn", "dim": 1}, 500),
    ("burgers_pinn dim=100", {"name": "burgers_pinn", "dim": 100, "collocation": 1000}, 100),
    ("digits resnet20", {"name": "image_classification", "dataset": "digits", "model": "resnet20"}, 128),
    ("fake resnet18", {"name": "image_classification", "dataset": "fake", "model": "resnet18"}, 32),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(workload: dict[str, Any], batch_size: int, epochs: int, device: str) -> dict[str, float]:
    config = {
        "workload": workload,
        "optimizer": {"base": "adam", "lr": 1e-3},
        "budget": {"epochs": epochs + 1, "batch_size": batch_size},
        "seed": 0,
        "device": device,
    }
    trial = Trial(config)
    dev = trial.setup.device
    trial._train_epoch()  # warm-up: first-call costs of torch and the allocator
    epoch_times, batch_times = [], []
    for _ in range(epochs):
        _sync(dev)
        start = time.perf_counter()
        trial._train_epoch()
        _sync(dev)
        epoch_times.append(time.perf_counter() - start)
        generator = torch.Generator().manual_seed(1)
        start = time.perf_counter()
        for batch in trial.workload.batches(batch_size, generator):
            del batch
        _sync(dev)
        batch_times.append(time.perf_counter() - start)
    epoch, batching = statistics.median(epoch_times), statistics.median(batch_times)
    return {
        "epoch_s": epoch,
        "batching_s": batching,
        "batching_share": batching / epoch,
        "steps": trial.setup.steps_per_epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for label, workload, batch_size in CASES:
        if args.only and label not in args.only:
            continue
        row = {"case": label, "batch_size": batch_size, **measure(workload, batch_size, args.epochs, args.device)}
        rows.append(row)
        if not args.json:
            print(
                f"{label:<24} batch {batch_size:>4}  {row['steps']:>4} steps  epoch {row['epoch_s'] * 1000:9.1f} ms"
                f"  batching {row['batching_s'] * 1000:7.2f} ms ({row['batching_share']:.1%})",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
