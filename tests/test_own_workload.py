"""A user's own workload package, written outside the repository, from a spec to a verdict: from the shell (the
installed ``autoaccel`` command, run from another folder, no PYTHONPATH to the package) and from Python
(``autoaccel.compare`` in a script, as a notebook would call it); the three mistakes a new user made, each refused
by ``--check`` in one line before Ray starts; a class defined in the script itself refused with what to do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMMAND = Path(sys.executable).parent / "autoaccel"  # the console script: unlike `python -m`, no folder on sys.path

DOCS = (REPO / "docs" / "workloads.md").read_text()
# The package, its space and its comparison as docs/workloads.md shows them: the page a user follows is what runs.
WORKLOADS = next(b for b in re.findall(r"```python\n(.*?)```", DOCS, re.S) if "class Blobs(Workload)" in b)
SPACE, SPEC = (
    next(yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOCS, re.S) if f"name: {n}\n" in b)
    for n in ("blobs", "blobs-compare")
)
# ... with a budget that runs in seconds: 1 trial per family, its best on 2 seeds, 2 epochs
SMALL = {
    "budget": {"epochs": 2},
    "compare": {"tuning": {"trials_per_family": 1, "replicates": 1}, "final": {"top": 1, "seeds": [1, 2]}},
    "search": {"sampler": "random", "max_concurrent": 2, "seed": 0},
    "failure": {"max_failures": 0},
}

# The three mistakes of the issue, each a subclass of the working one.
MISTAKES = """
import torch
from torch import nn

from .workloads import Blobs


class WrongShape(Blobs):
    name = "wrong_shape"

    def model(self):  # one output, where the loss wants one per class
        return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))


class NaNData(Blobs):
    name = "nan_data"

    def setup(self, device):
        super().setup(device)
        self._train.tensors[0][7, 1] = float("nan")  # one bad row of the training data


class MissingMetric(Blobs):
    name = "missing_metric"

    def evaluate(self, model):  # "accuracy", where the class declares val_accuracy
        found = super().evaluate(model)
        return {"val_loss": found["val_loss"], "accuracy": found["val_accuracy"]}
