"""Optuna inside Ray Tune: a picklable define-by-run function, a searcher that reports what really happened and
whose study holds exactly the trials asked for across driver kills, and one that gives each of a comparison's tuning
studies (each family's independent ones) its own Optuna study and the same number of trials."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ._asha import stopped_trials
from ._optuna_internals import storage_id
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
EARLIER_RAY_TRIAL_IDS = "earlier_ray_trial_ids"  # ... and the Ray trials it was asked for before, by killed drivers


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

    Its study holds exactly ``trials`` asks (when given), whatever kills the driver took. After ``--resume`` the
    searcher is the one Ray saved with its last experiment snapshot, while the journal holds everything the dead
    driver told Optuna: asks made after that snapshot (an *orphaned* ask: Ray forgot its trial), trials finished
    after it. :meth:`adopt` reconciles the two before the run's first suggestion: each Ray trial the run holds is
    bound to its own ask, an orphaned ask still running is re-run with its own configuration (the same Optuna trial,
    bound to the next new Ray trial), one that ended counts as done, and only then are fresh samples drawn, from a
    sampler reseeded so that it does not draw again what the dead driver drew. A trial the snapshot thinks running
    may be finished in the journal already: it is left as the journal has it (Optuna refuses to update a finished
    trial)."""

    scheduler_state = ""  # where ResumableASHA keeps the trials it stopped (none for FIFO)
    trials = 0  # the asks the study is to hold; 0: as many as Ray asks for (a searcher pickled before budgets)
    sampler_name = ""  # what make_sampler calls it ("": a searcher pickled before; never reseeded)
    seed = 0

    def __init__(self, *, sampler_name: str = "tpe", seed: int = 0, trials: int = 0, **options: Any) -> None:
        super().__init__(sampler=make_sampler(sampler_name, seed), **options)
        self.sampler_name, self.seed, self.trials = sampler_name, seed, trials
        self._reruns: list[int] = []  # orphaned asks still running (storage ids), waiting for a new Ray trial
        self._earlier: dict[str, list[str]] = {}  # Ray trial → the Ray trials its ask was made for before
        self._ended_orphans: dict[str, str] = {}  # Ray trial no run holds → the status its ask ended with

    def adopt(self, restored: Iterable[str]) -> None:
        """Reconcile with the journal, before the run's first suggestion: ``restored`` are the Ray trials the run
        holds (restored from Ray's snapshot; none in a fresh run)."""
        restored = set(restored)
        study = self._ot_study
        asked = study.get_trials(deepcopy=False)
        # each Ray trial's ask: as the journal binds it (the saved searcher may be older than the snapshot, or newer)
        bound = {ray_id: storage_id(t) for ray_id, t in self._ot_trials.items() if ray_id in restored}
        bound |= {
            t.user_attrs[RAY_TRIAL_ID]: storage_id(t) for t in asked if t.user_attrs.get(RAY_TRIAL_ID) in restored
        }
        self._ot_trials = {ray_id: optuna.Trial(study, storage_id) for ray_id, storage_id in bound.items()}
        self._reruns, self._earlier, self._ended_orphans = [], {}, {}
        for frozen in asked:
            ray_id = frozen.user_attrs.get(RAY_TRIAL_ID)
            if ray_id in bound:
                if frozen.state.is_finished():
                    self._completed_trials.add(ray_id)
            elif storage_id(frozen) in bound.values():
                continue  # bound by the saved searcher alone (a sweep started before asks named their trial)
            elif frozen.state == TrialState.RUNNING:
                self._reruns.append(storage_id(frozen))
            elif ray_id is not None and "status" in frozen.user_attrs:
                self._ended_orphans[ray_id] = frozen.user_attrs["status"]
        orphans = len(asked) - len(bound)
        if orphans and self.sampler_name:
            # the sampler Ray restored is where it was at the snapshot: it would draw again what the dead driver drew
            # after it (a random sampler exactly so); a stream of its own for each state of the study instead
            stream = int(np.random.SeedSequence([self.seed, len(asked)]).generate_state(1)[0])
            self._sampler = study.sampler = make_sampler(self.sampler_name, stream)

    @property
    def reruns_waiting(self) -> int:
        return len(self._reruns)

    def asked(self) -> int:
        """The asks the study holds."""
        return len(self._ot_study.get_trials(deepcopy=False))

    def can_suggest(self) -> bool:
        """Whether a new Ray trial gets a configuration from here: an orphaned ask to re-run, or room for an ask."""
        return bool(self._reruns) or not self.trials or self.asked() < self.trials

    def earlier_trials(self, trial_id: str) -> list[str]:
        """The Ray trials (oldest first) that ``trial_id``'s ask was made for by drivers that were killed."""
        return self._earlier.get(trial_id, [])

    def ended_orphans(self) -> dict[str, str]:
        """Ray trials no Ray run holds any more whose asks ended (told before the kill) → their status."""
        return dict(self._ended_orphans)

    def _live(self, trial_id: str) -> Any:
        """The Optuna trial of ``trial_id`` if it can still be updated, else None."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return None
        if ot_trial.storage.get_trial(storage_id(ot_trial)).state.is_finished():
            self._completed_trials.add(trial_id)
            return None
        return ot_trial

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials:
            if self._reruns:  # an orphaned ask first: its own configuration (Optuna returns what it suggested)
                ot_trial = optuna.Trial(self._ot_study, self._reruns.pop(0))
                attrs = ot_trial.user_attrs
                before = [*attrs.get(EARLIER_RAY_TRIAL_IDS, []), attrs.get(RAY_TRIAL_ID)]
                earlier = [ray_id for ray_id in dict.fromkeys(before) if ray_id]
                ot_trial.set_user_attr(EARLIER_RAY_TRIAL_IDS, earlier)
                self._earlier[trial_id] = earlier
                self._ot_trials[trial_id] = ot_trial
            elif not self.can_suggest():
                return Searcher.FINISHED
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
        known = ot_trial.storage.get_trial(storage_id(ot_trial)).intermediate_values
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
    study and sampler stream), each given the same number of trials (its ``trials``). The studies take turns for the
    trial slots (an orphaned ask to re-run first, then the study with the fewest asks), so that every family's budget
    is spent side by side in one Ray Tune run (the trial actors, reused, start once)."""

    def __init__(self, searchers: dict[str, TruthfulOptunaSearch]) -> None:
        first = next(iter(searchers.values()))
        super().__init__(metric=first.metric, mode=first.mode)
        self.searchers = searchers
        self.study_of: dict[str, str] = {}  # trial id → the study whose searcher suggested it

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return all(s.set_search_properties(metric, mode, config, **spec) for s in self.searchers.values())

    def adopt(self, restored: Iterable[str]) -> None:
        restored = set(restored)
        for searcher in self.searchers.values():
            searcher.adopt(restored)
        self.study_of = {t: k for k, s in self.searchers.items() for t in s._ot_trials}

    def suggest(self, trial_id: str) -> dict | None:
        open_studies = [k for k, s in self.searchers.items() if s.can_suggest()]
        if not open_studies:
            return Searcher.FINISHED
        searchers = self.searchers  # ties: the studies' order
        study = min(open_studies, key=lambda k: (not searchers[k].reruns_waiting, searchers[k].asked()))
        config = searchers[study].suggest(trial_id)
        if isinstance(config, dict):
            self.study_of[trial_id] = study
        return config

    def earlier_trials(self, trial_id: str) -> list[str]:
        return [t for s in self.searchers.values() for t in s.earlier_trials(trial_id)]

    def ended_orphans(self) -> dict[str, str]:
        return {t: status for s in self.searchers.values() for t, status in s.ended_orphans().items()}

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
