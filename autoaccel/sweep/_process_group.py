"""How a multi-worker trial's Ray Train workers form their torch.distributed group.

Ray Train's ``TorchConfig`` has them meet at a TCPStore that rank 0 hosts, and torch's TCPStore listens on every
interface whatever address it is given (it binds the wildcard address). On a local sweep's Ray, which listens on
loopback only (``driver._private_ray_environment``), that would be the one port open to the network. Such a Ray's
node address is loopback and it takes no other node, so every worker runs on this machine: they meet through a
FileStore in a private temporary folder instead, as ``autoaccel train --workers`` does, and gloo and NCCL connect over
``lo`` (``GLOO_SOCKET_IFNAME``/``NCCL_SOCKET_IFNAME``, set by the driver). On a cluster Ray Train's own setup stays.

Imported only inside a trial: it loads Ray Train.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
from typing import Any

import ray
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _setup_torch_process_group, _TorchBackend

__all__ = ["torch_config"]


def torch_config(backend: str) -> TorchConfig:
    """The ``TorchConfig`` of a trial whose workers use ``backend`` (gloo or nccl), on the Ray this trial runs on."""
    if ipaddress.ip_address(ray.util.get_node_ip_address()).is_loopback:
        return _FileRendezvousConfig(backend=backend)
    return TorchConfig(backend=backend)


class _FileRendezvous(_TorchBackend):
    """Ray Train's torch backend with the workers meeting through a file: a fresh one for every start of the worker
    group (a restarted group must not read the old group's keys), removed when the group shuts down."""

    folder: str | None = None

    def on_start(self, worker_group: Any, backend_config: TorchConfig) -> None:
        self._remove()  # a group whose shutdown never came (its workers died)
        self.folder = tempfile.mkdtemp(prefix="autoaccel-rendezvous-")
        url = f"file://{os.path.join(self.folder, 'store')}"
        worker_group.execute(_set_torch_distributed_env_vars)  # RANK, LOCAL_RANK, ... as Ray Train sets them
        started = [
            worker_group.execute_single_async(
                rank,
                _setup_torch_process_group,
                backend=backend_config.backend,
                world_rank=rank,
                world_size=len(worker_group),
                init_method=url,
                timeout_s=backend_config.timeout_s,
            )
            for rank in range(len(worker_group))
        ]
        ray.get(started)

    def on_shutdown(self, worker_group: Any, backend_config: TorchConfig) -> None:
        try:
            super().on_shutdown(worker_group, backend_config)
        finally:
            self._remove()

    def _remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


class _FileRendezvousConfig(TorchConfig):
    @property
    def backend_cls(self) -> type[_TorchBackend]:
        return _FileRendezvous
