"""Which device a trial trains on."""

from __future__ import annotations

import torch

from autoaccel.errors import ConfigError

__all__ = ["DEVICES", "check_device", "resolve_device"]

DEVICES = "auto, cpu, cuda, cuda:N"


def resolve_device(name: str, gpu_granted: bool = True) -> torch.device:
    """``auto`` is CUDA when torch sees a device and the trial may use one (``gpu_granted``: a Ray trial without a
    GPU share may not, and a "GPU" Ray declared but torch cannot see trains on the CPU); else the name as given."""
    if name == "auto":
        name = "cuda" if gpu_granted and torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available():  # the current device: a data-parallel worker's own GPU
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def check_device(name: str, key: str = "device", source: str | None = None) -> None:
    """Raise ConfigError (naming ``key``) when ``name`` asks for a CUDA device this machine does not have: torch would
    fail at the first tensor moved there ("Found no NVIDIA driver"), after the work began. ``auto`` falls back to
    the CPU and is always allowed."""
    if not name.startswith("cuda"):
        return
    suffix = name.partition(":")[2]
    if suffix and not suffix.isdigit():
        raise ConfigError(key, name, "one of " + DEVICES, source)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(suffix or 0)
    if count == 0:
        raise ConfigError(key, name, "auto or cpu: torch sees no CUDA device on this machine", source)
    if index >= count:
        raise ConfigError(key, name, f"auto, cpu, cuda or cuda:0 … cuda:{count - 1} (this machine has {count})", source)
