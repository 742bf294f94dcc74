"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

from autoaccel.trial import run_trial

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
    from autoaccel.train import trial_config_from_args
    from autoaccel.trial import validate_trial_config

    commands = re.findall(r"^autoaccel train (.*?)(?<!\\)$", README.replace("\\\n    ", ""), re.M)
    assert len(commands) >= 6
    for line in commands:
        args = build_parser().parse_args(["train", *line.split()])
        validate_trial_config(trial_config_from_args(args))  # every option, key and value exists and is allowed
