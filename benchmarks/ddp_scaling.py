"""Data-parallel scaling of a trial: samples per second at 1, 2, … workers, and AdaScale's gain as S grows.

    .venv/bin/python benchmarks/ddp_scaling.py [--workers 1 2] [--epochs E] [--device cpu|cuda] [--quick]

Part 1 trains the same trial (image_classification: ResNet-20 on the embedded digits, plain SGD, a fixed per-worker
batch) on 1 worker in this process and on N worker processes (``autoaccel.run.run_data_parallel``: gloo on CPU,
NCCL with one GPU each), and reports training samples per second — the global batch is N × the per-worker batch,
so each epoch holds the same samples — as a ratio to 1 worker. The first epoch (warm-up) is left out. Each
worker gets ``cores // N`` torch threads, so the CPU figures say what splitting the same cores across processes
costs or gains, not what more cores would.

Part 2 trains AdaScale (noisy quadratic, batch 16 per gradient) at S = 2, 4, 8, 16 — 2 workers × S/2 accumulated
micro-batches, so the gain comes from real per-worker gradients — and reports the gain r (∈ [1, S]) at the end, with
the metric against S = 2's; ``--quick`` shrinks everything for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import torch

from autoaccel.run import run_data_parallel, run_trial


def _trial(device: str, epochs: int, quick: bool) -> dict[str, Any]:
    return {
        "workload": {"name": "image_classification", "model": "resnet20", "dataset": "digits"},
        "optimizer": {"base": "sgd", "lr": 0.05, "momentum": 0.9},
        "budget": {"epochs": epochs, "batch_size": 16 if quick else 64},
        "seed": 0,
        "device": device,
    }


def _samples_per_second(workers: int, device: str, epochs: int, quick: bool) -> float:
    """Training samples per second after the first epoch (rank 0's clock, which every worker shares)."""
    config = _trial(device, epochs, quick)
    times: list[tuple[int, float, int]] = []

    def report(metrics: dict[str, Any], _: Any) -> None:
        times.append((metrics["epoch"], metrics["time_s"], metrics["step"]))

    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the workers' (spawned processes read it at start)
    if workers == 1:
        torch.set_num_threads(threads)
        run_trial(config, report=report)
    else:
        run_data_parallel(config, workers, report=report)
    (_, t0, s0), (_, t1, s1) = times[0], times[-1]
    global_batch = config["budget"]["batch_size"] * workers
    return (s1 - s0) * global_batch / (t1 - t0)


def _adascale(scale: int, epochs: int, quick: bool) -> dict[str, Any]:
    config = {
        "workload": {"name": "quadratic", "samples": 256 if quick else 1024},
        "optimizer": {"base": "sgd", "lr": 0.02, "adascale": {"num_gradients_to_accumulate": scale // 2}},
        "budget": {"epochs": epochs, "batch_size": 16 * scale // 2},  # per worker: S/2 micro-batches of 16
        "seed": 0,
        "device": "cpu",
    }
    result = run_data_parallel(config, 2)
    return {"S": scale, "gain": result["adascale_gain"], "metric": result["metric"], "steps": result["step"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    throughput = {n: _samples_per_second(n, args.device, epochs, args.quick) for n in args.workers}
    base = throughput[min(args.workers)]
    scaling = [{"workers": n, "samples_per_s": round(v, 1), "ratio": round(v / base, 3)} for n, v in throughput.items()]
    scales = [2, 4] if args.quick else [2, 4, 8, 16]
    gains = [_adascale(s, 2 if args.quick else 6, args.quick) for s in scales]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    if args.device.startswith("cuda"):
        machine += f", {torch.cuda.get_device_name()}"
    print(f"# {machine}; {' '.join(sys.argv)}")
    print("| workers | samples/s | ratio to 1 worker |\n| --- | --- | --- |")
    for row in scaling:
        print(f"| {row['workers']} | {row['samples_per_s']} | {row['ratio']} |")
    print("| S (2 workers × S/2 micro-batches) | gain r | val_suboptimality | steps |\n| --- | --- | --- | --- |")
    for row in gains:
        print(f"| {row['S']} | {row['gain']:.3f} | {row['metric']:.4g} | {row['steps']} |")
    result = {"machine": machine, "scaling": scaling, "adascale": gains, "at": time.strftime("%Y-%m-%d")}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
