"""The one place autoaccel reaches into Ray's private surface. Each use names the version it was checked against
(``pyproject.toml`` bounds Ray below the next minor release for that reason); a new Ray release is checked here first:
the test named with each function exercises it against the installed version."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "forget_pending_decisions",
    "prepare_cluster_config",
    "ray_core_imported",
    "restored_tune_config",
    "use_callbacks",
    "validate_cluster_config",
]

# Also private, and used where they are (a subclass reaches into its base): ``TruthfulOptunaSearch`` in
# ``_optuna.py`` reads and rebinds ``OptunaSearch._ot_trials`` (Ray trial id → Optuna trial), ``_ot_study``,
# ``_completed_trials`` and ``_sampler`` (checked: Ray 2.60.0, ``ray/tune/search/optuna/optuna_search.py``); tested
# by ``tests/test_tune_search.py`` and the fault campaign (``make faults``).


def ray_core_imported() -> bool:
    """Whether this process has loaded Ray's core already, so that environment settings made now no longer reach
    this driver's Ray (checked: Ray 2.60.0, which reads its configuration when ``ray._raylet`` is imported). Tested
    by ``tests/test_listeners.py``."""
    return "ray._raylet" in sys.modules


def use_callbacks(tuner: Any, callbacks: list[Any]) -> None:
    """Give a restored ``Tuner`` these callback objects instead of the copies it unpickled (checked: Ray 2.60.0,
    ``Tuner._local_tuner._run_config.callbacks``; ``Tuner.restore`` takes no callbacks). Tested by every resume test
    (``tests/test_sweep.py``, ``tests/test_compare.py``)."""
    tuner._local_tuner._run_config.callbacks = callbacks


def restored_tune_config(tuner: Any) -> Any:
    """The ``TuneConfig`` a restored ``Tuner`` restores its searcher and scheduler into (checked: Ray 2.60.0,
    ``Tuner._local_tuner._tune_config``). Tested by the fault campaign's resumes."""
    return tuner._local_tuner._tune_config


def prepare_cluster_config(config: dict[str, Any]) -> dict[str, Any]:
    """A cluster-launcher config with the provider's defaults filled in (checked: Ray 2.60.0,
    ``ray.autoscaler._private.util.prepare_config``; what ``ray up`` runs first, without its cloud calls). Tested by
    ``tests/test_cluster.py``."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(config)


def validate_cluster_config(config: dict[str, Any]) -> None:
    """Ray's schema and semantic checks of a cluster-launcher config, raising ``jsonschema.ValidationError`` or
    ``ValueError`` (checked: Ray 2.60.0, ``ray.autoscaler._private.util.validate_config``). Tested by
    ``tests/test_cluster.py``."""
    from ray.autoscaler._private.util import validate_config

    validate_config(config)


def forget_pending_decisions(tune_dir: Path) -> None:
    """Drop the per-trial decisions the dead driver's Tune controller had not carried out yet from its experiment
    snapshots, before ``Tuner.restore`` reads them back (Ray 2.60 saves them with the controller's state).

    A decision waits there while the trial's checkpoint is being saved. A Ctrl-C in that moment (a trial's final
    report in, its STOP pending) left ``STOP`` behind; the restored trial restarts from its checkpoint before that and
    Tune carried out the stale STOP at its first new save, ending it short of its budget for good (found by the
    interrupted-comparison test). Every trial they were about is restarted from a checkpoint anyway;
    ASHA's own stops are re-applied from its persisted record (``ResumableASHA``). Only the snapshot Tune reads, the
    newest by name, is changed. Checked: Ray 2.60.0, ``TuneController.__getstate__`` saving
    ``_cached_trial_decisions`` and ``_queued_trial_decisions`` into ``runner_data``; tested by
    ``tests/test_compare.py::test_a_comparison_interrupted_mid_tuning_resumes_to_the_same_shape``, which plants one."""
    snapshots = sorted(tune_dir.glob("experiment_state-*.json"), key=lambda p: p.name)
    if not snapshots:
        return
    state = json.loads(snapshots[-1].read_text())
    runner = state.get("runner_data", {})
    pending = ("_cached_trial_decisions", "_queued_trial_decisions")
    if any(runner.get(key) for key in pending):
        runner.update({key: {} for key in pending})
        partial = snapshots[-1].with_name(snapshots[-1].name + ".part")  # a kill never leaves half of it
        partial.write_text(json.dumps(state))
        partial.replace(snapshots[-1])
