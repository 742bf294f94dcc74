"""``autoaccel cluster validate|up|down|attach|status|submit`` and ``autoaccel tracking serve``: validate first
(exit code 2 with the problems, nothing run; ``up`` also checks that the ``file_mounts`` sources exist where it
runs), then run Ray's or MLflow's command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from autoaccel.cluster.launch import (
    DASHBOARD,
    DASHBOARD_PORT,
    DEFAULT_TRACKING_DIR,
    MLFLOW_PORT,
    Runner,
    attach_command,
    down_command,
    run_command,
    status_command,
    submit_command,
    tracking_serve_command,
    up_command,
)
from autoaccel.cluster.validate import DEFAULT_CLUSTER, mount_problems, validate_cluster
from autoaccel.errors import ConfigError
from autoaccel.redaction import redact_uri

__all__ = ["add_cluster_parser", "add_tracking_parser", "cluster_command", "tracking_command"]


def _report(problems: Sequence[str]) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2


def _spec_in_working_dir(spec: str) -> str:
    """The spec's path relative to ``.``, the job's working directory (it is only uploaded from there)."""
    path = Path(spec).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        allowed = "a spec inside the current directory (it is uploaded as the job's working directory)"
        raise ConfigError("spec", spec, allowed) from None


def _validate_arguments(cluster_yaml: str | None, trials: Sequence[str]) -> str:
    """The cluster file ``validate`` checks. ``--trials`` takes every file after it, so a cluster file typed after
    the specs lands among them, and the check would run on a default cluster.yaml nobody named: a usage error that
    says so instead."""
    for trial in trials:
        with contextlib.suppress(OSError, yaml.YAMLError):
            if isinstance(raw := yaml.safe_load(Path(trial).read_text()), dict) and "provider" in raw:
                specs = " ".join(t for t in trials if t != trial) or "SPEC ..."
                usage = f"autoaccel cluster validate {trial} --trials {specs}"
                raise ConfigError("--trials", trial, f"trial specs, not a cluster file; name that first: {usage}")
    if cluster_yaml is not None:
        return cluster_yaml
    if not DEFAULT_CLUSTER.exists():
        usage = "autoaccel cluster validate CLUSTER.yaml --trials SPEC ..."
        allowed = f"a cluster file, named before --trials ({usage}): none was named, and there is no {DEFAULT_CLUSTER}"
        raise ConfigError("CLUSTER.yaml", None, allowed)
    return str(DEFAULT_CLUSTER)


def cluster_command(args: argparse.Namespace, runner: Runner | None = None) -> int:
    """``autoaccel cluster validate|up|down|attach|status|submit``: validate, then (except validate) run Ray."""
    run = runner or run_command
    action = args.cluster_command
    if action == "validate":
        cluster_yaml = _validate_arguments(args.cluster_yaml, args.trials)
        problems = validate_cluster(cluster_yaml, args.trials)
        if problems:
            return _report(problems)
        checked = f" with {len(args.trials)} trial spec(s)" if args.trials else ""
        print(f"{cluster_yaml}: valid{checked}")
        return 0
    if action == "submit":
        spec = _spec_in_working_dir(args.spec)
        problems = validate_cluster(args.cluster, [args.spec], args.set)
        if problems:
            return _report(problems)
        code = run(submit_command(spec, args.dashboard, args.set, args.resume, args.no_wait))
        if code not in (0, 130):
            print(
                f"autoaccel cluster submit: ray job submit failed (exit {code}); is the dashboard reachable at "
                f"{args.dashboard}? Keep `autoaccel cluster attach {args.cluster}` (or `ray dashboard "
                f"{args.cluster}`) running in another terminal.",
                file=sys.stderr,
            )
        return code
    problems = validate_cluster(args.cluster_yaml)
    if not problems and action == "up":
        problems = mount_problems(args.cluster_yaml)
    if problems:
        return _report(problems)
    build = {"up": up_command, "down": down_command, "attach": attach_command, "status": status_command}[action]
    return run(build(args.cluster_yaml))


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def tracking_command(args: argparse.Namespace, runner: Runner | None = None) -> int:
    """``autoaccel tracking serve``: an MLflow tracking server, in the foreground (run it in tmux on the head)."""
    if not 0 < args.port < 65536:
        raise ConfigError("--port", args.port, "a TCP port in 1..65535")
    argv, env = tracking_serve_command(args.backend_store_uri, args.host, args.port, args.artifacts_destination)
    if args.backend_store_uri is None or args.artifacts_destination is None:
        DEFAULT_TRACKING_DIR.expanduser().mkdir(parents=True, exist_ok=True)
    if not _is_loopback(args.host):
        print(
            f"warning: MLflow on {args.host}:{args.port} is unauthenticated: anyone who can reach this port can read "
            "and change every run; prefer the default 127.0.0.1 and an SSH tunnel",
            file=sys.stderr,
        )
    store = redact_uri(env["MLFLOW_BACKEND_STORE_URI"])
    print(f"MLflow tracking server: http://{args.host}:{args.port} (store {store})", file=sys.stderr)
    return (runner or run_command)(argv, env)


def add_cluster_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``autoaccel cluster ...``; each subcommand calls :func:`cluster_command`."""
    cluster = subparsers.add_parser("cluster", help="validate, start, use and stop a Ray cluster for sweeps")
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    helps = {
        "validate": "check a cluster config (and trial specs against it) offline",
        "up": "start or update the cluster (ray up)",
        "down": "terminate the cluster (ray down)",
        "attach": f"a shell on the head, forwarding ports {DASHBOARD_PORT} (dashboard) and {MLFLOW_PORT} (MLflow)",
        "status": "nodes, resources in use and pending demands (ray status on the head)",
    }
    for name, text in helps.items():
        action = actions.add_parser(name, help=text)
        # validate: None when not named, so that a cluster file typed after --trials is told apart from the default
        default = None if name == "validate" else str(DEFAULT_CLUSTER)
        action.add_argument("cluster_yaml", nargs="?", default=default, help="default: cluster.yaml")
        if name == "validate":
            action.add_argument(
                "--trials", nargs="+", action="extend", default=[], metavar="SPEC", help="trial specs to check"
            )
        action.set_defaults(func=cluster_command)
    submit = actions.add_parser("submit", help="run `autoaccel sweep SPEC --address auto` on the head as a Ray job")
    submit.add_argument("spec", help="the sweep spec, inside the current directory (uploaded as the job's)")
    submit.add_argument("--cluster", default=str(DEFAULT_CLUSTER), help="default: cluster.yaml")
    submit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a spec override")
    submit.add_argument("--resume", action="store_true", help="continue the sweep after its driver died")
    submit.add_argument("--no-wait", action="store_true", help="return once submitted (follow: ray job logs -f)")
    submit.add_argument(
        "--dashboard",
        default=os.environ.get("RAY_API_SERVER_ADDRESS", DASHBOARD),
        help=f"the head's dashboard as forwarded here (default {DASHBOARD}, or RAY_API_SERVER_ADDRESS)",
    )
    submit.set_defaults(func=cluster_command)
    return cluster


def add_tracking_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``autoaccel tracking serve``; calls :func:`tracking_command`."""
    tracking = subparsers.add_parser("tracking", help="the MLflow tracking server for cluster sweeps")
    actions = tracking.add_subparsers(dest="tracking_command", required=True)
    serve = actions.add_parser("serve", help="start an MLflow tracking server (foreground)")
    serve.add_argument(
        "--backend-store-uri",
        help=f"default sqlite:///{DEFAULT_TRACKING_DIR}/mlflow.db; or postgresql://user:pass@host/db",
    )
    serve.add_argument("--artifacts-destination", help=f"default {DEFAULT_TRACKING_DIR}/artifacts; or s3://bucket/x")
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback); 0.0.0.0 is unauthenticated")
    serve.add_argument("--port", type=int, default=MLFLOW_PORT, help=f"default {MLFLOW_PORT}")
    serve.set_defaults(func=tracking_command)
    return tracking
