"""Sweep specs: every shipped spec is valid; every invalid one is rejected, naming file, key, value and what is
allowed, before anything starts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoaccel.cli import main
from autoaccel.errors import ConfigError
from autoaccel.sweep import load_spec

ROOT = Path(__file__).resolve().parent.parent
SPACE = str(ROOT / "search_spaces" / "quickstart.yaml")
GOOD: dict[str, Any] = {
    "name": "spec-test",
    "workload": {"name": "quadratic", "samples": 64},
    "space": SPACE,
    "budget": {"epochs": 4, "batch_size": 16},
    "search": {"sampler": "tpe", "num_samples": 4, "max_concurrent": 2, "seed": 0},
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
}


def _write(tmp_path: Path, spec: dict[str, Any]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**spec, "storage": str(tmp_path / "sweeps")}))
    return path


@pytest.mark.parametrize("path", sorted((ROOT / "trials").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_are_valid(path: Path, tmp_path: Path) -> None:
    overrides = [f"storage={tmp_path}"]  # never the repository's own sweeps/ folder
    if "study" in yaml.safe_load(path.read_text()):  # valid once its source sweep has run: none has here
        with pytest.raises(ConfigError) as error:
            load_spec(path, overrides)
        assert error.value.key == "study.tracking_uri"
        return
    spec = load_spec(path, overrides)
    assert spec.space.exists() and spec.num_samples >= 1


def test_defaults_and_overrides(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD), ["search.num_samples=7", "seeds=[1, 2]"])
    assert spec.metric == "val_suboptimality" and spec.mode == "min"  # the workload's primary metric
    assert spec.num_samples == 7 and spec.seeds == (1, 2)
    assert spec.folder == (tmp_path / "sweeps" / "spec-test").resolve()
    assert spec.tracking_uri == f"sqlite:///{spec.folder / 'mlflow.db'}" and spec.experiment == "spec-test"


@pytest.mark.parametrize(
    ("change", "key", "allowed"),
    [
        ({"nmae": "x"}, "nmae", "unknown key"),
        ({"name": "a b"}, "name", "letters, digits"),
        ({"workload": {"name": "mnist"}}, "workload.name", "one of admissions_mlp"),
        ({"workload": {"name": "quadratic", "condition": -1}}, "workload.condition", "≥ 1"),
        ({"budget": {"epochs": 3, "steps": 9}}, "budget", "exactly one of epochs or steps"),
        ({"budget": {"epochs": "ten"}}, "budget.epochs", "an integer"),
        ({"space": "missing.yaml"}, "space", "an existing search-space file"),
        ({"search": {"sampler": "bohb"}}, "search.sampler", "one of tpe, random, cmaes, gp, nsga2"),
        ({"search": {"num_samples": 0}}, "search.num_samples", "≥ 1"),
        ({"search": {"metric": "val_accuracy"}}, "search.metric", "a metric quadratic reports"),
        ({"search": {"mode": "maximize"}}, "search.mode", "min or max"),
        ({"search": {"sampler": "nsga2"}}, "search.metric", "a list of ≥ 2 metrics for nsga2"),
        ({"search": {"sampler": "nsga2", "metric": ["metric", "time_s"]}}, "scheduler.type", "fifo"),
        ({"scheduler": {"type": "pbt"}}, "scheduler.type", "one of asha, fifo"),
        ({"scheduler": {"type": "asha", "grace_period": 0}}, "scheduler.grace_period", "≥ 1"),
        ({"scheduler": {"type": "asha", "grace_period": 5}}, "scheduler.grace_period", "at most budget.epochs (4)"),
        ({"seeds": [0, 0]}, "seeds", "distinct integers"),
        ({"resources": {"gpu": 1.5}}, "resources.gpu", "a fraction ≤ 1 or a whole number"),
        ({"resources": {"workers": 0}}, "resources.workers", "≥ 1"),
        ({"resources": {"workers": 2, "gpu": 0.5}}, "resources.gpu", "0 or 1 per worker when workers > 1"),
        ({"resources": {"workers": 2, "gpu": 1}, "device": "cpu"}, "device", "auto or cuda when workers > 1"),
        ({"failure": {"worker_start_timeout_s": 0}}, "failure.worker_start_timeout_s", "≥ 1"),
        ({"resources": {"cpu": 0}}, "resources.cpu", "> 0"),
        ({"failure": {"max_failures": -1}}, "failure.max_failures", "≥ 0"),
        ({"device": "tpu"}, "device", "one of auto, cpu, cuda"),
        ({"device": "cuda"}, "device", "auto or cpu when resources.gpu is 0"),
        ({"budget": {"steps": 40, "batch_size": 16}}, "scheduler.type", "fifo with a budget in steps"),
        ({"tracking": {"url": "x"}}, "tracking", "uri and/or experiment"),
    ],
)
def test_invalid_specs(tmp_path: Path, change: dict[str, Any], key: str, allowed: str) -> None:
    path = _write(tmp_path, {**GOOD, **change})
    with pytest.raises(ConfigError) as error:
        load_spec(path)
    assert error.value.key == key and error.value.source == str(path)
    assert allowed in error.value.allowed
    assert str(error.value).startswith(f"{path}: {key} = ")


def test_impossible_stack_in_the_space_is_caught(tmp_path: Path) -> None:
    space = tmp_path / "bad_space.yaml"
    space.write_text(
        "params:\n  base: {value: adam}\n  lr: {float: [1.0e-4, 1.0e-2], log: true}\n"
        "  adascale.num_gradients_to_accumulate: {value: 2}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_spec(_write(tmp_path, {**GOOD, "space": str(space)}))
    assert error.value.source == str(space)  # the error names the file where the problem is
    assert error.value.key == "params.adascale.num_gradients_to_accumulate"
    assert "only over a base adascale can wrap (sgd, demon_sgd)" in error.value.allowed


def test_cli_rejects_before_starting_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, {**GOOD, "search": {"sampler": "bohb"}})
    assert main(["sweep", str(path)]) == 2
    assert "search.sampler = 'bohb'" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()  # no folder, no Ray, no MLflow store
    assert main(["sweep", str(_write(tmp_path, GOOD)), "--set", "search.num_samples=0"]) == 2
    assert main(["sweep", str(_write(tmp_path, GOOD)), "--check"]) == 0
    assert not (tmp_path / "sweeps").exists()


def test_what_this_machine_cannot_give_is_refused_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    import torch

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    path = _write(tmp_path, {**GOOD, "tracking": {"uri": refused}})
    for check in (["--check"], []):  # --check knows it, and a run stops there
        assert main(["sweep", str(path), *check]) == 2
        assert f"{path}: tracking.uri = '{refused}': an MLflow server that answers" in capsys.readouterr().err
    import ray

    if ray.is_initialized():  # one an earlier test on this worker left: this case is about a local sweep's own
        ray.shutdown()
    cpus = (os.cpu_count() or 1) + 1  # more CPUs than this machine has: the trial would stay pending forever
    path = _write(tmp_path, {**GOOD, "resources": {"cpu": cpus, "gpu": 0}})
    assert main(["sweep", str(path), "--check"]) == 2
    shown = capsys.readouterr().err
    assert f"resources.cpu = {float(cpus)!r}: at most the {cpus - 1} CPU(s) of this machine" in shown, shown
    workers = os.cpu_count() or 1  # one CPU each fits; their trial's total does not
    path = _write(tmp_path, {**GOOD, "resources": {"workers": workers + 1, "cpu": 1, "gpu": 0}})
    assert main(["sweep", str(path), "--check"]) == 2
    shown = capsys.readouterr().err
    assert f"resources.cpu = 1.0: {workers + 1} workers × cpu ≤ the {workers} CPU(s) of this machine" in shown, shown
    gpus = torch.cuda.device_count() + 1  # more than this machine has: a local Ray would wait for them forever
    path = _write(tmp_path, {**GOOD, "resources": {"cpu": 1, "gpu": gpus}, "device": "auto"})
    assert main(["sweep", str(path)]) == 2
    shown = capsys.readouterr().err
    assert f"resources.gpu = {float(gpus)!r}: at most the {gpus - 1} GPU(s) of this machine" in shown, shown
    ray.init(address="local", num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="ERROR")
    try:  # a Ray the program started itself: its count, not the machine's
        assert main(["sweep", str(path)]) == 2
        shown = capsys.readouterr().err
        assert "at most the 0 GPU(s) of the Ray this program started or joined" in shown, shown
    finally:
        ray.shutdown()
    assert not (tmp_path / "sweeps").exists()  # nothing started, nothing written
    for command in ("report", "export"):  # the other commands that open a store
        assert main([command, "--experiment", "x", "--tracking-uri", "foo://bar", "--out", str(tmp_path / "o")]) == 2
        assert "--tracking-uri = 'foo://bar': an MLflow tracking URI" in capsys.readouterr().err


def test_resume_with_a_changed_spec_names_what_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep folder a start prepared (its spec and id; nothing else needed) and a --resume with another spec: the
    refusal lists every key that differs, old → new, as typed (--set included), and nothing changes in the folder."""
    from autoaccel.sweep.driver import _prepare_folder

    path = _write(tmp_path, GOOD)
    _prepare_folder(load_spec(path), resume=False)
    folder = tmp_path / "sweeps" / GOOD["name"]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["sweep", str(path), "--resume", "--set", "budget.epochs=6", "--set", "seeds=[0, 1]"]) == 2
    err = capsys.readouterr().err
    differs = "it differs: budget.epochs 4 → 6; seeds (none) → [0, 1]"
    assert err.startswith(f"autoaccel sweep: error: --resume = '{path}': the same spec as the started sweep")
    assert err.endswith(f"{differs}\n") and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }


