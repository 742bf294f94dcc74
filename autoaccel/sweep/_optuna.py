"""Optuna inside Ray Tune: a picklable define-by-run function and a searcher that reports what really happened."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from ._asha import stopped_trials
from .space import load_space
from .trainable import trial_status

__all__ = ["DefineByRun", "TruthfulOptunaSearch", "make_sampler"]


def make_sampler(name: str, seed: int) -> Any:
    """The Optuna sampler a spec's ``search.sampler`` names, seeded."""
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
    }[name]()


class DefineByRun:
    """``space.suggest`` as OptunaSearch's space, picklable (Ray saves the searcher with the experiment)."""

    def __init__(self, space_path: str) -> None:
        self.space_path = space_path
        # loaded now, not at the first suggestion: Tune warns when a define-by-run call takes seconds (imports)
        self._space: Any = load_space(space_path)

    def __getstate__(self) -> dict[str, Any]:
        return {"space_path": self.space_path, "_space": None}

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        if self._space is None:
            self._space = load_space(self.space_path)
        drawn = self._space.suggest(trial)
        fixed = {k: v for k, v in drawn.items() if k not in trial.params}  # fixed values are not Optuna params
        return fixed or None


class TruthfulOptunaSearch(OptunaSearch):
    """Tells Optuna PRUNED (keeping its intermediate values) for a trial the scheduler stopped, not COMPLETE with
    a low-fidelity value, and records every trial's status as a user attribute.

    After ``--resume`` the searcher is the one Ray saved with its last experiment snapshot, while the journal holds
    everything the dead driver told Optuna: a trial the snapshot thinks running may be finished there already. Such
    a trial is left as the journal has it (Optuna refuses to update a finished trial)."""

    scheduler_state = ""  # where ResumableASHA keeps the trials it stopped (none for FIFO)

    def _live(self, trial_id: str) -> Any:
        """The Optuna trial of ``trial_id`` if it can still be updated, else None."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return None
        if ot_trial.storage.get_trial(ot_trial._trial_id).state.is_finished():
            self._completed_trials.add(trial_id)
            return None
        return ot_trial

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)

    def _report(self, trial_id: str, result: dict | None) -> None:
        """The metric as an intermediate value at its epoch (Tune's iteration count restarts on a restore), once."""
        ot_trial = self._live(trial_id)
        if ot_trial is None or isinstance(self.metric, list) or not result:
            return
        step = int(result.get("epoch", 0))
        if self.metric in result and step not in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values:
            ot_trial.report(result[self.metric], step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._live(trial_id)
        if ot_trial is None:  # told already (by us, or by the driver before it died)
            return None
        status = trial_status(result, error, trial_id in stopped_trials(self.scheduler_state))
        if status == "interrupted":  # Ctrl-C: it continues on --resume, and is told then
            return None
        ot_trial.set_user_attr("status", status)
        if status == "stopped_early":
            self._report(trial_id, result)  # Tune hands the result that triggered the stop only to us here
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return None
        return super().on_trial_complete(trial_id, result, error)
