"""Nothing a local sweep starts listens beyond loopback: every process of its Ray session (GCS, raylet, dashboard and
agents, the driver's and the workers' core workers, a multi-worker trial's Ray Train workers and their process group)
binds 127.0.0.1. A Ray or torch upgrade that opens a port to the network fails here.

The sweep runs as the command line runs it (its own process, Ray not imported before), and is looked at while its
first trial trains: the workload waits at its first evaluation until the test has read the sockets."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import listeners_of_process_tree

TESTS = str(Path(__file__).resolve().parent)
BASE_SGD = str(Path(__file__).resolve().parent.parent / "search_spaces" / "base_sgd.yaml")
# what would make Ray or the process group listen elsewhere, or join another Ray: the sweep's own defaults decide
OUTSIDE = ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:  # [::ffff:127.0.0.1]: an IPv6 socket bound to IPv4 loopback
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _spec(tmp_path: Path, workers: int) -> Path:
    space = tmp_path / "space.yaml"
    params = {"lr": {"float": [1.0e-3, 1.0e-1], "log": True}, "momentum": {"value": 0.0}, "_decay": {"value": False}}
    families = {"sgd": {"include": [BASE_SGD], "params": params}}
    space.write_text(yaml.safe_dump({"name": "loopback", "families": families}))
    spec = {
        "name": "loopback",
        "workload": {
            "name": "sweep_workloads:PausingQuadratic",
            "samples": 64,
            "reached": str(tmp_path / "reached"),
            "release": str(tmp_path / "release"),
        },
        "space": str(space),
        "budget": {"epochs": 1, "batch_size": 16},
        "search": {"sampler": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0},
        "scheduler": {"type": "fifo"},
        "resources": {"workers": workers, "cpu": 1},
        "failure": {"max_failures": 0, "worker_start_timeout_s": 120},
        "storage": str(tmp_path / "sweeps"),
    }
    path = tmp_path / "loopback.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process-trial-no-dashboard", "two-worker-trial-dashboard-on"])
def test_a_local_sweep_listens_on_loopback_only(tmp_path: Path, workers: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE and not k.startswith("RAY_AUTH")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen(
            [sys.executable, "-m", "autoaccel.cli", "sweep", str(_spec(tmp_path, workers))],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        reached = tmp_path / "reached"
        deadline = time.monotonic() + 400  # a hang guard, not a timing: the state is the trial training
        while not reached.exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reached.exists(), log.read_text()[-3000:]
        listeners = listeners_of_process_tree(driver.pid)
    finally:
        (tmp_path / "release").touch()
        code = driver.wait(timeout=400)
    assert code == 0, log.read_text()[-3000:]
    outside = [(address, port, command[:100]) for address, port, command in listeners if not _is_loopback(address)]
    assert not outside, outside
    # the walk saw the session, not a part of it: its core servers, the driver, and with several workers the
    # dashboard (the State API frees their resources) and the Ray Train workers, which then hold a process group
    commands = " ".join(command for _, _, command in listeners)
    expected = ["gcs_server", "raylet", "autoaccel.cli sweep"]
    expected += ["dashboard.py", "RayTrainWorker"] if workers > 1 else []
    assert all(name in commands for name in expected), sorted({c[:80] for _, _, c in listeners})
    assert "1 completed" in log.read_text()
