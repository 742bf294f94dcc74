"""Offline validation of Ray cluster-launcher configs, and of the sweep specs meant to run on them.

The cluster is started by Ray's own cluster launcher from ``cluster.yaml`` (cloud) or ``cluster.onprem.yaml`` (the
``local`` provider); autoaccel adds only what users get wrong most (research notes, section C rows 12–14): a check
before paying for machines, trial requests that fit no node (trials left PENDING forever), fractional GPUs that do not
pack, node-local storage and tracking files.

**Validation** (:func:`validate_cluster`, ``autoaccel cluster validate``) runs fully offline: Ray's JSON schema for
cluster configs (every violation, each naming its key, with a "did you mean" for typos), then Ray's own
``prepare_config`` + ``validate_config`` (and, for the ``local`` provider, ``bootstrap_config``, which is offline
there), then our checks of each trial spec against the cluster:

- **resources**: the trial's ``{cpu, gpu}`` fits at least one node type that can exist (the head, and worker types with
  ``max_workers > 0``): ``cpu ≤ CPU`` and ``gpu ≤ GPU`` of that type. A resource a node type does not declare is
  detected when the node starts and cannot be checked offline: it counts as fitting (declare it to have it checked).
  On the ``local`` provider the nodes' resources are the ``--num-cpus``/``--num-gpus`` of their ``ray start`` lines.
- **packing**: a fractional ``gpu`` < 1 must divide a device into whole trials (``1/gpu`` an integer: 0.5, 0.25, ...).
- **shared storage**: the spec's ``storage`` must be an absolute path under one of the folders listed in the cluster
  file's ``metadata.autoaccel.shared_storage`` (Ray ignores ``metadata``): mounts present at the same path on every
  node (EFS/NFS). Trials write checkpoints there from the worker nodes and the driver (or a resumed one) reads them
  back. Object-store URIs (``s3://``, ``gs://``, ``hdfs://``) are refused for now: the sweep keeps its Optuna journal
  and ASHA state as files in the sweep folder.
- **tracking**: the driver runs on the head and is the only MLflow writer, so ``tracking.uri`` must be a server or a
  database reachable from the head: ``http(s)://`` (by default ``autoaccel tracking serve`` on the head, so
  ``http://127.0.0.1:5000``) or ``postgresql://``/``mysql://``/``mssql://``. The default, a SQLite file in the sweep
  folder, would sit on the shared mount (SQLite over NFS corrupts under locking) or on one node's disk.

Each problem is one line, ``FILE: KEY: problem; fix``.

The launch wrappers are in :mod:`autoaccel.cluster.launch`.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
import json
import logging
import os
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoaccel.errors import ConfigError
from autoaccel.redaction import redact_uri

from .launch import MLFLOW_PORT

__all__ = ["DEFAULT_CLUSTER", "NodeType", "mount_problems", "validate_cluster"]

DEFAULT_CLUSTER = Path("cluster.yaml")
DOCS = "https://docs.ray.io/en/latest/cluster/vms/references/ray-cluster-configuration.html"
OBJECT_STORES = ("s3://", "gs://", "hdfs://")
# MLflow stores reachable over the network: a tracking server, or a database server (SQLAlchemy URIs, +driver allowed).
REMOTE_TRACKING = ("http", "https", "postgresql", "mysql", "mssql")


@dataclass(frozen=True)
class NodeType:
    """What one node of a type offers to trials; ``None`` means detected when the node starts (unknown offline)."""

    name: str
    cpu: float | None
    gpu: float | None
    count: int  # how many such nodes can exist

    def describe(self) -> str:
        shown = [f"{label} {value:g}" for label, value in (("CPU", self.cpu), ("GPU", self.gpu)) if value is not None]
        return f"{self.name} ({', '.join(shown) or 'detected at start'})"


def _line(source: str, key: str, problem: str, fix: str) -> str:
    return f"{source}: {key}: {problem}; {fix}"


def validate_cluster(
    cluster_yaml: str | os.PathLike[str], trials: Iterable[str | os.PathLike[str]] = (), overrides: Sequence[str] = ()
) -> list[str]:
    """Every problem of a cluster config and of the trial specs meant to run on it, one line each (empty: clean).

    Offline: reads files and runs Ray's config code, never a cloud API or SSH. ``overrides`` (``key=value``) apply
    to every trial spec, as ``autoaccel sweep --set`` would.
    """
    source = str(cluster_yaml)
    raw, problems = _read_cluster(Path(cluster_yaml), source)
    if raw is None:
        return problems
    nodes = None
    if not problems:  # Ray's own code assumes a config that passes its schema
        config, ray_problems = _ray_validate(raw, source)
        problems += ray_problems
        if config is not None:
            nodes, node_problems = _node_types(config, source)
            problems += node_problems
    shared, shared_problems = _shared_storage(raw, source)
    problems += shared_problems
    for trial in trials:
        problems += _check_trial(Path(trial), overrides, source, nodes, shared)
    return problems


def _read_cluster(path: Path, source: str) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        return None, [_line(source, "file", f"cannot be read ({error.strerror})", "pass an existing cluster YAML")]
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        return None, [_line(source, "file", f"not valid YAML ({detail})", "fix the YAML syntax")]
    if not isinstance(raw, dict):
        return None, [_line(source, "file", "not a YAML mapping", f"a Ray cluster config, see {DOCS}")]
    return raw, _schema_problems(raw, source)


def _ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _schema_problems(config: Mapping[str, Any], source: str) -> list[str]:
    """Every violation of Ray's schema (Ray's own ``validate_config`` stops at the first), with its key."""
    import jsonschema

    schema = _ray_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return sorted(line for error in validator.iter_errors(config) for line in _describe(error, source))


_TYPES = {
    "integer": "a whole number",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}


def _describe(error: Any, source: str) -> Iterator[str]:
    path = [str(p) for p in error.absolute_path]
    key = ".".join(path) or "config"
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = sorted(error.schema.get("properties", {}))
        for extra in (k for k in error.instance if k not in allowed):
            close = difflib.get_close_matches(str(extra), allowed, n=1)
            fix = f"did you mean {close[0]}?" if close else "allowed keys: " + ", ".join(allowed)
            yield _line(source, ".".join([*path, str(extra)]), "unknown key", fix)
    elif error.validator == "required" and isinstance(error.instance, Mapping):
        for missing in (k for k in error.validator_value if k not in error.instance):
            yield _line(source, ".".join([*path, missing]), "missing", f"add it (see {DOCS})")
    elif error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        wanted = " or ".join(_TYPES.get(k, k) for k in kinds)
        yield _line(source, key, f"{error.instance!r} is not {wanted}", f"write {wanted}")
    else:
        yield _line(source, key, error.message, f"see {DOCS}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Ray's config code prints progress and warnings (e.g. about file mounts under Docker); validation speaks only
    through its problem lines."""
    logger = logging.getLogger("ray.autoscaler")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _ray_validate(raw: dict[str, Any], source: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Ray's ``prepare_config`` (provider defaults, node types' min/max) and ``validate_config`` (schema and semantic
    checks such as ``head_node_type``). For the ``local`` provider the whole ``bootstrap_config``: it is offline there
    (its provider bootstrap is the identity) and rejects what on-prem clusters cannot have."""
    import click
    import jsonschema

    from autoaccel.sweep._ray_internals import prepare_cluster_config, validate_cluster_config

    config = copy.deepcopy(raw)
    try:
        with _quiet():
            if config["provider"].get("type") == "local":
                from ray.autoscaler.sdk import bootstrap_config

                return bootstrap_config(config, no_config_cache=True), []  # no_config_cache: writes nothing
            config = prepare_cluster_config(config)
            validate_cluster_config(config)
        return config, []
    except jsonschema.ValidationError as error:
        return None, list(_describe(error, source))
    except click.ClickException as error:
        return None, [_ray_message(error.message, raw, source)]
    except NotImplementedError:
        provider = raw["provider"].get("type")
        fix = "a provider Ray supports: aws, gcp, azure, vsphere, local, ..."
        return None, [_line(source, "provider.type", f"{provider!r} is not a Ray node provider", fix)]
    except (ValueError, KeyError, TypeError, RuntimeError, AssertionError) as error:
        return None, [_ray_message(str(error) or type(error).__name__, raw, source)]


def _ray_message(message: str, raw: Mapping[str, Any], source: str) -> str:
    """One of Ray's own error messages as a problem line: its key (the first backquoted or known key it names) and a
    fix where we know one."""
    message = " ".join(message.split()).rstrip(".")
    named = re.findall(r"`([A-Za-z_.]+)`", message)
    known = [k for k in _ray_schema()["properties"] if re.search(rf"\b{k}\b", message)]
    key = (named or known or ["config"])[0]
    problem, fix = message, f"see {DOCS}"
    if key == "head_node_type":
        problem = f"{raw.get('head_node_type')!r} is not one of available_node_types"
        fix = "name one of: " + ", ".join(map(str, raw.get("available_node_types") or {}))
    elif key == "available_node_types" and (raw.get("provider") or {}).get("type") == "local":
        fix = "list machines in provider.head_ip/worker_ips; workers advertise GPUs with `ray start --num-gpus=N`"
    elif key in ("head_ip", "worker_ips", "coordinator_address"):
        key, fix = f"provider.{key}", "set provider.head_ip and provider.worker_ips (or provider.coordinator_address)"
    elif key == "max_workers" and "min_workers" in message:
        fix = "raise max_workers to at least the sum of the node types' min_workers"
    return _line(source, key, problem, fix)


def _shared_storage(raw: Mapping[str, Any], source: str) -> tuple[tuple[str, ...], list[str]]:
    """``metadata.autoaccel.shared_storage``: absolute folders mounted at the same path on every node."""
    key = "metadata.autoaccel"
    section = (raw.get("metadata") or {}).get("autoaccel") if isinstance(raw.get("metadata"), Mapping) else None
    if section is None:
        return (), []
    if not isinstance(section, Mapping):
        return (), [_line(source, key, f"{section!r} is not a mapping", "write {shared_storage: [/mnt/shared]}")]
    extra = [k for k in section if k != "shared_storage"]
    problems = [_line(source, f"{key}.{k}", "unknown key", "the only key is shared_storage") for k in extra]
    paths = section.get("shared_storage") or []
    if isinstance(paths, str):
        paths = [paths]
    good = [p for p in paths if isinstance(p, str) and p.startswith("/")]
    if len(good) != len(paths):
        fix = "list absolute folders mounted at the same path on every node, e.g. [/mnt/shared]"
        problems.append(_line(source, f"{key}.shared_storage", f"{paths!r} has a non-absolute path", fix))
    return tuple(posixpath.normpath(p) for p in good), problems


# `ray start --num-cpus=8` / `--num-gpus 2`: what a node of the local provider offers.
_START_FLAG = re.compile(r"--num-(cpus|gpus)(?:=|\s+)(\S+)")


def _node_types(config: Mapping[str, Any], source: str) -> tuple[list[NodeType], list[str]]:
    if config["provider"].get("type") == "local":
        return _local_node_types(config, source)
    global_max = config.get("max_workers", 0)
    nodes = []
    for name, node in config["available_node_types"].items():
        resources = node.get("resources") or {}
        head = name == config["head_node_type"]
        count = 1 if head else min(node.get("max_workers", global_max), global_max)
        nodes.append(NodeType(str(name), resources.get("CPU"), resources.get("GPU"), count))
    return nodes, []


def _local_node_types(config: Mapping[str, Any], source: str) -> tuple[list[NodeType], list[str]]:
    """The head and the workers of an on-prem cluster, from their ``ray start`` lines (Ray detects what they omit)."""
    problems: list[str] = []
    workers = config["available_node_types"]["local.cluster.node"].get("max_workers", 0)
    nodes = []
    for role, count in (("head", 1), ("worker", workers)):
        key = f"{role}_start_ray_commands"
        found: dict[str, float | None] = {"cpus": None, "gpus": None}
        for kind, text in _START_FLAG.findall(" ".join(config.get(key) or [])):
            try:
                value = float(text)
            except ValueError:
                continue  # a shell expression such as $(nvidia-smi -L | wc -l): known only on the node
            if value.is_integer() and value >= 0:
                found[kind] = value
            else:
                fix = "write a whole number (ray start takes whole devices; trials take fractions of them)"
                problems.append(_line(source, key, f"--num-{kind}={text} is not a whole number ≥ 0", fix))
        name = "head" if role == "head" else "workers"
        nodes.append(NodeType(name, found["cpus"], found["gpus"], count))
    return nodes, problems


def _check_trial(
    path: Path, overrides: Sequence[str], cluster: str, nodes: list[NodeType] | None, shared: tuple[str, ...]
) -> list[str]:
    from autoaccel.sweep.spec import load_spec  # torch, via the workloads: not at import (`autoaccel --help`)

    try:
        spec = load_spec(path, overrides)
    except ConfigError as error:
        return [str(error)]
    source = str(path)
    problems = []
    if nodes is not None:
        problems += _resource_problems(spec.resources, nodes, source, cluster)
        if spec.workers > 1:
            problems += _worker_problems(spec.resources, spec.max_concurrent, nodes, source, cluster)
    problems += _storage_problems(spec.raw.get("storage", "sweeps"), shared, source, cluster)
    problems += _tracking_problems((spec.raw.get("tracking") or {}).get("uri"), source)
    return problems


def _packs(gpu: float) -> bool:
    per_device = 1 / gpu
    return abs(per_device - round(per_device)) < 1e-9


def _resource_problems(resources: Mapping[str, float], nodes: list[NodeType], source: str, cluster: str) -> list[str]:
    cpu, gpu = resources["cpu"], resources["gpu"]
    problems = []
    if 0 < gpu < 1 and not _packs(gpu):
        fix = "use 1/k of a device: 0.5, 0.25, 0.2, ... (or 1)"
        problem = f"{gpu:g} GPU per trial does not pack whole devices (1/{gpu:g} = {1 / gpu:.3g} trials per GPU)"
        problems.append(_line(source, "resources.gpu", problem, fix))

    def fits(node: NodeType) -> bool:
        return (node.cpu is None or cpu <= node.cpu) and (gpu == 0 or node.gpu is None or gpu <= node.gpu)

    available = [node for node in nodes if node.count > 0]
    if not any(fits(node) for node in available):
        offered = "; ".join(node.describe() for node in available) or "no nodes"
        if gpu > 0 and not any(node.gpu for node in available):  # nodes of unknown GPUs failed on CPU already
            problem = f"asks for {gpu:g} GPU but {cluster} has no GPU nodes ({offered})"
            fix = "add a GPU node type, or set resources.gpu: 0"
        else:
            request = f"{{cpu: {cpu:g}, gpu: {gpu:g}}}"
            problem = f"{request} fits no node type of {cluster} ({offered}): its trials would wait forever"
            fix = "ask for at most what one node offers, or add a larger node type"
        problems.append(_line(source, "resources", problem, fix))
    return problems


def _worker_problems(
    resources: Mapping[str, float], concurrent: int, nodes: list[NodeType], source: str, cluster: str
) -> list[str]:
    """Whether ``workers`` workers of {cpu, gpu} each fit the cluster at its largest, ``concurrent`` trials at a time:
    Tune does not see a trial's Ray Train workers, so trials beyond that start, wait for workers that never come,
    and fail after ``failure.worker_start_timeout_s``. Node types whose size is known only at start are left out."""
    workers, cpu, gpu = int(resources["workers"]), resources["cpu"], resources["gpu"]
    hosts = [node for node in nodes if node.count > 0 and (node.cpu is None or node.cpu >= cpu)]
    if any(node.cpu is None or (gpu > 0 and node.gpu is None) for node in hosts):
        return []  # some capacity is unknown offline
    slots = 0  # workers the cluster holds at its largest (each node type at its own maximum)
    for node in hosts:
        per_node = [int(node.cpu // cpu)] + ([int(node.gpu // gpu)] if gpu > 0 else [])
        slots += node.count * min(per_node)
    request = f"{workers} workers × {{cpu: {cpu:g}, gpu: {gpu:g}}}"
    if slots < workers:
        problem = f"{request} exceed {cluster} at its largest ({slots} such workers fit): its trials would never start"
        return [_line(source, "resources.workers", problem, "ask for fewer workers, or add nodes")]
    if concurrent * workers > slots:
        problem = (
            f"{concurrent} trials at once × {request} need {concurrent * workers} workers; {cluster} holds {slots}: "
            "the trials beyond that would wait for workers and fail"
        )
        fix = f"set search.max_concurrent to at most {slots // workers}, or add nodes"
        return [_line(source, "search.max_concurrent", problem, fix)]
    return []


def _storage_problems(storage: Any, shared: tuple[str, ...], source: str, cluster: str) -> list[str]:
    mounts = ", ".join(shared) or "none declared yet"
    fix = f"use an absolute path under a shared mount listed in {cluster} metadata.autoaccel.shared_storage ({mounts})"
    text = str(storage)
    if text.startswith(OBJECT_STORES):
        problem = (
            f"{text!r} is an object store; the sweep folder holds the Optuna journal and ASHA state as files, "
            "so it must be a shared file system"
        )
        return [_line(source, "storage", problem, fix)]
    path = posixpath.normpath(text)
    if text.startswith("/") and any(path == mount or path.startswith(mount.rstrip("/") + "/") for mount in shared):
        return []
    problem = (
        f"{text!r} is not shared storage: trials on other nodes write their checkpoints there and the driver reads "
        "them back"
    )
    return [_line(source, "storage", problem, fix)]


def _tracking_problems(uri: Any, source: str) -> list[str]:
    fix = f"run `autoaccel tracking serve` on the head and set tracking.uri: http://127.0.0.1:{MLFLOW_PORT}"
    if not uri:
        problem = "unset: the default is a SQLite file in the sweep folder, on the shared mount or on one node's disk"
        return [_line(source, "tracking.uri", problem, fix + " (or a postgresql:// URI)")]
    scheme = str(uri).split(":", 1)[0].split("+", 1)[0].lower()
    if ":" in str(uri) and scheme in REMOTE_TRACKING:
        return []
    shown = redact_uri(repr(str(uri)))
    if scheme == "sqlite":
        problem = f"{shown} is a node-local SQLite file (and SQLite on a shared NFS mount corrupts under locking)"
    else:
        problem = f"{shown} is not reachable from the head (a local path or file store)"
    return [_line(source, "tracking.uri", problem, fix + " (or a postgresql:// URI)")]


def mount_problems(cluster_yaml: str) -> list[str]:
    """``file_mounts`` sources that do not exist here: they are relative to where ``ray up`` runs (the project root)."""
    mounts = (yaml.safe_load(Path(cluster_yaml).read_text()) or {}).get("file_mounts") or {}
    missing = {remote: local for remote, local in mounts.items() if not Path(str(local)).expanduser().exists()}
    problem, fix = f"does not exist in {Path.cwd()}", "run this from the project root"
    return [_line(cluster_yaml, f"file_mounts.{to}", f"{source!r} {problem}", fix) for to, source in missing.items()]
