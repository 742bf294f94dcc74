"""ASHA whose rungs survive the driver: ``Tuner.restore`` rebuilds the scheduler empty (Ray 2.60 saves only the
searcher), so a resumed sweep would judge its running trials against rungs that forgot every earlier result."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler

__all__ = ["ResumableASHA", "stopped_trials"]


def stopped_trials(path: str | os.PathLike[str]) -> set[str]:
    """The trials ASHA stopped, as persisted at ``path``: the only trials that end early on purpose (any other
    trial that ends before its budget was interrupted)."""
    if not os.path.exists(path):
        return set()
    return set(json.loads(Path(path).read_text())["stopped"])


class ResumableASHA(ASHAScheduler):
    """``ASHAScheduler`` (one bracket) that writes its rung records, and the trials it stopped, to ``path`` after
    every decision."""

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(brackets=1, **kwargs)
        self._path = str(path)
        self._loaded = False
        self._stopped: set[str] = set()

    def _load(self) -> None:
        self._loaded = True
        if not os.path.exists(self._path):
            return
        state = json.loads(Path(self._path).read_text())
        self._stopped = set(state["stopped"])
        for (milestone, recorded), saved in zip(self._brackets[0]._rungs, state["rungs"], strict=True):
            if saved["milestone"] != milestone:
                return  # a different schedule: start afresh rather than mix rungs
            recorded.update(saved["recorded"])

    def _save(self) -> None:
        rungs = [{"milestone": m, "recorded": dict(r)} for m, r in self._brackets[0]._rungs]
        partial = f"{self._path}.part"
        Path(partial).write_text(json.dumps({"rungs": rungs, "stopped": sorted(self._stopped)}))
        os.replace(partial, self._path)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if not self._loaded:
            self._load()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == self.STOP and result[self._time_attr] < self._max_t:  # at max_t ASHA "stops" finished trials
            self._stopped.add(trial.trial_id)
        self._save()
        return action

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_loaded"] = False  # unpickled by Tuner.restore: read the rungs from disk again
        return state
