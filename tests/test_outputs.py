"""Every place a command writes is checked before it starts any work: an output that cannot be written is one line
naming the flag, the path and what is allowed, exit code 2, no traceback, nothing started (before: a traceback, for
`sweep` and `train` only after all the work, the summary lost)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from autoaccel.cli import main
from autoaccel.run import CHECKPOINT

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "trials" / "quickstart.yaml"  # a comparison spec
TRAIN = ["train", "--workload", "quadratic", "--option", "samples=64", "--epochs", "1", "--batch-size", "16"]

# (what is in the way, the path given, what the refusal says); tmp/a-file is a file, tmp/a-folder a folder
FILES = [
    ("no folder", "missing/out.json", "a file in an existing folder ({tmp}/missing does not exist)"),
    ("a file as folder", "a-file/out.json", "a file in a folder ({tmp}/a-file is a file)"),
    ("a folder", "a-folder", "a file to write (this is a folder)"),
]
FOLDERS = [
    ("a file", "a-file", "a folder (this is a file)"),
    ("under a file", "a-file/deeper/out", "a folder that can be created ({tmp}/a-file is a file)"),
]


def _sweep_spec(tmp: Path) -> str:
    spec = tmp / "sweep.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "outputs",
                "workload": {"name": "quadratic", "samples": 64},
                "space": str(ROOT / "search_spaces" / "quickstart.yaml"),
                "budget": {"epochs": 1, "batch_size": 16},
                "search": {"sampler": "random", "num_samples": 1, "max_concurrent": 1},
                "storage": str(tmp / "sweeps"),
            }
        )
    )
    return str(spec)


def _store(tmp: Path) -> list[str]:
    return ["--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}"]


# command → (argv with the output at {out}, the flag named, whether the output is a folder)
COMMANDS: dict[str, tuple[Callable[[Path, str], list[str]], str, bool]] = {
    "sweep --output-json": (lambda tmp, out: ["sweep", _sweep_spec(tmp), "--output-json", out], "--output-json", False),
    "sweep --check --output-json": (
        lambda tmp, out: ["sweep", _sweep_spec(tmp), "--check", "--output-json", out],
        "--output-json",
        False,
    ),
    "compare --output-json": (
        lambda tmp, out: ["compare", str(QUICKSTART), "--set", f"storage={tmp / 'sweeps'}", "--output-json", out],
        "--output-json",
        False,
    ),
    "compare --out": (
        lambda tmp, out: ["compare", str(QUICKSTART), "--set", f"storage={tmp / 'sweeps'}", "--out", out],
        "--out",
        True,
    ),
    "train --output-json": (
        lambda tmp, out: [*TRAIN, "--checkpoint-dir", str(tmp / "checkpoints"), "--output-json", out],
        "--output-json",
        False,
    ),
    "train --checkpoint-dir": (lambda tmp, out: [*TRAIN, "--checkpoint-dir", out], "--checkpoint-dir", True),
    "report --out": (lambda tmp, out: ["report", "--experiment", "x", *_store(tmp), "--out", out], "--out", True),
    "export --out": (lambda tmp, out: ["export", "--experiment", "x", *_store(tmp), "--out", out], "--out", True),
}
CASES = [
    pytest.param(command, given, allowed, id=f"{command} / {why}")
    for command, (_, _, folder) in COMMANDS.items()
    for why, given, allowed in (FOLDERS if folder else FILES)
]


@pytest.mark.parametrize(("command", "given", "allowed"), CASES)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, given: str, allowed: str
) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-folder").mkdir()
    argv, flag, _ = COMMANDS[command]
    out = str(tmp_path / given)
    assert main(argv(tmp_path, out)) == 2
    err = capsys.readouterr().err
    name = command.split()[0]
    assert err == f"autoaccel {name}: error: {flag} = {out!r}: {allowed.format(tmp=tmp_path)}\n", err
    # nothing started: no sweep folder, no checkpoint, no MLflow store, nothing at the output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a-file", "a-folder", *(["sweep.yaml"] * (name == "sweep"))]
    )
    assert not any((tmp_path / "a-folder").iterdir()) and (tmp_path / "a-file").read_text() == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_folder_this_user_cannot_write_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main([*TRAIN, "--output-json", str(locked / "out.json")]) == 2
    assert f"--output-json = '{locked / 'out.json'}': a file this user can write ({locked})" in capsys.readouterr().err
    assert main(["export", "--experiment", "x", *_store(tmp_path), "--out", str(locked / "sub")]) == 2
    assert f"a folder this user can create ({locked} is not writable)" in capsys.readouterr().err


def test_outputs_that_can_be_written_are_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The check refuses only what cannot be written: missing folders of a folder output are created, an existing
    file is replaced, and `train` writes both where it was told."""
    (tmp_path / "old.json").write_text("{}")
    checkpoints = tmp_path / "new" / "deeper" / "checkpoints"
    assert main([*TRAIN, "--checkpoint-dir", str(checkpoints), "--output-json", str(tmp_path / "old.json")]) == 0
    assert (checkpoints / CHECKPOINT).is_file() and '"result"' in (tmp_path / "old.json").read_text()
    capsys.readouterr()
