"""What a spec cannot say about itself: whether this machine can run it. Checked before Ray starts, so that a sweep
that cannot run stops in seconds with one line, and writes nothing."""

from __future__ import annotations

import os
import sys

from autoaccel.errors import ConfigError
from autoaccel.tracking import check_tracking_uri

from .spec import SweepSpec

__all__ = ["check_environment", "cluster_address"]


def cluster_address(address: str | None) -> str | None:
    """The Ray cluster a sweep joins: ``--address``, else RAY_ADDRESS; None for a local Ray of its own."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_environment(spec: SweepSpec, address: str | None = None) -> None:
    """Raise DataError when the workload's data is unusable (``Workload.check_data``; not for a cluster, whose data
    may be on its workers only), ConfigError when the tracking store cannot be reached, or when a trial asks for more
    CPUs or GPUs than the Ray it will run on has (Ray would keep it pending forever): this machine's for a local
    sweep, the Ray this program joined itself (``ray.init`` before ``run_sweep``) as that Ray counts them. A cluster
    given by ``address`` or RAY_ADDRESS is not joined yet: ``autoaccel cluster validate`` checks its nodes against
    the cluster's file."""
    from autoaccel.workloads import get_workload

    check_tracking_uri(spec.tracking_uri, source=str(spec.path))
    if cluster_address(address):
        return  # its data may live on its workers only, and its resources are the cluster file's to check
    ray = sys.modules.get("ray")
    started = ray is not None and ray.is_initialized()
    if not (started and len(ray.nodes()) > 1):  # not a cluster this program joined itself
        get_workload(**spec.workload).check_data()  # bad data: one DataError now, not one per trial inside Ray
    if started:
        resources, where = ray.cluster_resources(), "the Ray this program started or joined"
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    else:
        import torch

        cpus, gpus, where = os.cpu_count() or 1, torch.cuda.device_count(), "this machine (a local sweep)"
    needs = spec.trial_needs()
    for key, there in (("cpu", cpus), ("gpu", gpus)):
        if needs[key] > there:  # Ray would keep the trial pending forever
            bound = f"the {there:g} {key.upper()}(s) of {where}; --address joins a cluster"
            allowed = f"{spec.workers} workers × {key} ≤ {bound}" if spec.workers > 1 else f"at most {bound}"
            raise ConfigError(f"resources.{key}", spec.resources[key], allowed, str(spec.path))
