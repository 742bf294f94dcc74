"""A trial's checkpoint on disk: written atomically after every epoch, with every random state, so that a resumed
trial continues bit for bit (3 epochs + resume + 3 epochs = 6 epochs)."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoaccel.errors import DataError

__all__ = ["CHECKPOINT", "load_checkpoint", "rng_state", "save_checkpoint", "seed_everything", "set_rng_state"]

CHECKPOINT = "trial.pt"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's, torch's and every CUDA device's random state, as plain values and CPU tensors."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "state": numpy_state["state"]["key"].tolist(),
            "pos": numpy_state["state"]["pos"],
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", np.array(n["state"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``state`` plus the random states at ``path``; a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    torch.save({**state, "rng": rng_state()}, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """What :func:`save_checkpoint` wrote, loaded on the CPU (RNG states must stay CPU tensors; ``load_state_dict``
    moves the rest onto the parameters' device). The caller restores the random states last, with
    :func:`set_rng_state`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:  # truncated or damaged
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "truncated"
        raise DataError(f"{path}: an unreadable checkpoint ({type(error).__name__}: {reason})") from error
