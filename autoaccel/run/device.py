"""Which device a trial trains on."""

from __future__ import annotations

import torch

__all__ = ["DEVICES", "resolve_device"]

DEVICES = "auto, cpu, cuda, cuda:N"


def resolve_device(name: str, gpu_granted: bool = True) -> torch.device:
    """``auto`` is CUDA when torch sees a device and the trial may use one (``gpu_granted``: a Ray trial without a
    GPU share may not, and a "GPU" Ray declared but torch cannot see trains on the CPU); else the name as given."""
    if name == "auto":
        name = "cuda" if gpu_granted and torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available():  # the current device: a data-parallel worker's own GPU
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)
