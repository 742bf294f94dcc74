"""The driver-side Ray Tune callback: MLflow parent and child runs, progress lines, and the end-of-sweep cleanup.

It is pickled into Ray's ``tuner.pkl`` and unpickled by ``Tuner.restore``: it keeps only the spec there and
reconnects to MLflow (finding the sweep's parent run and each trial's child run by tag) when the sweep starts.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from ray import tune

from autoaccel import objective
from autoaccel.optim import technique_label
from autoaccel.redaction import redact_uri
from autoaccel.tracking import SWEEP_ROLE, EpochWriter, Tags, Tracker, children, encode_space, find_sweep_parent

from ._asha import stopped_trials
from ._checkpoints import CheckpointPruner
from ._timing import cost_key
from .compare import STUDY_KEY, protocol_notes
from .reruns import best_runs, trial_params
from .space import load_space
from .spec import Phase, SweepSpec
from .trainable import plan, trial_status

__all__ = ["SweepTracking"]


class SweepTracking(tune.Callback):
    def __init__(self, spec: SweepSpec, started: float, log: Any) -> None:
        self.spec, self.started, self.log = spec, started, log
        self.phase, self.phase_trials, self.phase_done = spec.phases[0], spec.num_samples, 0
        self.resumed = 0  # trials continued from a checkpoint (a retry, or --resume)
        self._connected = False
        self._lock = threading.Lock()  # the driver connects in a thread while Ray starts the first trials
        self.pruner = CheckpointPruner()
        self.searcher: Any = None  # the run's Optuna searcher (none for a run over given points)
        self.scheduler: Any = None  # its ASHA (none for FIFO)
        self._adopted = True

    def __getstate__(self) -> dict[str, Any]:
        keep = ("spec", "started", "phase", "phase_trials", "phase_done", "resumed")
        return {**{k: self.__dict__[k] for k in keep}, "log": None, "_connected": False}

    @property
    def client(self) -> Any:
        return self.tracker.client

    @property
    def experiment_id(self) -> str:
        return self.tracker.experiment_id

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.log = sys.stderr
        self._lock = threading.Lock()
        self.pruner = CheckpointPruner()
        self.searcher, self.scheduler, self._adopted = None, None, True

    # -- MLflow ---------------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        with self._lock:
            if not self._connected:
                self._open()

    def _open(self) -> None:
        spec = self.spec
        artifacts = spec.folder / "mlartifacts" if spec.tracking_uri.startswith("sqlite:") else None
        self.tracker = Tracker(spec.tracking_uri, spec.experiment, artifact_location=artifacts)
        self.writer = EpochWriter(self.tracker)
        client = self.tracker.client
        exp = self.tracker.experiment_id
        from autoaccel.workloads import get_workload

        workload = get_workload(**spec.workload)
        self.workload_name = workload.name  # what the report calls it, not the "module:Class" a spec may name
        # what a diverged epoch holds only as the workload's finite stand-in (or a mean with one in it)
        self.stand_ins = frozenset({*workload.metrics, "metric", "train_loss", f"{workload.metric}_std"})
        self.seed_key = f"{workload.metric}_seed"
        parent = find_sweep_parent(client, exp, spec.name, sweep_id=spec.sweep_id, folder=str(spec.folder))
        shown = _redacted(spec.raw)  # the spec as logged and attached: no password from a tracking URI
        if parent is not None:
            self.parent = parent.info.run_id
            client.update_run(self.parent, status="RUNNING")
            self.tracker.log_params(self.parent, shown, set(parent.data.params))  # any a kill kept from it
        else:
            tags = {
                Tags.SWEEP: spec.name,
                Tags.SWEEP_ID: spec.sweep_id,
                Tags.ROLE: SWEEP_ROLE,
                Tags.WORKLOAD: workload.name,
                Tags.FOLDER: str(spec.folder),
                # what the analysis needs to rank trials and time them to target
                Tags.METRIC: spec.metric,
                Tags.MODE: spec.mode,
                Tags.WORKLOAD_METRIC: workload.metric,
                Tags.WORKLOAD_MODE: workload.mode,
                Tags.TARGET: workload.target,
                **({Tags.STUDY_OF: spec.study["from"]} if spec.study else {}),
                # a comparison: which family each technique is measured against
                **({Tags.BASELINES: json.dumps(spec.compare.baselines, sort_keys=True)} if spec.compare else {}),
                **(self._protocol_tags(spec) if spec.compare else {}),
                # the distributions the space declares: the analysis reads them instead of guessing from values
                **(encode_space(load_space(spec.space).declared()) if spec.space else {}),
            }
            self.parent = self.tracker.start_run(spec.name, shown, tags)
            if shown == spec.raw:  # nothing to hide: the folder's copy of the spec itself
                client.log_artifact(self.parent, str(spec.folder / "spec.yaml"))
            else:
                with tempfile.TemporaryDirectory() as folder:
                    attached = Path(folder) / "spec.yaml"
                    attached.write_text(yaml.safe_dump(shown, sort_keys=False))
                    client.log_artifact(self.parent, str(attached))
        self.costs: dict[str, float] = {}  # a comparison's timing pass: seconds per step (the driver sets them)
        self.families: dict[str, str] = {}  # for the progress lines, without asking MLflow
        self.runs: dict[str, str] = {}
        self.logged: dict[str, int] = {}
        self.error_tagged: set[str] = set()  # trials an earlier driver recorded as errored, with the reason
        # runs an earlier driver created, by trial: the params each holds (a kill can come before they are logged)
        self.inherited: dict[str, set[str]] = {}
        for run in children(client, exp, self.parent):
            trial_id = run.data.tags.get(Tags.TRIAL_ID)
            if trial_id:  # a resumed sweep: keep each trial's run, and what it already holds
                self.runs[trial_id] = run.info.run_id
                self.inherited[trial_id] = set(run.data.params)
                self.families[trial_id] = run.data.tags.get(Tags.FAMILY, "")
                if Tags.ERROR in run.data.tags:
                    self.error_tagged.add(trial_id)
                history = client.get_metric_history(run.info.run_id, "train_loss")
                self.logged[trial_id] = max((m.step for m in history), default=0)
        self.finished: dict[str, str] = {}
        self.nodes: dict[str, str | None] = {}
        self.best: float | None = None
        self.first_report: float | None = None
        self._connected = True

    @staticmethod
    def _protocol_tags(spec: SweepSpec) -> dict[str, str]:
        """A comparison's protocol, for the report: its studies, scheduler, sampler and what they can cost."""
        c = spec.compare
        notes = protocol_notes(c, spec.sampler, spec.scheduler, spec.budget["epochs"])
        protocol = {
            "replicates": c.replicates,
            "trials_per_study": c.trials_per_family,
            "sampler": spec.sampler,
            "scheduler": spec.scheduler,
            "equivalence_margin": c.equivalence_margin,
            "notes": notes,
        }
        return {Tags.PROTOCOL: json.dumps(protocol, sort_keys=True)}

    def announce(self, resume: bool) -> None:
        self._connect()
        s = self.spec
        verb = "resuming" if resume else "starting"
        if s.study:
            what = f"study {s.name} of sweep {s.study['from']}: {s.num_samples} trials (configuration × seed × batch)"
        else:
            what = (
                f"sweep {s.name}: {s.num_samples} trials × {len(s.seeds)} seed(s), {s.sampler} + {s.scheduler['type']}"
            )
        if s.compare:
            c = s.compare
            what = (
                f"comparison {s.name}: {len(c.families)} families in {len(c.studies)} independent tuning studies "
                f"(up to {c.replicates} per family) × {c.trials_per_family} trials ({s.sampler} + "
                f"{s.scheduler['type']} per study), then {c.final_trials} final runs (each study's best {c.top} × "
                f"{len(c.seeds)} seeds × {len(c.batch_sizes)} batch size(s)"
                + (
                    f"; {len(c.fixed_batches)} of the families keep the batch their space fixes"
                    if c.fixed_batches
                    else ""
                )
                + ")"
            )
        self._say(f"{verb} {what} of {s.workload['name']}, {s.max_concurrent} at a time; folder {s.folder}")
        for note in protocol_notes(s.compare, s.sampler, s.scheduler, s.budget["epochs"]) if s.compare else ():
            self._say(f"note: {note}")
        uri = redact_uri(s.tracking_uri)
        self._say(f"MLflow: {uri} (experiment {s.experiment}); `mlflow ui --backend-store-uri {uri}` shows it")
        if not s.study:
            journal = shlex.quote(str(s.folder / "optuna.journal"))
            extra = "pip install 'autoaccel[dashboard]'"
            self._say(f"live Optuna view: `optuna-dashboard {journal}` (serves on 127.0.0.1; {extra})")

    def say(self, text: str) -> None:
        """A line of the sweep's progress log, from the driver."""
        self._say(text)

    def _say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", file=self.log, flush=True)

    def _child(self, trial: Any) -> str:
        trial_id = trial.trial_id
        if trial_id not in self.runs:
            self._take_over(trial_id)
        if trial_id in self.inherited:  # its params, those the driver that created it had not logged when killed
            self.tracker.log_params(self.runs[trial_id], self._describe(trial)[1], self.inherited.pop(trial_id))
        elif trial_id not in self.runs:
            fam, params, tags = self._describe(trial)
            self.runs[trial_id] = self.tracker.start_run(f"{fam}-{trial_id}", params, tags, parent_id=self.parent)
            self.families[trial_id] = fam
            self.logged[trial_id] = 0
        return self.runs[trial_id]

    def _study_tags(self, config: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
        """A comparison's trial: which of its family's tuning studies it belongs to (a tuning trial: also the
        study's sampler seed; a final run: the study whose choice it re-runs)."""
        if not self.spec.compare:
            return {}
        if point:
            cost = self.costs.get(cost_key(point["source"], point["params"].get("budget.batch_size")))
            return {
                Tags.REPLICATE: point.get("replicate", 0),
                **({Tags.COST_PER_STEP: cost} if cost and math.isfinite(cost) else {}),
            }
        study = next(s for s in self.spec.compare.studies if s.key == config[STUDY_KEY])
        return {Tags.REPLICATE: study.replicate, Tags.SAMPLER_SEED: study.sampler_seed}

    def _describe(self, trial: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """A trial's child run: its family, params and first tags."""
        sample, seeds = plan(trial.config, self.spec.seeds)
        fam = sample.family or technique_label(sample.optimizer)
        seed = ",".join(map(str, seeds))
        point = trial.config.get("point") or {}
        source = point.get("source")
        params = {
            "optimizer": sample.optimizer,
            "budget": {**self.spec.budget, **sample.budget},
            "workload": self.spec.workload,
            "seeds": seed,
            **({"study": {"source_run": source, "perturbation": point["perturbation"]}} if source else {}),
        }
        tags = {
            Tags.TRIAL_ID: trial.trial_id,
            **({Tags.PHASE: self.phase.kind} if self.spec.compare else {}),
            Tags.WORKLOAD: self.workload_name,
            Tags.FAMILY: fam,
            Tags.TECHNIQUE: technique_label(sample.optimizer),
            Tags.SEED: seed,
            **({Tags.SOURCE_RUN: source} if source else {}),
            **self._study_tags(trial.config, point),
            Tags.STATUS: "running",
            Tags.EPOCHS: 0,
            Tags.WORLD_SIZE: self.spec.workers,  # what it asked for; its first report says what it measured
            Tags.SWEEP: self.spec.name,
        }
        return fam, params, tags

    def _take_over(self, trial_id: str) -> None:
        """A new Ray trial that re-runs an ask a killed driver made (after Ray's last snapshot, so Ray forgot its
        trial) continues that ask's child run: relabelled with its own trial id, running again, the epochs it
        holds kept (the re-run trains the same configuration on the same seeds, so it replays exactly those and
        logs only what comes after). One child run per Optuna trial, never an `interrupted` one beside its re-run."""
        earlier = self.searcher.earlier_trials(trial_id) if self.searcher is not None else []
        held = [t for t in earlier if t in self.runs]
        if not held:
            return
        before = held[-1]
        run_id = self.runs.pop(before)
        self.runs[trial_id], self.logged[trial_id] = run_id, self.logged.pop(before)
        if before in self.inherited:
            self.inherited[trial_id] = self.inherited.pop(before)
        self.families[trial_id] = family = self.families.pop(before, "")
        if before in self.error_tagged:
            self.error_tagged.discard(before)
            self.error_tagged.add(trial_id)
        relabel = {Tags.TRIAL_ID: trial_id, Tags.EARLIER_TRIAL_IDS: ",".join(earlier), Tags.STATUS: "running"}
        self.tracker.set_tags(run_id, relabel)
        self.client.update_run(run_id, status="RUNNING", name=f"{family}-{trial_id}")
        if self.scheduler is not None:
            self.scheduler.rename(before, trial_id)
        self._say(f"{trial_id} re-runs the configuration of {before}, which a killed driver had started")

    # -- Tune callback hooks --------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every queued epoch now (before the driver exits, or Ray snapshots the experiment)."""
        if self._connected:
            self.writer.flush()

    def get_state(self) -> dict | None:
        """Ray asks while it saves its experiment snapshot, before the snapshot reaches the sweep folder: every epoch
        the snapshot's checkpoints cover is in MLflow first, so a resume from it leaves no gap in a history; and
        checkpoints no snapshot can name any more are deleted (_checkpoints.py)."""
        self.flush()
        self.pruner.snapshot()
        return None

    def search_with(self, searcher: Any, scheduler: Any) -> None:
        """The Optuna searcher of the run about to start (Ray's restored one on --resume), told at the run's first
        step which Ray trials the run holds, before its first suggestion; and its scheduler, if it is ASHA (whose
        records of a trial a re-run takes over)."""
        self.searcher, self.scheduler, self._adopted = searcher, scheduler, False

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """Before the run's first suggestion (Tune asks its searcher after this hook, in every step): the searcher
        learns which Ray trials Ray restored, and reconciles its study with the journal (``TruthfulOptunaSearch``)."""
        if not self._adopted:
            self._adopted = True
            self.searcher.adopt(t.trial_id for t in trials)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._connect()
        self._child(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        """Log every epoch the report carries that the trial's run does not hold yet (one report carries the epochs
        since the previous one)."""
        self._connect()
        self.pruner.trials = trials
        run_id = self._child(trial)
        if self.first_report is None:
            self.first_report = time.monotonic() - self.started
            self._say(f"first report from trial {trial.trial_id}")
        node = result.get("node_id")
        tags = None
        if node and self.nodes.get(trial.trial_id) != node:  # where it trains (rank 0), and on how many workers
            tags = {Tags.NODE: node, Tags.WORLD_SIZE: int(result.get("world_size", 1))}
        self.nodes[trial.trial_id] = node
        for epoch_result in result.get("epochs") or [result]:
            epoch = int(epoch_result.get("epoch", 0))
            if epoch <= self.logged[trial.trial_id]:
                continue  # replayed after a resume from an older checkpoint: recorded already, same values
            metrics = {k: v for k, v in self._measured(epoch_result).items() if k not in _RAY_KEYS}
            self.writer.put(run_id, metrics, step=epoch, tags=tags)
            self.logged[trial.trial_id], tags = epoch, None
        if tags:  # a restored trial's report of epochs recorded already: it moved all the same
            self.writer.put(run_id, {}, step=self.logged[trial.trial_id], tags=tags)

    def _measured(self, epoch: dict[str, Any]) -> dict[str, Any]:
        """What an epoch measured. A diverged epoch keeps its bookkeeping, the optimizer's statistics and the values
        of the seeds that did not diverge; the workload's finite stand-in (and any mean with one in it) is never
        logged as if measured: the run's status says it diverged, and its history ends at its last real value."""
        if epoch.get("status") != "diverged":
            return epoch
        kept = {}
        for key, value in epoch.items():
            seed = key.removeprefix(self.seed_key) if key.startswith(self.seed_key) else None
            if key in self.stand_ins or (seed is not None and epoch.get(f"diverged_seed{seed}", 1.0)):
                continue
            kept[key] = value
        return kept

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        stopped = trial.trial_id in stopped_trials(*self.phase.asha_paths(self.spec.folder))
        self._end(trial, trial_status(trial.last_result, stopped=stopped))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "errored", _error_line(trial))

    def _end(self, trial: Any, status: str, why: str = "") -> None:
        self._connect()
        run_id = self._child(trial)
        self.writer.flush()  # its epochs first: a finished run has its whole history
        # a trial that crashed and was retried from its checkpoint says so (before, a recovered crash left no trace)
        crashes = getattr(trial, "num_failures", 0)
        tags = {Tags.EPOCHS: self.logged[trial.trial_id], Tags.CRASHES: crashes, **({Tags.ERROR: why} if why else {})}
        if not why and trial.trial_id in self.error_tagged:  # errored under an earlier driver, ended without an
            self.tracker.client.delete_tag(run_id, Tags.ERROR)  # error now: its old reason goes
            self.error_tagged.discard(trial.trial_id)
        self.tracker.finish(run_id, status, tags)
        self.finished[trial.trial_id] = status
        value = (trial.last_result or {}).get(self.spec.metric)
        # only a whole budget's value counts as the best so far: a stopped trial's is from fewer epochs
        counted = status == "completed" and value is not None and math.isfinite(value)
        if counted and objective.is_better(value, self.best, self.spec.mode):
            self.best = value
        failed = status in ("diverged", "errored")  # a stand-in, or a value from before the failure: not shown
        shown = f"{self.spec.metric}={value:.5g}" if isinstance(value, float) and not failed else ""
        best = f" (best {self.best:.5g})" if self.best is not None else ""
        epochs = (trial.last_result or {}).get("epoch", 0)
        where = f"{self.phase.name} " if self.phase.name else ""
        self.phase_done += 1
        self._say(
            f"[{where}{self.phase_done}/{self.phase_trials}] {trial.trial_id} {self.families.get(trial.trial_id)}: "
            + " ".join(filter(None, [f"{status} after {epochs} epoch(s)", (shown + best).strip()]))
            + (f": {why}" if why else "")
        )

    # -- phases and the end of the sweep --------------------------------------------------------------------------
    def begin(self, phase: Phase, trials: int) -> None:
        """The driver starts ``phase`` of ``trials`` trials (a comparison runs several, one after another)."""
        self.phase, self.phase_trials, self.phase_done = phase, trials, 0
        self.searcher, self.scheduler, self._adopted = None, None, True
        self.best = None
        if phase.name:
            self._say(f"phase {phase.name}: {trials} trial(s)")

    def settle(self, grid: Any) -> int:
        """After one fit(): leave no MLflow child of it RUNNING (an Optuna trial is left running only by a Ctrl-C,
        and --resume finishes it: its searcher re-runs every unfinished ask); the number of trials a Ctrl-C left
        unfinished (continued by --resume): trials short of their budget that ASHA did not stop, trials that never
        started, and samples never drawn."""
        self._connect()
        self.writer.flush()
        self.pruner.finish()
        stopped = stopped_trials(*self.phase.asha_paths(self.spec.folder))
        ended, never_started = {}, 0
        for result in grid:
            metrics = result.metrics or {}
            if metrics.get("trial_id"):
                tid = metrics["trial_id"]
                ended[tid] = trial_status(metrics, errored=result.error is not None, stopped=tid in stopped)
            elif result.error is None:  # pending when Ctrl-C stopped the run
                never_started += 1
            # continued from a checkpoint (a retry, or --resume): fewer epochs trained since the restore
            self.resumed += metrics.get("iterations_since_restore", 0) < metrics.get("training_iteration", 0)
        # asks a killed driver made after Ray's last snapshot that ended before it died: done, in no Ray run
        ended_before = self.searcher.ended_orphans() if self.searcher is not None else {}
        # Ctrl-C ends fit() normally (Ray handles SIGINT), with fewer trials than asked when it came early
        undrawn = max(self.phase_trials - len(grid) - len(ended_before), 0) if self.phase.samples else 0
        unfinished = {tid for tid, status in ended.items() if status == "interrupted"}
        for run in self._children():
            if run.info.status == "RUNNING":  # a trial whose end the callback never saw
                history = self.client.get_metric_history(run.info.run_id, "train_loss")
                epochs = max((m.step for m in history), default=0)
                tid = run.data.tags.get(Tags.TRIAL_ID)
                # (one that ended in Optuna just before the kill, and not yet in MLflow: it ended as Optuna says)
                status = ended.get(tid) or ended_before.get(tid, "interrupted")
                self.tracker.finish(run.info.run_id, status, {Tags.EPOCHS: epochs})
        return len(unfinished) + never_started + undrawn

    def close(self, unfinished: int) -> dict[str, Any]:
        """End the parent run (KILLED when a Ctrl-C left trials unfinished); print and return the summary."""
        self._connect()
        statuses = self._statuses()
        self.client.set_terminated(self.parent, "KILLED" if unfinished else "FINISHED")
        if unfinished:
            self._say(f"interrupted with {unfinished} trial(s) unfinished; continue with --resume")
        best = self._best()
        self._say("done: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
        for rank, row in enumerate(best, start=1):
            self._say(f"  #{rank} {self.spec.metric}={row['value']:.5g}  {row['family']}  {row['optimizer']}")
        uri = redact_uri(self.spec.tracking_uri)
        self._say(f"results: {self.spec.folder} ; MLflow {uri} experiment {self.spec.experiment}")
        return {
            "name": self.spec.name,
            "folder": str(self.spec.folder),
            "tracking_uri": self.spec.tracking_uri,
            "experiment": self.spec.experiment,
            "parent_run_id": self.parent,
            "statuses": statuses,
            "best": best,
            "first_report_s": self.first_report,
            "resumed_from_checkpoint": self.resumed,
            "unfinished": unfinished,
        }

    def _children(self) -> list[Any]:
        return list(children(self.tracker.client, self.tracker.experiment_id, self.parent))

    def _statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self._children():
            status = run.data.tags.get(Tags.STATUS, "unknown")
            counts[status] = counts.get(status, 0) + 1
        return counts

    def _best(self, k: int = 3) -> list[dict[str, Any]]:
        """The ``k`` best completed trials (in a comparison: each family's best tuning trial), parameters typed,
        ranked as the final runs and the verdict rank them (:func:`~autoaccel.sweep.reruns.best_runs`)."""
        done = [
            run
            for run in self._children()
            if run.data.tags.get(Tags.STATUS) == "completed"
            and self.spec.metric in run.data.metrics
            and run.data.tags.get(Tags.PHASE) != "final"
        ]
        rows = [
            {
                "value": run.data.metrics[self.spec.metric],
                "family": run.data.tags.get(Tags.FAMILY),
                "optimizer": trial_params(run),
                "run_id": run.info.run_id,
            }
            for run in best_runs(done, self.spec.metric, self.spec.mode)
        ]
        if not self.spec.compare:
            return rows[:k]
        first: dict[str, dict[str, Any]] = {}
        for row in rows:
            first.setdefault(row["family"], row)
        return list(first.values())


def _error_line(trial: Any) -> str:
    """What a trial's error says: the last exception of the traceback Ray wrote (e.g. Ray Train's "worker group
    startup timed out after 300 seconds waiting for 2 workers"), on one line, at most 400 characters, without any
    URI's password; empty when Ray wrote none. (Ray's pickled error is no source: unpickled here, an exception may
    rebuild its message from this process's defaults.)"""
    try:
        lines = Path(trial.error_file).read_text(errors="replace").splitlines()
    except (OSError, TypeError):  # no error file (None: Ray had no local trial folder, or wrote none)
        return ""
    # the last exception line: unindented, a (dotted) name ending in Error/Exception/Interrupt/Exit, message optional
    starts = [i for i, line in enumerate(lines) if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
    said = " ".join(line.strip() for line in lines[starts[-1] :] if line.strip()) if starts else ""
    return redact_uri(said)[:400]


_RAY_KEYS = {
    "trial_id",
    "done",
    "training_iteration",
    "timestamp",
    "date",
    "pid",
    "hostname",
    "node_ip",
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "iterations_since_restore",
    "checkpoint_dir_name",
    "config",
    "experiment_tag",
    "should_checkpoint",
    "epochs_planned",
    "node_id",
    "epochs",
    "world_size",  # a tag
    "checkpoint_path",  # Ray Train's, forwarded by TuneReportCallback
}


def _redacted(raw: dict[str, Any]) -> dict[str, Any]:
    """A spec with the tracking URIs it names (its own, a study's source) fit to log."""
    shown = copy.deepcopy(raw)
    for section, key in (("tracking", "uri"), ("study", "tracking_uri")):
        if isinstance(shown.get(section), dict) and isinstance(shown[section].get(key), str):
            shown[section][key] = redact_uri(shown[section][key])
    return shown