"""


def _project(tmp_path: Path) -> Path:
    """The user's folder: the package mywork/, the space and the comparison spec."""
    project = tmp_path / "project"
    (project / "mywork").mkdir(parents=True)
    (project / "mywork" / "__init__.py").write_text("")
    (project / "mywork" / "workloads.py").write_text(WORKLOADS)
    (project / "mywork" / "mistakes.py").write_text(MISTAKES)
    (project / "space.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    (project / "compare.yaml").write_text(yaml.safe_dump({**SPEC, **SMALL}, sort_keys=False))
    return project


def _env() -> dict[str, str]:
    """This checkout's autoaccel, and nothing of the user's project on PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _autoaccel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(COMMAND), *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def test_check_runs_the_users_code_and_counts_every_run(tmp_path: Path) -> None:
    project = _project(tmp_path)
    done = _autoaccel("compare", str(project / "compare.yaml"), "--check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # 2 families × 1 study × 1 trial; each study's best on 2 seeds; named as the class names itself
    assert lines[0] == (
        f"{project / 'compare.yaml'}: valid (2 tuning trials + 4 final runs = 6 trials of blobs_mlp, "
        f"folder {tmp_path / 'sweeps' / 'blobs-compare'})"
    )
    assert lines[1].startswith("blobs_mlp: its code ran once on the CPU in ")
    assert lines[1].endswith("one optimizer step of each of 2 families' first draws, one evaluate()")
    assert not (tmp_path / "sweeps").exists()  # --check writes nothing


@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        (
            "WrongShape",
            "workload wrong_shape: loss() raised IndexError: Target 1 is out of bounds.; expected a scalar loss (the "
            "first batch holds (32, 2), (32,); model(batch[0]) is (32, 1))",
        ),
        ("NaNData", "workload nan_data: self._train[0] holds nan at index (7, 1) (1 non-finite value(s) in all)"),
        (
            "MissingMetric",
            "workload missing_metric: evaluate() returned val_loss, accuracy; expected every declared metric "
            "(val_loss, val_accuracy); missing val_accuracy",
        ),
    ],
)
def test_a_mistake_in_the_users_code_is_one_line_before_ray_starts(tmp_path: Path, mistake: str, expected: str) -> None:
    project = _project(tmp_path)
    name = ["--set", f"workload.name=mywork.mistakes:{mistake}"]
    for check in (["--check"], []):  # --check finds it, and a run stops there, before Ray starts
        done = _autoaccel("compare", str(project / "compare.yaml"), *name, *check, cwd=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("autoaccel compare: error: ") and expected in done.stderr, done.stderr
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
        assert not (tmp_path / "sweeps").exists()


@pytest.mark.slow
def test_a_users_package_reaches_a_verdict_from_the_shell_and_from_python(tmp_path: Path) -> None:
    """Real Ray (its workers import mywork from the spec's folder, shipped by autoaccel), real MLflow."""
    project = _project(tmp_path)
    done = _autoaccel("compare", str(project / "compare.yaml"), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("lookahead_adam over adam at ")]
    assert len(verdicts) == 1, done.stdout
    assert verdicts[0].startswith("lookahead_adam over adam at blobs_mlp / batch 32: "), done.stdout
    assert "mywork" not in done.stdout, done.stdout  # named as the class names itself, not by its import path

    # from Python, as a notebook beside the package would: a class defined there is refused with what to do; the
    # finished comparison, resumed, gives its verdicts as data (no trial runs again)
    script = project / "notebook.py"
    script.write_text(
        textwrap.dedent(
            """
            import json
            import autoaccel
            from mywork.workloads import Blobs

            @autoaccel.register_workload
            class Here(Blobs):
                name = "blobs_here"

            try:
                autoaccel.compare("project/compare.yaml", ["workload.name=blobs_here"])
            except autoaccel.ConfigError as error:
                print(json.dumps({"refused": str(error)}))
            result = autoaccel.compare("project/compare.yaml", out="report-python", resume=True)
            print(json.dumps({
                "columns": list(result.verdicts.columns),
                "rows": result.verdicts[["family", "baseline", "workload"]].to_dict("records"),
                "sentences": result.sentences,
                "report": str(result.report),
                "folder": str(result.folder),
                "errored": result.errored,
            }))
            """
        )
    )
    ran = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    refused, result = (json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{"))
    prefix = "project/compare.yaml: workload.name = 'blobs_here': a workload Ray's workers can import: "
    assert refused["refused"].startswith(prefix), refused
    assert "Here is defined in __main__ (a notebook or a script)" in refused["refused"]
    assert "name it 'mywork:Here'" in refused["refused"]
    assert result["rows"] == [{"family": "lookahead_adam", "baseline": "adam", "workload": "blobs_mlp"}]
    assert "verdict" in result["columns"] and result["errored"] == 0
    assert result["sentences"] == verdicts  # what the command printed
    assert result["report"] == str(tmp_path / "report-python" / "index.html") and Path(result["report"]).is_file()
    assert result["folder"] == str(tmp_path / "sweeps" / "blobs-compare")


def test_the_check_leaves_the_drivers_random_streams_as_they_were(tmp_path: Path) -> None:
    """A trial seeds Python's, NumPy's and torch's generators; the driver that ran the check samples after it."""
    import random

    import numpy as np
    import torch

    from autoaccel.sweep import load_spec
    from autoaccel.sweep.preflight import check_workload_runs

    spec = tmp_path / "quadratic.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, **SMALL, "workload": {"name": "quadratic", "samples": 64}}))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    streams = (random.random, np.random.random, lambda: torch.rand(1).item())

    def seeded() -> None:
        random.seed(1), np.random.seed(1), torch.manual_seed(1)

    seeded()
    expected = [draw() for draw in streams]
    seeded()
    assert "its code ran once" in check_workload_runs(load_spec(spec))  # it seeds every trial with seed 0
    assert [draw() for draw in streams] == expected
