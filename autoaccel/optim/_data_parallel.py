"""What an optimizer needs to know of data-parallel training (``torch.distributed``): how many workers there are,
and the mean over them of a list of tensors, in one all-reduce."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist

__all__ = ["average_", "planned_workers", "worker_count", "worker_rank"]

_planned: int | None = None


def worker_count() -> int:
    """Workers in the default process group; 1 without one (or the count :func:`planned_workers` set)."""
    if _planned is not None:
        return _planned
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@contextlib.contextmanager
def planned_workers(workers: int) -> Iterator[None]:
    """Build optimizers as a trial of ``workers`` workers will (a spec's check, before any process group exists):
    AdaScale then counts ``workers`` × its accumulation gradients per step. Never around a training step."""
    global _planned
    before, _planned = _planned, workers
    try:
        yield
    finally:
        _planned = before


def worker_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def average_(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor by its mean over the workers, in place. One flat buffer per dtype and device goes through
    one all-reduce: a collective per parameter would cost a round trip each (what DDP's buckets avoid)."""
    workers = worker_count()
    if workers == 1 or not tensors:
        return
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for members in groups.values():
        flat = torch.cat([t.detach().reshape(-1) for t in members])
        dist.all_reduce(flat)
        flat.div_(workers)
        offset = 0
        for t in members:
            t.detach().copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()
