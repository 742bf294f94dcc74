"""Cluster configs validated offline, the Ray CLI command lines the wrappers build, validate-first, and the MLflow
server command. Nothing here starts Ray, opens SSH or calls a cloud: runners are injected."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoaccel.cli.cluster import add_cluster_parser, add_tracking_parser, cluster_command, tracking_command
from autoaccel.cluster.launch import (
    DASHBOARD,
    attach_command,
    down_command,
    status_command,
    submit_command,
    tracking_serve_command,
    up_command,
)
from autoaccel.cluster.validate import validate_cluster
from autoaccel.errors import ConfigError
from autoaccel.redaction import redact_uri
from autoaccel.sweep.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
CLOUD, ONPREM = ROOT / "cluster.yaml", ROOT / "cluster.onprem.yaml"
QUICKSTART = ROOT / "trials" / "quickstart.yaml"
# A sweep spec ready for a cluster: shared storage and a tracking server on the head.
READY: dict[str, Any] = {
    "name": "cluster-test",
    "workload": {"name": "quadratic", "samples": 64},
    "space": str(ROOT / "search_spaces" / "quickstart.yaml"),
    "budget": {"epochs": 4, "batch_size": 16},
    "resources": {"cpu": 4, "gpu": 0.5},
    "storage": "/mnt/shared/sweeps",
    "tracking": {"uri": "http://127.0.0.1:5000"},
}


def _yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _spec(tmp_path: Path, name: str = "spec.yaml", **changes: Any) -> Path:
    return _yaml(tmp_path / name, {**READY, **changes})


def _cluster(tmp_path: Path, base: Path = CLOUD, name: str = "c.yaml", edit: Any = None) -> Path:
    config = yaml.safe_load(base.read_text())
    if edit:
        edit(config)
    return _yaml(tmp_path / name, config)


def _only(problems: list[str], prefix: str) -> str:
    assert len(problems) == 1, problems
    assert problems[0].startswith(prefix), problems
    return problems[0]


# -- the shipped files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cluster", [CLOUD, ONPREM], ids=["cloud", "onprem"])
def test_shipped_clusters_validate_clean(cluster: Path, tmp_path: Path) -> None:
    assert validate_cluster(cluster) == []
    assert validate_cluster(cluster, [_spec(tmp_path)]) == []


def test_quickstart_is_not_ready_for_a_cluster() -> None:
    # its storage is the local folder `sweeps` and its tracking store the default SQLite file: both named, with fixes
    storage, tracking = validate_cluster(CLOUD, [QUICKSTART])
    assert storage.startswith(f"{QUICKSTART}: storage: 'sweeps' is not shared storage")
    assert "metadata.autoaccel.shared_storage (/mnt/shared)" in storage
    assert tracking.startswith(f"{QUICKSTART}: tracking.uri: unset")
    assert "`autoaccel tracking serve` on the head and set tracking.uri: http://127.0.0.1:5000" in tracking


# -- Ray's schema and semantic checks, with the key named --------------------------------------------------------


def _set(path: str, value: Any):
    def edit(config: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        for key in parents:
            config = config[key]
        config[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set("max_worker", 4), "max_worker: unknown key; did you mean max_workers?"),
        (_set("available_node_types/gpu_1x/max_worker", 2), "available_node_types.gpu_1x.max_worker: unknown key"),
        (_set("auth/ssh_usr", "me"), "auth.ssh_usr: unknown key; did you mean ssh_user?"),
        (_set("max_workers", "four"), "max_workers: 'four' is not a whole number"),
        (_set("head_node_type", "hed"), "head_node_type: 'hed' is not one of available_node_types; name one of:"),
        (_set("available_node_types/gpu_1x/resources/GPU", 0.5), "available_node_types.gpu_1x.resources.GPU: 0.5"),
        (_set("available_node_types/gpu_1x/min_workers", 9), "max_workers: The specified global `max_workers`"),
        (_set("provider/type", "nimbus"), "provider.type: 'nimbus' is not a Ray node provider"),
        (_set("metadata/autoaccel/shared_storage", ["mnt/shared"]), "metadata.autoaccel.shared_storage:"),
    ],
    ids=["typo", "node-typo", "auth-typo", "type", "head", "node-gpu", "min-max", "provider", "relative-mount"],
)
def test_cluster_errors_name_the_key(edit: Any, expected: str, tmp_path: Path) -> None:
    path = _cluster(tmp_path, edit=edit)
    _only(validate_cluster(path), f"{path}: {expected}")


def test_every_schema_violation_is_reported(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["max_worker"] = 4
        config["idle_timeout_minutes"] = "ten"

    problems = validate_cluster(_cluster(tmp_path, edit=edit))
    assert [p.split(": ")[1] for p in problems] == ["idle_timeout_minutes", "max_worker"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set("available_node_types", {"gpu": {"resources": {"GPU": 1}, "node_config": {}}}), "available_node_types:"),
        (_set("worker_start_ray_commands", ["ray start --address=$RAY_HEAD_IP:6379 --num-gpus=0.5"]),
         "worker_start_ray_commands: --num-gpus=0.5 is not a whole number"),
        (lambda config: config["provider"].pop("worker_ips"), "provider.head_ip: Please supply a `head_ip`"),
    ],
    ids=["node-types", "fractional-num-gpus", "no-worker-ips"],
)  # fmt: skip
def test_onprem_errors(edit: Any, expected: str, tmp_path: Path) -> None:
    path = _cluster(tmp_path, ONPREM, edit=edit)
    _only(validate_cluster(path), f"{path}: {expected}")


def test_unreadable_cluster_files(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    _only(validate_cluster(missing), f"{missing}: file: cannot be read")
    broken = tmp_path / "broken.yaml"
    broken.write_text("cluster_name: [a,\n")
    _only(validate_cluster(broken), f"{broken}: file: not valid YAML")


# -- trial specs against the cluster -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"cpu": 1, "gpu": 8}, "resources: {cpu: 1, gpu: 8} fits no node type of"),
        ({"cpu": 64, "gpu": 1}, "resources: {cpu: 64, gpu: 1} fits no node type of"),
        ({"cpu": 1, "gpu": 0.3}, "resources.gpu: 0.3 GPU per trial does not pack whole devices"),
    ],
    ids=["gpus", "cpus", "fraction"],
)
def test_trial_resources_must_fit_a_node(resources: dict[str, float], expected: str, tmp_path: Path) -> None:
    spec = _spec(tmp_path, resources=resources)
    line = _only(validate_cluster(CLOUD, [spec]), f"{spec}: {expected}")
    if "fits no node" in line:  # what the nodes offer, so the fix is obvious
        assert "gpu_1x (CPU 8, GPU 1)" in line and "gpu_4x (CPU 48, GPU 4)" in line


def test_gpu_trials_need_gpu_nodes(tmp_path: Path) -> None:
    def cpu_only(config: dict[str, Any]) -> None:
        config["available_node_types"] = {
            "head": config["available_node_types"]["head"],
            "cpu": {"max_workers": 2, "resources": {"CPU": 16, "GPU": 0}, "node_config": {}},
        }

    cluster, spec = _cluster(tmp_path, edit=cpu_only), _spec(tmp_path)
    _only(validate_cluster(cluster, [spec]), f"{spec}: resources: asks for 0.5 GPU but {cluster} has no GPU nodes")
    assert validate_cluster(cluster, [_spec(tmp_path, "cpu.yaml", resources={"cpu": 2, "gpu": 0})]) == []


def test_trials_never_count_on_the_head_or_absent_workers(tmp_path: Path) -> None:
    def no_workers(config: dict[str, Any]) -> None:
        config["max_workers"] = 0

    cluster, spec = _cluster(tmp_path, edit=no_workers), _spec(tmp_path, resources={"cpu": 1, "gpu": 0})
    _only(validate_cluster(cluster, [spec]), f"{spec}: resources: {{cpu: 1, gpu: 0}} fits no node type")


def test_onprem_workers_offer_their_start_line(tmp_path: Path) -> None:
    fits, too_big = _spec(tmp_path, resources={"cpu": 8, "gpu": 2}), _spec(tmp_path, "big.yaml", resources={"gpu": 4})
    assert validate_cluster(ONPREM, [fits]) == []
    line = _only(validate_cluster(ONPREM, [too_big]), f"{too_big}: resources: {{cpu: 1, gpu: 4}} fits no node type")
    assert "head (CPU 0, GPU 0); workers (CPU 16, GPU 2)" in line

    def detected(config: dict[str, Any]) -> None:  # Ray detects the GPUs at start: nothing to check offline
        config["worker_start_ray_commands"] = [
            "ray start --address=$RAY_HEAD_IP:6379 --num-gpus=$(nvidia-smi -L | wc -l)"
        ]

    assert validate_cluster(_cluster(tmp_path, ONPREM, edit=detected), [too_big]) == []


@pytest.mark.parametrize(
    ("storage", "ok"),
    [
        ("/mnt/shared/sweeps", True),
        ("/mnt/shared", True),
        ("sweeps", False),
        ("~/sweeps", False),
        ("/data/sweeps", False),
        ("/mnt/shared-not/sweeps", False),
        ("/mnt/shared/../x", False),
        ("s3://bucket/sweeps", False),
    ],
)
def test_storage_must_be_shared(storage: str, ok: bool, tmp_path: Path) -> None:
    spec = _spec(tmp_path, storage=storage)
    problems = validate_cluster(CLOUD, [spec])
    if ok:
        assert problems == []
    else:
        line = _only(problems, f"{spec}: storage: {storage!r} is ")
        assert "shared_storage (/mnt/shared)" in line


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("http://127.0.0.1:5000", None),
        ("https://mlflow.example.org", None),
        ("postgresql+psycopg2://mlflow:secret@db:5432/mlflow", None),
        ("sqlite:///mlflow.db", "is a node-local SQLite file"),
        ("sqlite:////mnt/shared/mlflow.db", "is a node-local SQLite file"),
        ("./mlruns", "is not reachable from the head"),
        ("file:///tmp/mlruns", "is not reachable from the head"),
        ("postgres://mlflow:s3cr3t@db/mlflow", "is not reachable from the head"),  # an alias MLflow does not take
    ],
)
def test_tracking_must_be_reachable_from_the_head(uri: str, problem: str | None, tmp_path: Path) -> None:
    spec = _spec(tmp_path, tracking={"uri": uri})
    problems = validate_cluster(CLOUD, [spec])
    if problem is None:
        assert problems == []
    else:
        line = _only(problems, f"{spec}: tracking.uri: {redact_uri(uri)!r} {problem}")
        assert "s3cr3t" not in line
        assert line.endswith("set tracking.uri: http://127.0.0.1:5000 (or a postgresql:// URI)")


def test_invalid_spec_is_reported_not_raised(tmp_path: Path) -> None:
    spec = _spec(tmp_path, resources={"cpu": 1, "gpu": 1.5})
    _only(validate_cluster(CLOUD, [spec]), f"{spec}: resources.gpu = 1.5")


# -- command lines -----------------------------------------------------------------------------------------------


def test_ray_command_lines() -> None:
    assert up_command("cluster.yaml") == ["ray", "up", "-y", "cluster.yaml"]
    assert down_command("cluster.yaml") == ["ray", "down", "-y", "cluster.yaml"]
    assert attach_command("c.yaml") == ["ray", "attach", "c.yaml", "-p", "8265", "-p", "5000"]
    assert attach_command("c.yaml", ports=()) == ["ray", "attach", "c.yaml"]
    assert status_command("c.yaml") == ["ray", "exec", "c.yaml", "ray status"]
    excludes = json.dumps({"excludes": [".git"]})
    job = ["ray", "job", "submit", "--address", DASHBOARD, "--working-dir", ".", "--runtime-env-json", excludes]
    assert submit_command("trials/x.yaml") == [*job, "--", "autoaccel", "sweep", "trials/x.yaml", "--address", "auto"]
    assert submit_command("x.yaml", "http://127.0.0.1:9000", ["seeds=[0]"], resume=True, no_wait=True) == [
        *job[:4],
        "http://127.0.0.1:9000",
        *job[5:],
        "--no-wait",
        "--",
        "autoaccel",
        "sweep",
        "x.yaml",
        "--address",
        "auto",
        "--set",
        "seeds=[0]",
        "--resume",
    ]


def test_ray_accepts_the_command_lines() -> None:
    # parsed by Ray's own click CLI (parsing only: nothing runs), so a renamed flag fails here, not on a user's cluster
    import click
    from ray.scripts.scripts import cli

    lines = [up_command("c.yaml"), down_command("c.yaml"), attach_command("c.yaml"), status_command("c.yaml")]
    for argv in [*lines, submit_command("t.yaml", overrides=["seeds=[0]"], resume=True, no_wait=True)]:
        command, rest = cli, argv[1:]
        while isinstance(command, click.Group):
            command, name, rest = command.commands[rest[0]], rest[0], rest[1:]
        params = command.make_context(name, list(rest)).params
        assert params.get("cluster_config_file", "c.yaml") == "c.yaml"
    assert params["entrypoint"] == (
        "autoaccel",
        "sweep",
        "t.yaml",
        "--address",
        "auto",
        "--set",
        "seeds=[0]",
        "--resume",
    )
    assert (params["working_dir"], params["no_wait"]) == (".", True)


def test_tracking_serve_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    home = tmp_path.resolve()
    argv, env = tracking_serve_command()
    assert argv == [
        "mlflow",
        "server",
        "--artifacts-destination",
        f"{home}/autoaccel-mlflow/artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
    ]
    assert env == {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{home}/autoaccel-mlflow/mlflow.db"}
    argv, env = tracking_serve_command("postgresql://u:p@db/mlflow", "0.0.0.0", 6000, "s3://bucket/mlflow")
    assert argv[2:] == ["--artifacts-destination", "s3://bucket/mlflow", "--host", "0.0.0.0", "--port", "6000"]
    # the store, with its password, travels in the environment: never on a command line that `ps` shows
    assert env == {"MLFLOW_BACKEND_STORE_URI": "postgresql://u:p@db/mlflow"} and "u:p" not in " ".join(argv)
    # a relative SQLite path is made absolute: the server's working directory must not matter
    assert tracking_serve_command("sqlite:///db/m.db")[1]["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{home}/db/m.db"


# -- the commands: parsing, validate first, then run -------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="autoaccel")
    commands = parser.add_subparsers(dest="command", required=True)
    add_cluster_parser(commands)
    add_tracking_parser(commands)
    return parser.parse_args(argv)


class Recorder:
    def __init__(self, code: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.code = code

    def __call__(self, argv: Any, env: Any = None) -> int:
        self.calls.append(list(argv))
        self.env = env
        return self.code


def test_parsers() -> None:
    args = _parse(["cluster", "validate", "--trials", "a.yaml", "b.yaml", "--trials", "c.yaml"])
    assert (args.cluster_yaml, args.trials, args.func) == (
        None,  # not named: validate tells that apart from a cluster.yaml typed (the default is taken then)
        ["a.yaml", "b.yaml", "c.yaml"],
        cluster_command,
    )
    args = _parse(["cluster", "submit", "t.yaml", "--cluster", "c.yaml", "--set", "seeds=[0]", "--resume"])
    assert (args.spec, args.cluster, args.set, args.resume, args.no_wait) == (
        "t.yaml",
        "c.yaml",
        ["seeds=[0]"],
        True,
        False,
    )
    args = _parse(["tracking", "serve", "--port", "6000"])
    assert (args.host, args.port, args.backend_store_uri, args.artifacts_destination) == ("127.0.0.1", 6000, None, None)
    for action in ("up", "down", "attach", "status"):
        assert _parse(["cluster", action]).cluster_yaml == "cluster.yaml"


def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster_command(_parse(["cluster", "validate", str(CLOUD), "--trials", str(_spec(tmp_path))])) == 0
    assert "valid with 1 trial spec(s)" in capsys.readouterr().out
    assert cluster_command(_parse(["cluster", "validate", str(CLOUD), "--trials", str(QUICKSTART)])) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2  # one line per problem


def test_validate_with_the_cluster_file_after_the_specs_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--trials` takes every file after it: a cluster file typed there is named as one, with the command that
    works, instead of a check of a cluster.yaml nobody named; with no cluster file named and none here, the same."""
    from autoaccel.cli import main

    spec = _spec(tmp_path)
    monkeypatch.chdir(tmp_path)  # no cluster.yaml here
    assert main(["cluster", "validate", "--trials", str(spec), str(ONPREM)]) == 2
    err = capsys.readouterr().err
    usage = f"autoaccel cluster validate {ONPREM} --trials {spec}"
    refusal = f"--trials = '{ONPREM}': trial specs, not a cluster file; name that first: {usage}"
    assert err == f"autoaccel cluster: error: {refusal}\n"
    assert main(["cluster", "validate", "--trials", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autoaccel cluster: error: CLUSTER.yaml = None: a cluster file, named before --trials")
    assert "none was named, and there is no cluster.yaml" in err and err.count("\n") == 1, err
    assert main(["cluster", "validate", str(ONPREM), "--trials", str(spec)]) == 0  # as the refusal says
    assert f"{ONPREM}: valid with 1 trial spec(s)" in capsys.readouterr().out
    monkeypatch.chdir(ROOT)  # the default, when it is there, still serves
    assert main(["cluster", "validate", "--trials", str(spec)]) == 0
    assert "cluster.yaml: valid with 1 trial spec(s)" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["up", "down", "attach", "status"])
def test_wrappers_validate_first(
    action: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)  # where `up` finds the file_mounts' sources
    broken = _cluster(tmp_path, edit=_set("max_worker", 4))
    runner = Recorder()
    assert cluster_command(_parse(["cluster", action, str(broken)]), runner) == 2
    assert runner.calls == []
    assert "max_worker: unknown key" in capsys.readouterr().err
    build = {"up": up_command, "down": down_command, "attach": attach_command, "status": status_command}[action]
    assert cluster_command(_parse(["cluster", action, str(CLOUD)]), runner) == 0
    assert runner.calls == [build(str(CLOUD))]


def test_submit_validates_cluster_and_spec_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trials").mkdir()
    _spec(tmp_path / "trials", "ready.yaml")
    _spec(tmp_path / "trials", "local.yaml", storage="sweeps")
    runner = Recorder()

    assert cluster_command(_parse(["cluster", "submit", "trials/local.yaml", "--cluster", str(CLOUD)]), runner) == 2
    assert runner.calls == [] and "storage: 'sweeps' is not shared storage" in capsys.readouterr().err
    broken = _cluster(tmp_path, edit=_set("max_workers", "four"))
    assert cluster_command(_parse(["cluster", "submit", "trials/ready.yaml", "--cluster", str(broken)]), runner) == 2
    assert runner.calls == []

    args = _parse(["cluster", "submit", str(tmp_path / "trials/ready.yaml"), "--cluster", str(CLOUD), "--no-wait"])
    assert cluster_command(args, runner) == 0
    assert runner.calls == [submit_command("trials/ready.yaml", DASHBOARD, no_wait=True)]

    failing = Recorder(code=1)  # e.g. no tunnel to the dashboard: say how to open one
    assert cluster_command(_parse(["cluster", "submit", "trials/ready.yaml", "--cluster", str(CLOUD)]), failing) == 1
    assert "autoaccel cluster attach" in capsys.readouterr().err

    outside = _spec(tmp_path.parent, f"{tmp_path.name}-outside.yaml")
    with pytest.raises(ConfigError, match="inside the current directory"):
        cluster_command(_parse(["cluster", "submit", str(outside), "--cluster", str(CLOUD)]), runner)
    outside.unlink()


def test_tracking_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    runner = Recorder()
    assert _parse(["tracking", "serve"]).func(_parse(["tracking", "serve"]), runner) == 0
    assert runner.calls == [tracking_serve_command()[0]] and runner.env == tracking_serve_command()[1]
    assert (tmp_path / "autoaccel-mlflow").is_dir()
    assert "warning" not in capsys.readouterr().err

    args = _parse(["tracking", "serve", "--host", "0.0.0.0", "--port", "6000"])
    assert args.func(args, runner) == 0
    assert runner.calls[-1][-4:] == ["--host", "0.0.0.0", "--port", "6000"]
    assert "unauthenticated" in capsys.readouterr().err.splitlines()[0]
    args = _parse(["tracking", "serve", "--backend-store-uri", "postgresql://bob:s3cr3t@db/mlflow"])
    assert args.func(args, runner) == 0
    printed = capsys.readouterr().err
    assert "postgresql://bob:***@db/mlflow" in printed and "s3cr3t" not in printed + " ".join(runner.calls[-1])

    with pytest.raises(ConfigError, match="--port"):
        args = _parse(["tracking", "serve", "--port", "0"])
        args.func(args, runner)


def test_docs_commands_parse() -> None:
    # every `autoaccel cluster ...`/`autoaccel tracking ...` command line in docs/cluster.md, as written
    docs = (ROOT / "docs" / "cluster.md").read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", docs, re.S))
    lines = re.findall(r"^(autoaccel (?:cluster|tracking) .*?)(?:\s+#.*)?$", blocks, re.M)
    lines += re.findall(r"'(autoaccel tracking serve)'", docs)
    assert len(lines) >= 10
    for line in lines:
        assert _parse(line.split()[1:]).func in (cluster_command, tracking_command)


def test_up_runs_from_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # file_mounts name ./autoaccel etc., relative to where `ray up` runs
    runner = Recorder()
    assert cluster_command(_parse(["cluster", "up", str(CLOUD)]), runner) == 2
    assert runner.calls == []
    assert f"{CLOUD}: file_mounts.~/autoaccel/autoaccel: './autoaccel' does not exist" in capsys.readouterr().err


def test_a_command_is_printed_without_the_password_it_carries(capsys: pytest.CaptureFixture[str]) -> None:
    from autoaccel.cluster.launch import run_command

    assert run_command(["true", "--set", "tracking.uri=postgresql://u:s3cr3t@db/mlflow"]) == 0
    printed = capsys.readouterr().err
    assert "tracking.uri=postgresql://u:***@db/mlflow" in printed and "s3cr3t" not in printed


def test_multi_worker_trials_must_fit_the_cluster_at_its_concurrency(tmp_path: Path) -> None:
    """4 workers × {cpu 8, gpu 1} fit the GPU nodes; 16 do not; 2 such trials at once would need 8 workers."""
    four = {"workers": 4, "cpu": 8, "gpu": 1}
    fits = _spec(tmp_path, resources=four, search={"max_concurrent": 1})
    assert validate_cluster(CLOUD, [fits]) == []
    too_many = _spec(tmp_path, "many.yaml", resources={**four, "workers": 16}, search={"max_concurrent": 1})
    line = _only(validate_cluster(CLOUD, [too_many]), f"{too_many}: resources.workers: 16 workers × {{cpu: 8, gpu: 1}}")
    assert "would never start" in line
    crowded = _spec(tmp_path, "crowded.yaml", resources=four, search={"max_concurrent": 3})
    line = _only(validate_cluster(CLOUD, [crowded]), f"{crowded}: search.max_concurrent: 3 trials at once")
    assert "set search.max_concurrent to at most 2" in line
    with pytest.raises(ConfigError, match=r"resources\.gpu"):  # NCCL: one whole GPU per worker
        load_spec(_spec(tmp_path, "half.yaml", resources={**four, "gpu": 0.5}))
