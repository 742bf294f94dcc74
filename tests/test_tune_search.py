"""The Optuna searcher inside Ray Tune, without Ray running: statuses told truthfully, and a resumed driver whose
saved searcher is older than the journal."""

from __future__ import annotations

import json
from pathlib import Path

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search import Searcher

from autoaccel.sweep._optuna import DefineByRun, TruthfulOptunaSearch

SPACE = str(Path(__file__).resolve().parent.parent / "search_spaces" / "quickstart.yaml")


def _searcher(tmp_path: Path) -> TruthfulOptunaSearch:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    (tmp_path / "asha.json").write_text(json.dumps({"rungs": [], "stopped": ["stopped"]}))
    searcher = TruthfulOptunaSearch(
        space=DefineByRun(SPACE), metric="metric", mode="min", storage=storage, study_name="s", seed=0
    )
    searcher.scheduler_state = str(tmp_path / "asha.json")
    return searcher


def _result(epoch: int, planned: int = 4, status: str = "completed") -> dict:
    return {"metric": 1.0 / epoch, "epoch": epoch, "epochs_planned": planned, "status": status}


def test_statuses_reach_optuna_truthfully(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    for trial_id in ("done", "stopped", "diverged", "failed"):
        assert searcher.suggest(trial_id)["family"]  # the define-by-run space sampled a family
    searcher.on_trial_result("done", _result(1))
    searcher.on_trial_complete("done", _result(4))
    searcher.on_trial_complete("stopped", _result(2))  # ASHA's stopping result arrives only here
    searcher.on_trial_complete("diverged", {**_result(1), "metric": 1.0e6, "status": "diverged"})
    searcher.on_trial_complete("failed", None, error=True)
    trials = {t.number: t for t in searcher._ot_study.trials}
    assert [trials[i].state for i in range(4)] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.PRUNED,  # its 1e6 is the workload's stand-in, not a measurement: never told as a value
        TrialState.FAIL,
    ]
    assert trials[2].value is None and trials[2].intermediate_values == {}
    assert [trials[i].user_attrs["status"] for i in range(4)] == ["completed", "stopped_early", "diverged", "errored"]
    assert trials[1].intermediate_values == {2: 0.5} and trials[0].intermediate_values == {1: 1.0}


