"""A trial on N worker processes of this machine, one torch.distributed group (gloo; NCCL with one GPU each):
``autoaccel train --workers N``, and what tests and benchmarks use to train data-parallel without Ray. How the
workers share the trial: :mod:`autoaccel.run.data_parallel`."""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import queue
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from autoaccel.errors import ConfigError

from .trial import run_trial

__all__ = ["check_workers", "run_data_parallel"]

# How long a collective waits for a slow worker (rank 0 evaluating a large validation set) before the group fails.
COLLECTIVE_TIMEOUT_S = 600.0


def run_data_parallel(
    config: Mapping[str, Any],
    workers: int,
    report: Any = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """:func:`~autoaccel.run.run_trial` on ``workers`` processes of this machine (gloo; NCCL with one GPU per
    worker when the config's device is CUDA). Rank 0's epochs go to ``report`` here, in this process; its summary
    is returned. A worker that fails stops the others, and its error is raised here (a worker that dies without
    one: a ``RuntimeError`` naming its rank and exit code).

    Nothing listens beyond loopback: the workers meet through a file (no TCP store) and connect over ``lo``
    (``GLOO_SOCKET_IFNAME``/``NCCL_SOCKET_IFNAME``, unless set already). A worker whose launcher dies stops too."""
    import torch.multiprocessing as mp

    backend = check_workers(str(config.get("device", "auto")), workers)
    context = mp.get_context("spawn")
    inbox = context.Queue()
    rendezvous = tempfile.mkdtemp(prefix="autoaccel-rendezvous-")
    address = f"file://{os.path.join(rendezvous, 'store')}"
    processes: list[Any] = []
    try:
        for rank in range(workers):
            arguments = (rank, workers, address, backend, dict(config), checkpoint_dir, inbox, os.getpid())
            processes.append(context.Process(target=_worker, args=arguments, daemon=True))
            processes[-1].start()
        while True:
            try:
                kind, payload = inbox.get(timeout=0.2)
            except queue.Empty:
                _raise_if_killed(processes)
                if any(p.exitcode not in (None, 0) for p in processes):
                    raise RuntimeError(f"a data-parallel worker of {workers} exited without a result") from None
                continue
            if kind == "epoch" and report is not None:
                report(*payload)
            elif kind == "error":
                # a worker's error may only be its collective noticing that another worker was killed: that first
                for process in processes:
                    process.join(timeout=2)
                _raise_if_killed(processes, payload)
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
        shutil.rmtree(rendezvous, ignore_errors=True)


def check_workers(device: str, workers: int) -> str:
    """The process-group backend of ``workers`` data-parallel processes on ``device`` here: ``nccl`` on CUDA (a GPU
    per worker), else ``gloo``; a :class:`ConfigError` when they cannot run here."""
    if workers < 1:
        raise ConfigError("--workers", workers, "an integer ≥ 1")
    # "auto" as resolve_device reads it (is_available: CUDA usable, not only a GPU NVML sees), so the workers' backend
    # matches the device they train on
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    gpus = torch.cuda.device_count()
    if workers > 1 and device.startswith("cuda:"):
        raise ConfigError("--device", device, "cuda or auto with --workers: each worker takes a GPU of its own")
    if workers > 1 and cuda and gpus < workers:
        allowed = f"at most {gpus}: NCCL needs a GPU per worker, and this machine has {gpus}"
        raise ConfigError("--workers", workers, allowed)
    return "nccl" if cuda else "gloo"


def _raise_if_killed(processes: list[Any], then: BaseException | None = None) -> None:
    """A RuntimeError naming the first worker that a signal ended (no Python error of its own to send)."""
    for rank, process in enumerate(processes):
        if process.exitcode is not None and process.exitcode < 0:
            died = f"data-parallel worker {rank} of {len(processes)} died (signal {-process.exitcode})"
            raise RuntimeError(died) from then


def _worker(
    rank: int,
    workers: int,
    address: str,
    backend: str,
    config: dict[str, Any],
    checkpoint_dir: str | None,
    outbox: Any,
    launcher: int,
) -> None:
    threading.Thread(target=_exit_with, args=(launcher,), daemon=True).start()
    for variable in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
        os.environ.setdefault(variable, "lo")
    try:
        if backend == "nccl":  # the config keeps "cuda" (its checkpoint is every rank's): this rank's GPU is current
            torch.cuda.set_device(rank)
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


def _exit_with(parent: int) -> None:
    """End this worker once its launcher is gone (killed: it could not stop us), instead of training on unseen."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
