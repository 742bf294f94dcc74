"""A trial as one worker of a data-parallel group (``torch.distributed``: gloo on CPU, NCCL on GPU). A sweep's
workers are Ray Train's; ``autoaccel train --workers N`` starts them on this machine (:mod:`autoaccel.run.processes`).

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
- Every epoch the workers compare a digest of their parameters: equal by construction, but a kernel that rounds
  differently on another node's hardware would let them drift apart unseen; rank 0's parameters are then broadcast
  (a warning). The optimizers' states stay each worker's own: a drift that comes back is warned every epoch.
- Rank 0 evaluates and its metrics (and its clock) are shared, so every worker agrees on divergence and on the end.
- Rank 0 writes the checkpoint, with every rank's random state; a trial resumes only with the same world size.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from autoaccel.optim import average_

__all__ = ["agree", "average_scalar", "broadcast_module", "gather", "rank_seed", "share"]


def rank_seed(seed: int, rank: int) -> int:
    """A worker's own seed: mixed from (seed, rank), so that no two (seed, rank) pairs share a stream."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def broadcast_module(module: nn.Module, parameters: bool = True) -> None:
    """Rank 0's parameters (with ``parameters``) and buffers (BatchNorm's running statistics) on every worker."""
    tensors = [*(module.parameters() if parameters else ()), *module.buffers()]
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def agree(module: nn.Module) -> bool:
    """Whether every worker holds the same parameters, bit for bit (a digest of their bytes, compared once per
    epoch). If not — a kernel that rounds differently on another node's hardware — rank 0's are broadcast."""
    digest = hashlib.blake2b(digest_size=16)
    for p in module.parameters():
        digest.update(p.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    if len(set(gather(digest.hexdigest()))) == 1:
        return True
    broadcast_module(module)
    return False


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
