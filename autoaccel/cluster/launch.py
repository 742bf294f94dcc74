"""Launching sweeps on a Ray cluster: Ray CLI command lines built by pure functions (``up``, ``down``, ``attach``,
``status``, ``job submit``), the MLflow tracking server the sweep driver logs to (``mlflow server`` on loopback,
its store under ``~/autoaccel-mlflow`` by default), and the runner that executes them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from autoaccel.redaction import redact_uri
from autoaccel.tracking import resolve_tracking_uri

__all__ = [
    "DASHBOARD",
    "DEFAULT_TRACKING_DIR",
    "MLFLOW_PORT",
    "Runner",
    "attach_command",
    "down_command",
    "run_command",
    "status_command",
    "submit_command",
    "tracking_serve_command",
    "up_command",
]

# The head's dashboard (job submission), reached through the SSH tunnel of `cluster attach` or `ray dashboard`.
DASHBOARD = "http://127.0.0.1:8265"
DASHBOARD_PORT, MLFLOW_PORT = 8265, 5000
# Where `autoaccel tracking serve` keeps its SQLite store and artifacts by default: the head's own disk, outside the
# project copy (~/autoaccel) that `ray up` syncs.
DEFAULT_TRACKING_DIR = Path("~/autoaccel-mlflow")
# A job uploads the working directory minus .gitignore'd paths (.venv, sweeps/); .git is not ignored by git itself.
JOB_EXCLUDES = (".git",)

Runner = Callable[..., int]  # (argv) or (argv, env), as run_command


def up_command(cluster_yaml: str | os.PathLike[str]) -> list[str]:
    """Start or update the cluster (``-y``: no confirmation prompt; setup commands are idempotent)."""
    return ["ray", "up", "-y", str(cluster_yaml)]


def down_command(cluster_yaml: str | os.PathLike[str]) -> list[str]:
    """Terminate every node, head included."""
    return ["ray", "down", "-y", str(cluster_yaml)]


def attach_command(
    cluster_yaml: str | os.PathLike[str], ports: Sequence[int] = (DASHBOARD_PORT, MLFLOW_PORT)
) -> list[str]:
    """A shell on the head that also forwards the dashboard (for ``ray job submit``/``logs``) and MLflow's UI to the
    same ports on this machine; both stay on the head's loopback, where they are not exposed."""
    return ["ray", "attach", str(cluster_yaml), *[arg for port in ports for arg in ("-p", str(port))]]


def status_command(cluster_yaml: str | os.PathLike[str]) -> list[str]:
    """``ray status`` run on the head: nodes, resources in use, pending demands (trials that cannot be placed)."""
    return ["ray", "exec", str(cluster_yaml), "ray status"]


def submit_command(
    spec: str,
    dashboard: str = DASHBOARD,
    overrides: Sequence[str] = (),
    resume: bool = False,
    no_wait: bool = False,
) -> list[str]:
    """Run ``autoaccel sweep SPEC --address auto`` on the head as a Ray job.

    ``ray job submit`` rather than ``ray submit``: ``ray submit`` copies one Python script and runs it over SSH, while
    a job runs any entrypoint (here the ``autoaccel`` command), places it on the head (Ray pins an entrypoint that
    asks for no resources there), ships the working directory (this project, minus what ``.gitignore`` lists) to
    every node, and keeps status and logs (``ray job logs -f``, ``ray job stop``) after the terminal closes.
    ``spec`` must be relative to the working directory (``.``).
    """
    argv = ["ray", "job", "submit", "--address", dashboard, "--working-dir", "."]
    argv += ["--runtime-env-json", json.dumps({"excludes": list(JOB_EXCLUDES)})]
    if no_wait:
        argv.append("--no-wait")
    argv += ["--", "autoaccel", "sweep", spec, "--address", "auto"]
    for override in overrides:
        argv += ["--set", override]
    if resume:
        argv.append("--resume")
    return argv


def default_backend_store_uri() -> str:
    return f"sqlite:///{(DEFAULT_TRACKING_DIR.expanduser() / 'mlflow.db').resolve()}"


def tracking_serve_command(
    backend_store_uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = MLFLOW_PORT,
    artifacts_destination: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """``mlflow server`` for the sweep driver, as (command line, environment): by default a SQLite store and
    proxied artifacts under ``~/autoaccel-mlflow`` (absolute paths: the server's working directory must not matter),
    bound to loopback. The store's URI travels in ``MLFLOW_BACKEND_STORE_URI``, never on the command line, where
    any user of the machine could read its password (``ps``)."""
    backend = resolve_tracking_uri(backend_store_uri, Path.cwd()) if backend_store_uri else default_backend_store_uri()
    artifacts = artifacts_destination or str((DEFAULT_TRACKING_DIR.expanduser() / "artifacts").resolve())
    argv = ["mlflow", "server", "--artifacts-destination", artifacts, "--host", host, "--port", str(port)]
    return argv, {"MLFLOW_BACKEND_STORE_URI": backend}


def _executable(name: str) -> str:
    """The tool installed next to this Python (the venv's ``ray``/``mlflow``) when there is one, else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else (shutil.which(name) or name)


def run_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run a built command in the foreground, with ``env`` added to the environment (not printed: it may hold a
    password); its exit code (130 on Ctrl-C)."""
    print("+ " + redact_uri(" ".join(argv)), file=sys.stderr)
    try:
        environment = {**os.environ, **(env or {})}
        return subprocess.run([_executable(argv[0]), *argv[1:]], check=False, env=environment).returncode
    except KeyboardInterrupt:
        return 130
