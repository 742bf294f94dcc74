"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

from autoaccel.run import run_trial

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_bring_your_own_workload_example_trains() -> None:
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "class Sine(Workload)" in b)
    exec(block, {})  # the README's own code, imports included
    result = run_trial(
        {
            "workload": {"name": "sine"},
            "optimizer": {"base": "adam", "lr": 1e-2},
            "budget": {"epochs": 30, "batch_size": 64},
            "seed": 0,
            "device": "cpu",
        }
    )
    assert result["status"] == "completed" and result["val_mse"] < 0.05


def test_train_examples_name_real_options() -> None:
    from autoaccel.cli import build_parser
    from autoaccel.cli.train import trial_config_from_args
    from autoaccel.run import validate_trial_config

    commands = re.findall(r"^autoaccel train (.*?)(?<!\\)$", README.replace("\\\n    ", ""), re.M)
    assert len(commands) >= 6
    for line in commands:
        args = build_parser().parse_args(["train", *line.split()])
        validate_trial_config(trial_config_from_args(args))  # every option, key and value exists and is allowed


def test_bring_your_own_technique_example_builds() -> None:
    from autoaccel.optim import techniques

    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "register_technique(" in b)
    scope: dict = {}
    try:
        exec(block, scope)
        assert type(scope["opt"]).__name__ == "RMSprop" and scope["opt"].param_groups[0]["lr"] == 0.01
    finally:
        techniques().pop("rmsprop", None)


def test_every_import_in_the_readme_resolves() -> None:
    imports = re.findall(r"^from (autoaccel[\w.]*) import (?:\(([\w, \n]+)\)|([\w, ]+))$", README, re.M)
    assert len(imports) >= 4
    for module, wrapped, plain in imports:
        names = wrapped or plain
        loaded = __import__(module, fromlist=["_"])
        for name in filter(None, (n.strip() for n in names.replace("\n", ",").split(","))):
            assert hasattr(loaded, name), f"{module}.{name}"