def test_a_trial_the_journal_finished_after_the_snapshot_is_left_alone(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("t")
    # the driver told Optuna and died before Ray saved the searcher again; the restored searcher still thinks it runs
    searcher._ot_study.tell(searcher._ot_trials["t"], 0.25)
    searcher.on_trial_result("t", _result(4))  # the trial's replayed last epoch
    searcher.on_trial_complete("t", _result(4))  # no UpdateFinishedTrialError
    (trial,) = searcher._ot_study.trials
    assert trial.state == TrialState.COMPLETE and trial.value == 0.25


def test_a_stop_the_dead_driver_left_pending_is_not_carried_out_by_the_resumed_one(tmp_path: Path) -> None:
    # Ray saves the decisions its controller had not carried out (a trial's STOP waits while its checkpoint is saved)
    # with the controller's state; a restored trial restarts from its checkpoint before, and a stale STOP would end
    # it after one report: the resume drops them, and leaves every other part of the snapshot as it was
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    from autoaccel.sweep._ray_internals import forget_pending_decisions

    runner = {"_iteration": 7, "_cached_trial_decisions": {"a": "STOP"}, "_queued_trial_decisions": {"b": "PAUSE"}}
    snapshot = {"trial_data": [["{}", "{}"]], "runner_data": runner, "stats": {"start_time": 1.0}}
    older = {**snapshot, "runner_data": {**runner, "_cached_trial_decisions": {}, "_queued_trial_decisions": {}}}
    (tmp_path / "experiment_state-1.json").write_text(json.dumps(older))
    (tmp_path / "experiment_state-2.json").write_text(json.dumps(snapshot))
    (tmp_path / "experiment_state-0.json").write_text("{half a file")  # an older one a kill cut: Tune never reads it
    untouched = (tmp_path / "experiment_state-1.json").stat().st_ino
    forget_pending_decisions(tmp_path)
    restored = _loads_with_cloudpickle((tmp_path / "experiment_state-2.json").read_text())  # as Tune reads it
    assert restored == {**snapshot, "runner_data": {**runner, **older["runner_data"]}}
    assert (tmp_path / "experiment_state-1.json").stat().st_ino == untouched  # only the newest is Tune's: kept


def test_asha_stops_again_a_trial_it_stopped_before_the_driver_died(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from autoaccel.sweep._asha import ResumableASHA

    path = tmp_path / "asha.json"
    rungs = [{"milestone": m, "recorded": {"a": -0.5} if m == 2.0 else {}} for m in (8.0, 4.0, 2.0)]
    path.write_text(json.dumps({"rungs": rungs, "stopped": ["a"]}))
    asha = ResumableASHA(path, time_attr="budget_epochs", max_t=8, grace_period=2, reduction_factor=2)
    asha.set_search_properties("metric", "min")
    stopped, other = SimpleNamespace(trial_id="a"), SimpleNamespace(trial_id="b")
    for trial in (stopped, other):
        asha.on_trial_add(None, trial)
    assert asha.milestones == [2.0, 4.0, 8.0] and asha._brackets[0]._rungs[-1][1] == {"a": -0.5}  # its record read
    assert asha.on_trial_result(None, stopped, {"budget_epochs": 3.0, "metric": 0.1}) == ResumableASHA.STOP
    assert asha.on_trial_result(None, other, {"budget_epochs": 1.0, "metric": 0.9}) == ResumableASHA.CONTINUE


def _journal_searcher(tmp_path: Path, sampler: str) -> TruthfulOptunaSearch:
    """A searcher of 5 trials over the sweep folder's journal, as a driver (the killed one, or the next) builds it."""
    return TruthfulOptunaSearch(
        space=DefineByRun(SPACE),
        metric="metric",
        mode="min",
        storage=JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal"))),
        study_name="s",
        sampler_name=sampler,
        seed=0,
        trials=5,
    )


def _killed_driver_study(tmp_path: Path, sampler: str = "random") -> TruthfulOptunaSearch:
    """What a killed driver left: Ray's snapshot knew trial `a` only; after it the driver asked for `b` (running at
    the kill), `c` (finished before it) and one more it never bound to a Ray trial (killed in between)."""
    searcher = _journal_searcher(tmp_path, sampler)
    for trial_id in ("a", "b", "c"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("c", _result(4))
    DefineByRun(SPACE)(searcher._ot_study.ask())  # the unbound ask: its configuration drawn, the kill came next
    return searcher


def test_a_resumed_searcher_reruns_each_orphaned_ask_with_its_own_configuration(tmp_path: Path) -> None:
    killed = _killed_driver_study(tmp_path)
    drawn = {t.number: t.params for t in killed._ot_study.trials}
    # the searcher Ray restores: from its snapshot, which held `a` only; its random sampler is where it was then, so it
    # would draw again exactly what the dead driver drew after it (here: a new one from the same seed)
    restored = _journal_searcher(tmp_path, "random")
    restored._ot_trials = {"a": restored._ot_study.trials[0]}
    restored.adopt({"a"})
    assert restored.ended_orphans() == {"c": "completed"} and restored.reruns_waiting == 2
    assert restored.suggest("b2") is not None and restored.suggest("x2") is not None
    trials = {t.number: t for t in restored._ot_study.trials}
    assert [trials[n].user_attrs["ray_trial_id"] for n in range(4)] == ["a", "b2", "c", "x2"]  # the same asks
    assert {n: trials[n].params for n in range(4)} == drawn  # each with its own configuration
    assert trials[1].user_attrs["earlier_ray_trial_ids"] == ["b"] and restored.earlier_trials("b2") == ["b"]
    assert restored.earlier_trials("x2") == []  # never bound: no earlier Ray trial, no child run to continue
    fresh = restored.suggest("d")  # the one ask still missing: a fresh sample, not one the dead driver drew (reseeded)
    assert fresh is not None and restored._ot_study.trials[4].params not in drawn.values()
    assert restored.suggest("e") is Searcher.FINISHED  # five asks: the study holds what was asked for
    assert len(restored._ot_study.trials) == 5


def test_a_rerun_takes_over_the_asha_records_of_the_trial_it_reruns(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from autoaccel.sweep._asha import ResumableASHA, stopped_trials

    path = tmp_path / "asha.json"
    rungs = [{"milestone": m, "recorded": {"a": -0.5, "b": -0.7} if m == 2.0 else {}} for m in (8.0, 4.0, 2.0)]
    path.write_text(json.dumps({"rungs": rungs, "stopped": ["a"]}))
    asha = ResumableASHA(path, time_attr="budget_epochs", max_t=8, grace_period=2, reduction_factor=2)
    asha.set_search_properties("metric", "min")
    asha.rename("a", "a2")  # a2 re-runs a: one trial in the rung, not two, and the stop is a2's
    assert json.loads(path.read_text())["rungs"][-1]["recorded"] == {"a2": -0.5, "b": -0.7}
    assert stopped_trials(path) == {"a2"}
    rerun = SimpleNamespace(trial_id="a2")
    asha.on_trial_add(None, rerun)
    assert asha.on_trial_result(None, rerun, {"budget_epochs": 1.0, "metric": 0.1}) == ResumableASHA.STOP
