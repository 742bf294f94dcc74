"""A trial as one worker of a data-parallel group (``torch.distributed``: gloo on CPU, NCCL on GPU), and a launcher
that runs one on this machine's processes (``autoaccel train --workers N``; a sweep launches them with Ray Train).

How the workers share one trial (:class:`~autoaccel.run.Trial` does all of it whenever a process group exists):

- Every worker builds the same model and optimizer (same seed; rank 0's parameters are broadcast anyway), then
  reseeds its own random streams from (seed, rank) so that dropout and the like differ per worker.
- Every worker draws the same global batch order from the same generator and trains on its own slice of each
  batch (``workload.split(batch, workers)[rank]``): the global batch is workers × ``batch_size``, and a run on
  N workers sees the data in the order a one-process run of batch N × ``batch_size`` does.
- Gradients are averaged by one flat all-reduce per step (:func:`autoaccel.optim.average_`), not by DDP's module
  wrapper: AdaScale needs each worker's own gradient before the average (its hooks see it), and AdaHessian's
  Hessian-vector product needs a double backward, which DDP does not support; AdaHessian averages its gradients
  and Hessian estimates itself (``averages_gradients``). A loss that steers a decision (Anderson's safeguard) is
  averaged too, so every worker decides alike: parameters stay bit-equal on every rank without a broadcast.
- Rank 0 evaluates and its metrics (and its clock) are shared, so every worker agrees on divergence and on the end.
- Rank 0 writes the checkpoint, with every rank's random state; a trial resumes only with the same world size.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import queue
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from autoaccel.optim import average_
from autoaccel.ports import free_loopback_port

__all__ = ["broadcast_module", "gather", "rank_seed", "run_data_parallel", "share"]

# How long a collective waits for a slow worker (rank 0 evaluating a large validation set) before the group fails.
COLLECTIVE_TIMEOUT_S = 600.0


def rank_seed(seed: int, rank: int) -> int:
    """A worker's own seed: mixed from (seed, rank), so that no two (seed, rank) pairs share a stream."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def broadcast_module(module: nn.Module, parameters: bool = True) -> None:
    """Rank 0's parameters (with ``parameters``) and buffers (BatchNorm's running statistics) on every worker."""
    tensors = [*(module.parameters() if parameters else ()), *module.buffers()]
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def share(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every worker."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every worker's ``value``, by rank, on every worker."""
    found: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(found, value)
    return found


def average_scalar(value: torch.Tensor) -> torch.Tensor:
    """The mean over workers of a 0-d tensor (a new tensor; ``value`` is left alone)."""
    mean = value.detach().clone()
    average_([mean])
    return mean


def run_data_parallel(
    config: Mapping[str, Any],
    workers: int,
    report: Any = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """:func:`~autoaccel.run.run_trial` on ``workers`` processes of this machine (gloo; NCCL with one GPU per
    worker when the config's device is CUDA). Rank 0's epochs go to ``report`` here, in this process; its summary
    is returned. A worker that fails stops the others, and its error is raised here (a worker that dies without
    one: a ``RuntimeError`` naming its rank and exit code)."""
    import torch.multiprocessing as mp

    device = str(config.get("device", "auto"))
    gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if gpu and torch.cuda.device_count() < workers:
        raise RuntimeError(f"{workers} workers on NCCL need one GPU each; this machine has {torch.cuda.device_count()}")
    context = mp.get_context("spawn")
    inbox = context.Queue()
    address = f"tcp://127.0.0.1:{free_loopback_port()}"
    processes = [
        context.Process(
            target=_worker,
            args=(rank, workers, address, "nccl" if gpu else "gloo", dict(config), checkpoint_dir, inbox),
            daemon=True,
        )
        for rank in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        while True:
            try:
                kind, payload = inbox.get(timeout=0.2)
            except queue.Empty:
                dead = [(rank, p.exitcode) for rank, p in enumerate(processes) if p.exitcode not in (None, 0)]
                if dead:
                    rank, code = dead[0]
                    raise RuntimeError(f"data-parallel worker {rank} of {workers} died (exit code {code})") from None
                continue
            if kind == "epoch" and report is not None:
                report(*payload)
            elif kind == "error":
                raise payload
            elif kind == "result":
                for process in processes:
                    process.join()
                return payload
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join()


def _worker(
    rank: int,
    workers: int,
    address: str,
    backend: str,
    config: dict[str, Any],
    checkpoint_dir: str | None,
    outbox: Any,
) -> None:
    from .trial import run_trial

    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
            config = {**config, "device": f"cuda:{rank}"}
        dist.init_process_group(
            backend,
            init_method=address,
            rank=rank,
            world_size=workers,
            timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S),
        )

        def report(metrics: dict[str, Any], folder: str | None) -> None:
            if rank == 0:
                outbox.put(("epoch", (metrics, folder)))

        result = run_trial(config, report=report, checkpoint_dir=checkpoint_dir)
        if rank == 0:
            outbox.put(("result", result))
    except BaseException as error:
        try:
            pickle.dumps(error)
            sent: BaseException = error
        except Exception:  # an exception that does not pickle still arrives, as its text
            sent = RuntimeError(f"data-parallel worker {rank}: {traceback.format_exc()}")
        outbox.put(("error", sent))
        raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
