"""Old trial checkpoints deleted only once no experiment snapshot can name them.

Ray Tune's ``CheckpointConfig(num_to_keep=K)`` deletes a trial's older checkpoints as soon as a newer one is
registered, but the experiment snapshot that ``Tuner.restore`` reads is written every 10 s or more: a driver killed
in between leaves a snapshot naming a deleted checkpoint, and the trial ends ``errored`` for good ("Could not recover
from checkpoint as it does not exist on storage anymore"). So Ray keeps every checkpoint, and this deletes, at each
snapshot, the checkpoints older than the ones the *previous* snapshot named (written and synced by then): whatever
snapshot a resume finds, its checkpoints exist. After the last snapshot of a run each trial keeps its latest only.
The price: without ``num_to_keep`` Ray no longer forces a snapshot per checkpoint, so a resume starts from the
checkpoints of the last periodic snapshot (Ray's period: 10 s or more, adapted to what a snapshot costs; the
environment variable TUNE_GLOBAL_CHECKPOINT_S fixes it): a kill costs that much more recomputation, never a trial.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

__all__ = ["CheckpointPruner"]


class CheckpointPruner:
    def __init__(self) -> None:
        self.trials: list[Any] = []  # Tune's own list of the run's trials (the callback hooks pass it)
        self._named: dict[str, Path] = {}  # trial id -> the checkpoint the previous snapshot named

    def snapshot(self) -> None:
        """Ray is writing a snapshot naming each trial's latest checkpoint: delete what the previous one outdated."""
        for latest in self._named.values():
            _delete_older(latest)
        self._named = _latest(self.trials)

    def finish(self) -> None:
        """The run ended and its final snapshot is written: each trial keeps only its latest checkpoint."""
        for latest in _latest(self.trials).values():
            _delete_older(latest)
        self._named = {}


def _latest(trials: list[Any]) -> dict[str, Path]:
    named = {}
    for trial in trials:
        checkpoint = trial.checkpoint
        # a local (or mounted) folder only: on remote storage Ray's own paths are not this machine's
        if checkpoint is not None and type(checkpoint.filesystem).__name__ == "LocalFileSystem":
            named[trial.trial_id] = Path(checkpoint.path)
    return named


def _delete_older(latest: Path) -> None:
    for older in latest.parent.glob("checkpoint_*"):  # checkpoint_000012: zero-padded, so names sort as numbers
        if older.name < latest.name:
            shutil.rmtree(older, ignore_errors=True)
