"""The one place autoaccel reaches into Optuna's private surface. Each use names the version it was checked against
(``pyproject.toml`` bounds Optuna below the next minor release for that reason); a new Optuna release is checked here
first: ``tests/test_tune_search.py`` and the fault campaign (``make faults``) exercise it."""

from __future__ import annotations

from typing import Any

__all__ = ["storage_id"]


def storage_id(trial: Any) -> int:
    """The storage's id of an ``optuna.Trial`` or ``FrozenTrial``: what ``storage.get_trial`` and
    ``optuna.Trial(study, id)`` take (checked: Optuna 5.0.0, ``_trial_id`` on both; the public ``number`` counts
    within a study, not in the storage)."""
    return trial._trial_id
