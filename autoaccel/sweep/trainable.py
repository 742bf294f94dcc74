"""What runs inside a sweep's trial, on any node: one sampled configuration trained for every seed in lockstep; and
how a trial's outcome is named, which the driver, the searcher and the MLflow callback all read from here.

Reports, and the checkpoints that go with them, are not sent every epoch: each is a round trip through the driver
that the trial waits for, which dwarfed the training of a short trial. A trial reports at the epochs the scheduler
decides at (ASHA's rungs), when it ends (finished or diverged), and otherwise once ``failure.checkpoint_every_s``
seconds (default ``REPORT_EVERY_S``) have passed; each report carries every epoch since the previous one
(``epochs``), so the per-epoch history stays whole. A trial that crashes, or is resumed, continues from its last
report's checkpoint and recomputes, exactly, the epochs since then: at most that many seconds of work.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from autoaccel.run import Trial, resolve_device
from autoaccel.run.data_parallel import gather, share

from .space import Sample, to_config

__all__ = ["REPORT_EVERY_S", "plan", "resolved_device", "train_sampled", "trial_status"]

REPORT_EVERY_S = 10.0  # at most this long between two reports (and checkpoints) of a running trial


def train_sampled(params: dict[str, Any], payload: dict[str, Any]) -> None:
    """The Ray trainable: one sampled configuration, trained for every seed in lockstep. ``payload``: the workload,
    budget, seeds and device, ``milestones`` (the epochs the scheduler decides at), ``report_every_s``, and for a
    multi-worker trial ``workers``, ``resources`` (per worker), ``max_failures``, ``worker_start_timeout_s`` and
    ``train_storage`` (where Ray Train keeps the trial's checkpoints)."""
    from ray import tune

    if payload.get("workers", 1) > 1:
        _drive_workers(params, payload)
        return

    def report(metrics: dict[str, Any], folder: Path) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    _train(params, payload, tune.get_checkpoint(), report, resolved_device(payload["device"]))


def _drive_workers(params: dict[str, Any], payload: dict[str, Any]) -> None:
    """A multi-worker trial: this Tune trial builds a Ray Train ``TorchTrainer`` (Ray Train V2's pattern for
    Train inside Tune) whose workers each run :func:`_train_worker`; ``TuneReportCallback`` forwards rank 0's
    reports to Tune. Ray Train keeps the checkpoints (``train_storage``/``train-<trial id>``, the name without a
    timestamp: a retried or resumed trial finds them and continues from the latest) and restarts the worker group
    from there when a worker dies (``max_failures`` times). On a local sweep's loopback-only Ray the workers meet
    through a file, not at a TCP port (:mod:`._process_group`). Workers that do not all start within
    ``worker_start_timeout_s`` fail the trial, with Ray Train's error, instead of waiting forever."""
    import os

    import ray.train
    import ray.train.torch
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ._process_group import torch_config

    # read by Ray Train's controller, which it passes on to (train/v2/_internal/constants.py)
    os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = str(payload["worker_start_timeout_s"])
    # The controller forwards reports to Tune when it polls the workers, every 2 s by default: ASHA would decide on
    # reports that old, and each trial would end up to 2 s after its workers did. A poll is one small RPC per worker.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    resources = payload["resources"]
    gpu = resources["gpu"] > 0
    per_worker = {"CPU": resources["cpu"], **({"GPU": resources["gpu"]} if gpu else {})}
    trainer = ray.train.torch.TorchTrainer(
        _train_worker,
        train_loop_config={"params": params, "payload": payload},
        torch_config=torch_config("nccl" if gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=payload["workers"], use_gpu=gpu, resources_per_worker=per_worker
        ),
        run_config=ray.train.RunConfig(
            name=f"train-{tune.get_context().get_trial_id()}",
            storage_path=payload["train_storage"],
            callbacks=[TuneReportCallback()],
            # a starved worker group (its start timed out) fails at once: retrying it would wait as long again
            failure_config=ray.train.FailureConfig(max_failures=payload["max_failures"], controller_failure_limit=0),
            # the latest only, as a single-process trial keeps (Ray Train deletes the older once the new is stored)
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker of a multi-worker trial: its rank of the torch.distributed group Ray Train set up. Every
    worker reports (Ray Train waits for all); rank 0's report carries the checkpoint."""
    import ray.train
    import ray.train.torch

    rank = ray.train.get_context().get_world_rank()

    def report(metrics: dict[str, Any], folder: Path) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(folder) if rank == 0 else None
        ray.train.report(metrics, checkpoint=checkpoint)

    payload = config["payload"]
    if payload["resources"]["gpu"] > 0:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("resources.gpu > 0 but this Ray Train worker sees no CUDA device (NCCL needs one)")
        # this worker's own GPU (NCCL: one per rank) becomes the current one, which "cuda" means: the trial config
        # (and its checkpoint, every rank's) stays the same on every rank
        torch.cuda.set_device(ray.train.torch.get_device())
    _train(config["params"], payload, ray.train.get_checkpoint(), report, resolved_device(payload["device"]))


def _train(
    params: dict[str, Any],
    payload: dict[str, Any],
    restored: Any,
    report: Callable[[dict[str, Any], Path], None],
    device: str,
) -> None:
    """Train every seed of a configuration in lockstep, resumed from ``restored`` (a Ray checkpoint, or None), and
    ``report(metrics, checkpoint folder)`` at rungs, at the end and every ``report_every_s``."""
    import ray

    warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
    sample, seeds = plan(params, payload["seeds"])
    budget = {**payload["budget"], **sample.budget}
    local = Path(tempfile.mkdtemp(prefix="autoaccel-trial-"))
    try:
        if restored is not None:
            with restored.as_directory() as folder:
                shutil.copytree(folder, local, dirs_exist_ok=True)

        def seed_trial(seed: int) -> Trial:
            config = {
                "workload": payload["workload"],
                "optimizer": sample.optimizer,
                "budget": budget,
                "seed": seed,
                "device": device,
            }
            return Trial(config, local / f"seed_{seed}", autosave=False, restart_if_unreadable=True)

        trials = in_lockstep(seed_trial, seeds)
        metric = trials[0].workload.metric
        node_id = ray.get_runtime_context().get_node_id()  # where it trained (a retry may move it)
        if trials[0].setup.workers > 1:  # every node its workers ran on
            node_id = ",".join(sorted(set(gather(node_id))))
        node = {"node_id": node_id}
        # a restored trial re-sends the epochs its checkpoint holds: the driver may not have recorded the last of
        # them (Ray Train checkpoints a multi-worker trial apart from Tune's snapshot, so after a killed driver it
        # can be ahead of what was logged); the tracking callback skips the epochs it has
        pending = _replayed(trials, seeds, metric) if restored is not None else []
        milestones, last = sorted(payload.get("milestones", ())), time.monotonic()
        for per_seed in _lockstep(trials):
            merged = _merge(per_seed, seeds, metric)
            pending.append(merged)
            ends = all(t.finished for t in trials) or merged["status"] == "diverged"
            due = time.monotonic() - last >= payload.get("report_every_s", REPORT_EVERY_S)
            if trials[0].setup.workers > 1:  # every worker saves and reports together: on rank 0's clock
                due = share(due)
            rung = bool(milestones) and merged["budget_epochs"] >= milestones[0]  # ASHA decides at the first after
            milestones = [m for m in milestones if m > merged["budget_epochs"]]
            if ends or due or rung:
                for trial in trials:
                    trial.save()
                report({**merged, **node, "epochs": pending}, local)
                pending, last = [], time.monotonic()
    finally:
        shutil.rmtree(local, ignore_errors=True)


def in_lockstep(seed_trial: Callable[[int], Trial], seeds: Sequence[int]) -> list[Trial]:
    """Each seed's trial, resumed from its checkpoint. When one seed's checkpoint was unreadable and that seed
    started over, every seed starts over (their checkpoints deleted): seeds left at different epochs would make
    every merged report mix epochs."""
    trials = [seed_trial(seed) for seed in seeds]
    if any(t.restarted for t in trials) and any(t.epoch for t in trials):
        for trial in trials:
            if trial.path is not None:
                trial.path.unlink(missing_ok=True)
        trials = [seed_trial(seed) for seed in seeds]
    return trials


def _replayed(trials: Sequence[Trial], seeds: Sequence[int], metric: str) -> list[dict[str, Any]]:
    """The merged reports of every epoch the seeds' restored checkpoints hold, round by round as :func:`_lockstep`
    made them (a seed that had finished stays at its last epoch); each seed's last epoch with its own status."""
    if not all(t.history for t in trials):
        return []
    rounds = []
    for r in range(max(len(t.history) for t in trials)):
        per_seed = []
        for trial in trials:
            index = min(r, len(trial.history) - 1)
            status = trial.status if index == len(trial.history) - 1 else "completed"
            per_seed.append({**trial.history[index], "status": status, "epochs_planned": trial.setup.planned_epochs()})
        rounds.append(_merge(per_seed, seeds, metric))
    return rounds


def _lockstep(trials: Sequence[Trial]) -> Iterator[list[dict[str, Any]]]:
    """Each round, every seed's latest epoch: the seeds still training advance one epoch, a finished seed stays at
    its last (on an optimizer's own clock, AdaScale's, seeds need different numbers of epochs). Ends when all have
    finished, or one diverged (the configuration did)."""
    streams = [t.epochs() for t in trials]
    latest: list[dict[str, Any] | None] = [None] * len(trials)
    while True:
        advanced = False
        for i, (trial, stream) in enumerate(zip(trials, streams, strict=True)):
            if latest[i] is None or not trial.finished:
                report = next(stream, None)
                if report is not None:
                    latest[i], advanced = report, True
        if not advanced or any(r is None for r in latest):
            return
        yield list(latest)
        if all(t.finished for t in trials) or any(r["status"] == "diverged" for r in latest):
            return


def resolved_device(device: str) -> str:
    """``auto`` means the GPU Ray gave this trial, if any: a trial without a GPU share must not use one (Ray 2.60
    leaves CUDA_VISIBLE_DEVICES set for zero-GPU workers on a GPU node)."""
    import ray

    return resolve_device(device, gpu_granted=bool(ray.get_gpu_ids())).type  # "cuda": the current device


def plan(config: Mapping[str, Any], seeds: Sequence[int]) -> tuple[Sample, tuple[int, ...]]:
    """What a Ray trial trains: (a :class:`~autoaccel.sweep.space.Sample`, its seeds) from Optuna's flat parameters
    or from a rerun point (one configuration, one seed)."""
    point = config.get("point")
    if point is None:
        return to_config(config), tuple(seeds)
    return to_config({**point["params"], "family": point["family"]}), (point["seed"],)


def _merge(per_seed: Sequence[dict[str, Any]], seeds: Sequence[int], metric: str) -> dict[str, Any]:
    """One report for all seeds: the mean of each number (the rank ASHA and Optuna see), the spread of the metric."""
    if len(per_seed) == 1:
        return dict(per_seed[0])
    merged: dict[str, Any] = {}
    for key, value in per_seed[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = sum(m[key] for m in per_seed) / len(per_seed)
    merged["epoch"] = max(m["epoch"] for m in per_seed)  # seeds on an optimizer's clock end at different epochs
    merged["epochs_planned"] = per_seed[0]["epochs_planned"]
    values = [m[metric] for m in per_seed]
    merged[f"{metric}_std"] = math.sqrt(sum((v - merged[metric]) ** 2 for v in values) / (len(values) - 1))
    for seed, value, report in zip(seeds, values, per_seed, strict=True):
        merged[f"{metric}_seed{seed}"] = value
        merged[f"diverged_seed{seed}"] = float(report["status"] == "diverged")  # its value is then a stand-in
    merged["status"] = "diverged" if any(m["status"] == "diverged" for m in per_seed) else "completed"
    return merged


def trial_status(result: dict[str, Any] | None, errored: bool = False, stopped: bool = False) -> str:
    """completed | stopped_early | diverged | errored | interrupted, from a trial's last result; ``stopped``: the
    scheduler stopped it. A trial that ends before its budget and was not stopped was interrupted (Ctrl-C)."""
    if errored:
        return "errored"
    if result and result.get("status") == "diverged":
        return "diverged"
    spent = (result or {}).get("budget_epochs", (result or {}).get("epoch", 0))  # checkpoints from before it
    if result and spent >= result.get("epochs_planned", math.inf) - 1e-9:
        return "completed"
    return "stopped_early" if stopped else "interrupted"