def test_a_cluster_address_that_does_not_answer_is_refused_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--address ray://host:port` (Ray Client) or `host:port` (the GCS), or the same in RAY_ADDRESS, where nothing
    answers: one line naming the address and what to do, exit 2, no folder, no parent run (before: a Ray Client
    traceback after 36 s, or minutes of GCS retries)."""
    from autoaccel.ports import free_loopback_port

    port = free_loopback_port()  # nothing listens there
    path = _write(tmp_path, GOOD)
    for address in (f"ray://127.0.0.1:{port}", f"127.0.0.1:{port}"):
        for check in (["--check"], []):
            assert main(["sweep", str(path), "--address", address, *check]) == 2
            err = capsys.readouterr().err
            expected = f"--address = {address!r}: a Ray cluster that answers at 127.0.0.1:{port} within 5 s ("
            assert err.startswith(f"autoaccel sweep: error: {expected}") and "Traceback" not in err, err
            assert "leave the address out for a local sweep" in err and err.count("\n") == 1, err
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")
    assert main(["sweep", str(path)]) == 2
    assert f"RAY_ADDRESS = 'ray://127.0.0.1:{port}': a Ray cluster that answers" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()
    import socket

    from autoaccel.sweep.preflight import check_cluster_answers

    with socket.socket() as head:  # something answers: the probe lets it through (ray.init finds out the rest)
        head.bind(("127.0.0.1", 0))
        head.listen()
        for address in (f"ray://127.0.0.1:{head.getsockname()[1]}", f"127.0.0.1:{head.getsockname()[1]}", "auto"):
            check_cluster_answers(address, "--address")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("GRE Score,TOEFL Score,University Rating,SOP,LOR,CGPA,Chance of Admit\n", "missing column(s) Research"),
        (
            "{header}\n320,110,3,3.5,3.5,8.9,1,0.7\n320,110,3,nan,3.5,8.9,1,0.7\n",
            "line 3: column 'SOP' = nan is not a finite",
        ),
        ("{header}\n320,110,3,3.5,3.5,8.9,1,x\n", "line 2: column 'Chance of Admit' = 'x' is not a number"),
    ],
    ids=["missing column", "nan cell", "text cell"],
)
def test_bad_data_is_refused_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, expected: str
) -> None:
    """A CSV a trial cannot use is one DataError naming the file, line and column, before Ray starts (before, each
    trial raised it inside Ray, or trained on NaN and was called diverged), with --check too; nothing is written."""
    from autoaccel.workloads.admissions import FEATURES, TARGET

    data = tmp_path / "admissions.csv"
    data.write_text(body.format(header=",".join((*FEATURES, TARGET))))
    path = _write(tmp_path, {**GOOD, "workload": {"name": "admissions_mlp", "data": str(data)}})
    for check in (["--check"], []):
        assert main(["sweep", str(path), *check]) == 2
        shown = capsys.readouterr().err
        assert f"{data}" in shown and expected in shown and "Traceback" not in shown, shown
    assert not (tmp_path / "sweeps").exists()


def test_the_resume_hint_is_the_command_as_typed() -> None:
    from autoaccel.cli import _resume_hint, build_parser

    typed = ["compare", "my spec.yaml", "--set", "budget.epochs=4", "--set", "seeds=[0, 1]", "--out", "r"]
    hint = _resume_hint(build_parser().parse_args([*typed, "--address", "ray://head:10001"]))
    expected = "autoaccel compare 'my spec.yaml' --set budget.epochs=4 --set 'seeds=[0, 1]' "
    assert hint == f"interrupted; continue with: {expected}--address ray://head:10001 --out r --resume"


def test_a_folder_another_driver_holds_or_cannot_write_is_refused_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    path = _write(tmp_path, GOOD)
    folder = tmp_path / "sweeps" / GOOD["name"]
    folder.mkdir(parents=True)
    with open(folder / ".lock", "w") as held:  # another driver, as the kernel sees it: a separate open file
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 4242 on elsewhere")
        held.flush()
        assert main(["sweep", str(path)]) == 2
        assert main(["sweep", str(path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("no other sweep driver is using (driver pid 4242 on elsewhere runs on it now)") == 2, err
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing started, nothing written
    assert main(["sweep", str(path), "--resume"]) == 2  # free now, but no sweep to resume: the usual refusal
    assert "a sweep folder with a started sweep (none found)" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")  # storage that cannot become a folder (root writes anywhere else)
    assert main(["sweep", str(path), "--set", f"storage={tmp_path / 'a-file'}"]) == 2
    assert "a folder this user can create and write (Not a directory)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("study", "extra", "key", "allowed"),
    [
        ({"from": "nope", "seeds": [0]}, {}, "study.tracking_uri", "the MLflow store of the source sweep"),
        ({"from": "x", "top": 0}, {}, "study.top", "≥ 1"),
        ({"from": "x", "seeds": []}, {}, "study.seeds", "distinct integers ≥ 0"),
        ({"from": "x", "batch_sizes": [0]}, {}, "study.batch_sizes", "≥ 1"),
        ({"from": "x", "repeat": 2}, {}, "study.repeat", "unknown key"),
        ({"from": "x", "perturb": 1.0}, {}, "study.perturb", "> 1"),
        ({"from": "x", "perturb": 2.0, "batch_sizes": [8]}, {}, "study.batch_sizes", "left out with study.perturb"),
        ({"from": "x"}, {"space": SPACE}, "space", "left out in a study"),
        ({"from": "x"}, {"seeds": [1]}, "seeds", "left out in a study"),
    ],
)
def test_invalid_studies(tmp_path: Path, study: dict, extra: dict, key: str, allowed: str) -> None:
    spec = {k: v for k, v in GOOD.items() if k not in ("space", "scheduler")}
    spec["study"] = {"tracking_uri": f"sqlite:///{tmp_path / 'none.db'}", **study}
    path = _write(tmp_path, {**spec, **extra})
    with pytest.raises(ConfigError) as error:
        load_spec(path)
    assert error.value.key == key and allowed in error.value.allowed and error.value.source == str(path)
    assert not (tmp_path / "none.db").exists()  # validation wrote nothing


@pytest.mark.parametrize(
    ("budget_param", "allowed"),
    [
        ("budget.batch_sise: {value: 8}", "unknown key"),
        ("budget.batch_size: {value: 0}", "≥ 1"),
        ("budget.steps: {value: 10}", "exactly one of epochs or steps, not both"),
    ],
)
def test_budget_keys_a_space_samples_are_checked(tmp_path: Path, budget_param: str, allowed: str) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  base: {{value: sgd}}\n  lr: {{value: 0.1}}\n  {budget_param}\n")
    with pytest.raises(ConfigError) as error:
        load_spec(_write(tmp_path, {**GOOD, "space": str(space)}))
    assert error.value.key.startswith(f"space ({space}) budget") and allowed in error.value.allowed


def test_a_study_reruns_what_its_source_trials_sampled_of_the_budget(tmp_path: Path) -> None:
    """A source trial that trained with a sampled schedule (a Demon comparison's sgd_step family) is re-run with
    it; the budget keys its spec set (epochs) are the study's own to choose."""
    from mlflow.tracking import MlflowClient

    from autoaccel.sweep.reruns import top_configurations
    from autoaccel.tracking import SWEEP_ROLE, Tags

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("source")
    parent = client.create_run(experiment, tags={Tags.ROLE: SWEEP_ROLE, "autoaccel.sweep": "source", "mode": "min"})
    client.log_param(parent.info.run_id, "budget.epochs", "4")
    child = client.create_run(
        experiment,
        tags={"mlflow.parentRunId": parent.info.run_id, "status": "completed", "family": "sgd_step"},
    ).info.run_id
    params = {"optimizer.base": "sgd", "optimizer.lr": "0.1", "budget.epochs": "4", "budget.batch_size": "16"}
    params |= {"budget.schedule": "step", "budget.gamma": "0.3", "budget.warmup_steps": "0", "budget.steps": "None"}
    for key, value in params.items():
        client.log_param(child, key, value)
    client.log_metric(child, "metric", 0.5)
    [(family, config, value, run_id)] = top_configurations(uri, "source", 1, "family")
    assert (family, value, run_id) == ("sgd_step", 0.5, child)
    assert config == {"base": "sgd", "lr": 0.1, "budget.batch_size": 16, "budget.schedule": "step", "budget.gamma": 0.3}
