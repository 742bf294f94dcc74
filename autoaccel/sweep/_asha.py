"""ASHA whose rungs survive the driver: ``Tuner.restore`` rebuilds the scheduler empty (Ray 2.60 saves only the
searcher), so a resumed sweep would judge its running trials against rungs that forgot every earlier result."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from .compare import STUDY_KEY

__all__ = ["PerStudy", "ResumableASHA", "stopped_trials"]


def stopped_trials(*paths: str | os.PathLike[str]) -> set[str]:
    """The trials ASHA stopped, as persisted at ``paths``: the only trials that end early on purpose (any other
    trial that ends before its budget was interrupted)."""
    stopped: set[str] = set()
    for path in paths:
        if os.path.exists(path):
            stopped |= set(json.loads(Path(path).read_text())["stopped"])
    return stopped


class ResumableASHA(ASHAScheduler):
    """``ASHAScheduler`` (one bracket) that writes its rung records, and the trials it stopped, to ``path`` after
    every decision."""

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(brackets=1, **kwargs)
        self._path = str(path)
        self._loaded = False
        self._stopped: set[str] = set()

    @property
    def milestones(self) -> list[float]:
        """The budget (in epochs) ASHA decides at: a trial reports at the first epoch at or past each, as ASHA
        records the first result there."""
        return sorted(milestone for milestone, _ in self._brackets[0]._rungs)

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
        if trial.trial_id in self._stopped:  # stopped before the driver died, the stop not carried out: again
            return self.STOP
        action = super().on_trial_result(tune_controller, trial, result)
        if action == self.STOP and result[self._time_attr] < self._max_t:  # at max_t ASHA "stops" finished trials
            self._stopped.add(trial.trial_id)
        self._save()
        return action

    def rename(self, before: str, after: str) -> None:
        """Trial ``after`` re-runs trial ``before`` (an ask a killed driver made after Ray's last snapshot): its
        rung records and its stop are the re-run's, not a second trial's."""
        if not self._loaded:
            self._load()
        for _, recorded in self._brackets[0]._rungs:
            if before in recorded:
                recorded[after] = recorded.pop(before)
        if before in self._stopped:
            self._stopped = (self._stopped - {before}) | {after}
        self._save()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_loaded"] = False  # unpickled by Tuner.restore: read the rungs from disk again
        return state


class PerStudy(FIFOScheduler):
    """One scheduler per tuning study of a comparison, each seeing only its study's trials (``trial.config`` names
    it: :data:`STUDY_KEY`): under one shared ASHA a family that learns slower in its first epochs loses every rung to
    another and never finishes a trial. Trials start in the order they were added, as FIFO."""

    def __init__(self, schedulers: dict[str, Any]) -> None:
        super().__init__()
        self.schedulers = schedulers

    def _of(self, trial: Any) -> Any:
        return self.schedulers[trial.config[STUDY_KEY]]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return all(s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values())

    @property
    def metric(self) -> str | None:
        return next(iter(self.schedulers.values())).metric

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def rename(self, before: str, after: str) -> None:
        for scheduler in self.schedulers.values():
            scheduler.rename(before, after)

    @property
    def milestones(self) -> list[float]:
        return sorted({m for s in self.schedulers.values() for m in s.milestones})

    def debug_string(self) -> str:
        return "\n".join(f"{study}: {s.debug_string()}" for study, s in self.schedulers.items())
