"""What a spec cannot say about itself: whether this machine can run it. Checked before Ray starts, so that a sweep
that cannot run stops in seconds with one line, and writes nothing."""

from __future__ import annotations

import os
import sys

from autoaccel.errors import ConfigError
from autoaccel.tracking import check_tracking_uri

from .spec import SweepSpec

__all__ = ["check_environment"]


def check_environment(spec: SweepSpec, address: str | None = None) -> None:
    """Raise ConfigError when the tracking store cannot be reached, or when a local sweep's trial asks for more GPUs
    than this machine has (Ray would wait for them forever). On a cluster (``address``, RAY_ADDRESS, or a Ray the
    program started itself) the nodes' resources are Ray's to check: ``autoaccel cluster validate`` does it against
    the cluster's file."""
    check_tracking_uri(spec.tracking_uri, source=str(spec.path))
    gpus = spec.resources["gpu"]
    ray = sys.modules.get("ray")  # a Ray this program connected to itself (to a cluster, perhaps) is used as it is
    joined = address or os.environ.get("RAY_ADDRESS") or (ray is not None and ray.is_initialized())
    if gpus and not joined:
        import torch

        here = torch.cuda.device_count()
        if gpus > here:
            allowed = f"at most the {here} GPU(s) of this machine for a local sweep (--address joins a cluster)"
            raise ConfigError("resources.gpu", gpus, allowed, str(spec.path))
