"""What a spec cannot say about itself: whether this machine can run it. Checked before Ray starts, so that a sweep
that cannot run stops in seconds with one line, and writes nothing."""

from __future__ import annotations

import os
import socket
import sys

from autoaccel.errors import ConfigError
from autoaccel.tracking import check_tracking_uri

from .spec import SweepSpec

__all__ = ["check_cluster_answers", "check_environment", "check_workload_runs", "cluster_address"]

REACH_TIMEOUT_S = 5.0  # a cluster's head answers a TCP connection in milliseconds, even across a region


def cluster_address(address: str | None) -> str | None:
    """The Ray cluster a sweep joins: ``--address``, else RAY_ADDRESS; None for a local Ray of its own."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_environment(spec: SweepSpec, address: str | None = None) -> str | None:
    """Raise DataError when the workload's data is unusable (``Workload.check_data``; not for a cluster, whose data
    may be on its workers only), ConfigError when the tracking store cannot be reached, or when a trial asks for more
    CPUs or GPUs than the Ray it will run on has (Ray would keep it pending forever): this machine's for a local
    sweep, the Ray this program joined itself (``ray.init`` before ``run_sweep``) as that Ray counts them. A cluster
    given by ``address`` or RAY_ADDRESS is not joined yet: it must answer there (:func:`check_cluster_answers`), and
    ``autoaccel cluster validate`` checks its nodes against the cluster's file. Where the data are here, the
    workload's code runs once too (:func:`check_workload_runs`); returns what it ran, or None."""
    from autoaccel.workloads import get_workload

    check_tracking_uri(spec.tracking_uri, source=str(spec.path))
    if cluster_address(address):
        check_cluster_answers(cluster_address(address), "--address" if address else "RAY_ADDRESS")
        return None  # its data may live on its workers only, and its resources are the cluster file's to check
    ray = sys.modules.get("ray")
    started = ray is not None and ray.is_initialized()
    here = not (started and len(ray.nodes()) > 1)  # not a cluster this program joined itself
    if here:
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
    # last, the costliest: the user's code once, one clear line now, not a traceback per trial
    return check_workload_runs(spec) if here else None


def check_cluster_answers(address: str, key: str) -> None:
    """Raise ConfigError (naming ``key``) when nothing answers a TCP connection at the ``host:port`` of ``address``
    (``ray://host:port``, Ray Client, or ``host:port``, the GCS) within a few seconds: ``ray.init`` would retry for
    half a minute or more and end with a traceback, after the sweep folder and its parent run were made. Whether
    the answer is Ray's is for ``ray.init`` to find out; ``auto`` and other forms are left to it."""
    scheme, _, rest = address.rpartition("://")
    host, _, port = rest.rpartition(":")
    if scheme not in ("", "ray") or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        allowed = (
            f"a Ray cluster that answers at {host}:{port} within {REACH_TIMEOUT_S:g} s ({reason}): start it "
            "(`autoaccel cluster up`, `ray start --head`), forward its port, or leave the address out for a local sweep"
        )
        raise ConfigError(key, address, allowed) from None


def first_draws(spec: SweepSpec) -> list[tuple[str, dict, dict]]:
    """What the sweep's first trials train, one per family: (what it is, optimizer config, budget overrides) — each
    family's first draw from a seeded random sampler, a space without families' first draw, or a study's first
    point."""
    from .space import load_space, sample
    from .trainable import plan

    if spec.points:
        drawn, _ = plan(spec.points[0].as_config(), spec.seeds)
        return [("the study's first point", drawn.optimizer, drawn.budget)]
    space = load_space(spec.space)
    families = spec.compare.families if spec.compare else space.families or (None,)
    draws = []
    for family in families:
        drawn = sample(space, 1, seed=0, family=family)[0]
        label = f"family {family}'s first draw" if family else "the space's first draw"
        draws.append((label, drawn.optimizer, drawn.budget))
    return draws


def check_workload_runs(spec: SweepSpec) -> str:
    """Run the workload's code once (``autoaccel.run.dry_run``: setup, the data check on the loaded data, one batch
    with one optimizer step of each family's first draw, one ``evaluate()``); raise ConfigError or DataError naming
    the workload and the method that does not do what the protocol asks. Returns what ran, in words."""
    import time

    from autoaccel.run.dry_run import dry_run

    started = time.perf_counter()
    draws = first_draws(spec)
    stepped = dry_run(spec.workload, draws, spec.budget, spec.metrics, spec.workers)
    steps = f"each of {len(draws)} families' first draws" if len(draws) > 1 else draws[0][0]
    if stepped < len(draws):  # built for several workers' gradients: the space's check built them as they will be
        steps += f" ({len(draws) - stepped} built for {spec.workers} workers only: no step here)"
    return (
        f"its code ran once on the CPU in {time.perf_counter() - started:.2f} s: setup, the data check, one batch's"
        f" loss and backward, one optimizer step of {steps}, one evaluate()"
    )
