"""Optuna inside Ray Tune: a picklable define-by-run function, a searcher that reports what really happened, and
one that gives each of a comparison's tuning studies (each family's independent ones) the same number of trials."""

from __future__ import annotations

import pickle
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ._asha import stopped_trials
from .compare import STUDY_KEY, TuningStudy
from .space import load_space
from .trainable import trial_status

__all__ = ["DefineByRun", "PerStudySearch", "TruthfulOptunaSearch", "make_sampler"]


def make_sampler(name: str, seed: int) -> Any:
    """The Optuna sampler a spec's ``search.sampler`` names, seeded."""
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
    }[name]()


RAY_TRIAL_ID = "ray_trial_id"  # the Optuna trial's user attribute naming the Ray trial it was asked for


class DefineByRun:
    """``space.suggest`` as OptunaSearch's space (only the ``study``'s family's configurations, its key in every
    config, when given), picklable (Ray saves the searcher with the experiment)."""

    def __init__(self, space_path: str, study: TuningStudy | None = None) -> None:
        self.space_path, self.study = space_path, study
        # loaded now, not at the first suggestion: Tune warns when a define-by-run call takes seconds (imports)
        self._space: Any = load_space(space_path)

    def __getstate__(self) -> dict[str, Any]:
        return {"space_path": self.space_path, "study": self.study, "_space": None}

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        if self._space is None:
            self._space = load_space(self.space_path)
        drawn = self._space.suggest(trial, None if self.study is None else self.study.family)
        fixed = {k: v for k, v in drawn.items() if k not in trial.params}  # fixed values are not Optuna params
        if self.study is not None:
            fixed[STUDY_KEY] = self.study.key
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

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:  # the ask, bound to its Ray trial: MLflow's child run has the same trial_id tag
            ot_trial.set_user_attr(RAY_TRIAL_ID, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)

    def _report(self, trial_id: str, result: dict | None) -> None:
        """The metric of every epoch the result carries as an intermediate value at its epoch (Tune's iteration
        count restarts on a restore), once."""
        ot_trial = self._live(trial_id)
        if ot_trial is None or isinstance(self.metric, list) or not result:
            return
        known = ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values
        for epoch_result in result.get("epochs") or [result]:
            step = int(epoch_result.get("epoch", 0))
            measured = epoch_result.get("status") != "diverged"  # a diverged epoch's value is a stand-in
            if self.metric in epoch_result and step not in known and measured:
                ot_trial.report(epoch_result[self.metric], step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._live(trial_id)
        if ot_trial is None:  # told already (by us, or by the driver before it died)
            return None
        status = trial_status(result, error, trial_id in stopped_trials(self.scheduler_state))
        if status == "interrupted":  # Ctrl-C: it continues on --resume, and is told then
            return None
        ot_trial.set_user_attr("status", status)
        if status in ("stopped_early", "diverged"):
            # Both end short of the budget with only their measured epochs as intermediate values (a diverged
            # result's value is the workload's finite stand-in: never told). PRUNED, not FAIL, for the diverged one
            # too: TPE ranks pruned trials below every completed one, so it learns to avoid where training diverges,
            # while a FAIL would teach it nothing; the status attribute says which it was.
            self._report(trial_id, result)  # Tune hands the result that triggered the stop only to us here
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return None
        return super().on_trial_complete(trial_id, result, error)


class PerStudySearch(Searcher):
    """A comparison's tuning: one searcher per tuning study (each family's independent studies, each its own Optuna
    study and sampler stream), each given the same number of trials. The studies take turns for the trial slots, the
    one with the fewest trials first, so that every family's budget is spent side by side in one Ray Tune run (the
    trial actors, reused, start once)."""

    def __init__(self, searchers: dict[str, TruthfulOptunaSearch], trials_per_study: int) -> None:
        first = next(iter(searchers.values()))
        super().__init__(metric=first.metric, mode=first.mode)
        self.searchers, self.trials_per_study = searchers, trials_per_study
        self.study_of: dict[str, str] = {}  # trial id → the study whose searcher suggested it
        self.drawn = dict.fromkeys(searchers, 0)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return all(s.set_search_properties(metric, mode, config, **spec) for s in self.searchers.values())

    def suggest(self, trial_id: str) -> dict | None:
        open_studies = [s for s in self.searchers if self.drawn[s] < self.trials_per_study]
        if not open_studies:
            return Searcher.FINISHED
        study = min(open_studies, key=self.drawn.__getitem__)  # ties: the studies' order
        config = self.searchers[study].suggest(trial_id)
        if isinstance(config, dict):
            self.drawn[study] += 1
            self.study_of[trial_id] = study
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.study_of:
            self.searchers[self.study_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.study_of:
            self.searchers[self.study_of[trial_id]].on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))
