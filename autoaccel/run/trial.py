"""One trial: train one workload with one optimizer config for a budget; resumable, and honest about divergence.

A trial config is a plain mapping (what a sweep samples and what ``autoaccel train`` builds)::

    workload:  {name: admissions_mlp, <workload options>}
    optimizer: {base: adam, lr: 1.0e-3, anderson: {history: 5}}      # see autoaccel.optim.build_optimizer
    budget:    {epochs: 30, batch_size: 40}     # or steps: N; optional schedule (budget.SCHEDULES), gamma, warmup_steps
    seed: 0
    device: auto                                # auto (CUDA when available) | cpu | cuda | cuda:N

:func:`run_trial` gives the optimizer stack what it asks for through the protocol of :mod:`autoaccel.optim`, never
by testing its classes: the run's length (``set_horizon``: Demon's T), micro-batches (AdaScale's accumulation), a
graph for the backward (AdaHessian's refresh steps) and a closure (Anderson's safeguard). After every epoch it
evaluates the weights the stack outputs (``evaluation_weights``: Lookahead's slow weights; every epoch's metrics
and the final ones), checkpoints (model, optimizer, scheduler, every RNG, the data-order generator, the history) and
calls ``report(metrics, checkpoint_dir)``. A non-finite training loss ends the trial with status ``diverged`` and
the workload's finite worst value for its metrics.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from autoaccel import objective
from autoaccel.config import differences
from autoaccel.errors import ConfigError, DataError
from autoaccel.optim import (
    average_,
    averages_gradients,
    budget_progress,
    build_optimizer,
    evaluation_weights,
    lr_gain,
    micro_batches,
    needs_closure,
    needs_create_graph,
    optimizer_statistics,
    set_horizon,
    validate_config,
    worker_count,
    worker_rank,
)
from autoaccel.workloads import Workload, get_workload

from .budget import check_budget, lr_factor
from .checkpoint import CHECKPOINT, load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .data_parallel import agree, average_scalar, broadcast_module, gather, rank_seed, share
from .device import DEVICES, resolve_device

__all__ = ["Report", "Trial", "run_trial", "validate_trial_config"]

Report = Callable[[dict[str, Any], "str | None"], None]
_TOP = ("workload", "optimizer", "budget", "seed", "device")


def validate_trial_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], Workload]:
    """The config with defaults filled in and values converted, and its workload (options checked, no data loaded)."""
    for key in config:
        if key not in _TOP:
            raise ConfigError(key, config[key], "unknown key; allowed keys: " + ", ".join(_TOP))
    spec = config.get("workload")
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError("workload", spec, "a mapping with 'name' and the workload's options")
    workload = get_workload(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    budget = check_budget(config.get("budget"))
    budget["batch_size"] = budget["batch_size"] or workload.default_batch_size
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", seed, "an integer ≥ 0")
    device = config.get("device", "auto")
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise ConfigError("device", device, "one of " + DEVICES)
    try:
        validate_config(dict(config.get("optimizer") or {}))
    except ConfigError as error:
        raise ConfigError(f"optimizer.{error.key}", error.value, error.allowed) from None
    return {
        "workload": {"name": spec["name"], **workload.config},
        "optimizer": dict(config.get("optimizer") or {}),
        "budget": budget,
        "seed": seed,
        "device": device,
    }, workload


class _Setup:
    """What a trial trains, assembled from a validated config: workload, model, optimizer stack, schedule."""

    def __init__(self, config: dict[str, Any], workload: Workload) -> None:
        self.config, self.workload = config, workload
        budget = config["budget"]
        self.device = resolve_device(config["device"])
        # one of `workers` data-parallel workers (autoaccel.run.data_parallel), or the only one
        self.rank, self.workers = worker_rank(), worker_count()
        workload.setup(self.device)
        seed_everything(config["seed"])
        self.model = workload.model().to(self.device)
        if self.workers > 1:
            broadcast_module(self.model)
        self.batch_size = budget["batch_size"]  # per worker: the global batch is workers × batch_size
        self.global_batch = self.batch_size * self.workers
        self.steps_per_epoch = workload.steps_per_epoch(self.global_batch)
        self.total_steps = budget["steps"] or budget["epochs"] * self.steps_per_epoch
        self.epochs = budget["epochs"] or math.ceil(budget["steps"] / self.steps_per_epoch)
        self.optimizer = build_optimizer(self.model.parameters(), config["optimizer"])
        set_horizon(self.optimizer, self.total_steps)
        self.micro_batches = micro_batches(self.optimizer)
        if self.micro_batches > self.batch_size:  # every batch would be skipped: the run would never end
            allowed = f"at least the optimizer's {self.micro_batches} micro-batches per step (AdaScale's accumulation)"
            raise ConfigError("budget.batch_size", self.batch_size, allowed)
        self.closure = needs_closure(self.optimizer)
        self.average_gradients = self.workers > 1 and not averages_gradients(self.optimizer)
        # the schedule follows the budget spent: the step count, or the optimizer's own clock (AdaScale's τ / S)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(self.spent(step), self.total_steps, budget, self.steps_per_epoch),
        )
        self.generator = torch.Generator().manual_seed(config["seed"])  # the data order: the same on every worker
        if self.workers > 1:  # after the optimizer: AdaHessian's probe seed is the same on every worker
            seed_everything(rank_seed(config["seed"], self.rank))

    def create_graph(self) -> bool:
        return needs_create_graph(self.optimizer)

    def spent(self, steps: int) -> float:
        """Optimizer steps of the budget spent after ``steps`` steps: ``steps``, unless the optimizer keeps its own
        clock (AdaScale's scale-invariant steps ÷ S: the run then lasts until τ reaches S × the budget)."""
        clock = budget_progress(self.optimizer)
        return float(steps) if clock is None else clock

    def budget_epochs(self, epoch: int, steps: int) -> float:
        """The budget spent, in epochs (what a scheduler's rungs count): ``epoch``, or the optimizer's clock."""
        if budget_progress(self.optimizer) is None:
            return float(epoch)
        return self.spent(steps) / self.steps_per_epoch

    def planned_epochs(self) -> float:
        """The budget in epochs: the epochs a plain run trains; on an optimizer's clock, the budget ÷ steps/epoch."""
        if budget_progress(self.optimizer) is None:
            return float(self.epochs)
        return self.total_steps / self.steps_per_epoch

    def step(self, batch: Any) -> torch.Tensor:
        """One optimizer step on ``batch``; the mean training loss (detached)."""
        workload, model, opt = self.workload, self.model, self.optimizer
        if self.closure:

            def closure() -> torch.Tensor:
                backward = torch.is_grad_enabled()  # the safeguard re-evaluates under no_grad: loss only
                # a loss-only evaluation measures, it does not train: BatchNorm's running statistics (any buffer
                # the forward pass updates) are put back as they were
                buffers = [] if backward else [(b, b.clone()) for b in model.buffers()]
                with torch.enable_grad():  # a PINN's loss differentiates its inputs even then
                    if backward:
                        opt.zero_grad()
                    loss = workload.loss(model, batch)
                    if backward:
                        loss.backward(create_graph=self.create_graph())
                        if self.average_gradients:
                            self.average(model)
                with torch.no_grad():
                    for buffer, saved in buffers:
                        buffer.copy_(saved)
                # every worker's safeguard must take the same decision: on the mean loss
                return average_scalar(loss) if self.workers > 1 else loss.detach()

            loss = opt.step(closure)
        else:
            opt.zero_grad()
            create_graph = self.create_graph()
            parts = workload.split(batch, self.micro_batches) if self.micro_batches > 1 else [batch]
            loss = torch.zeros((), device=self.device)
            for part in parts:
                part_loss = workload.loss(model, part) / len(parts)
                part_loss.backward(create_graph=create_graph)
                loss += part_loss.detach()
            if self.average_gradients:
                self.average(model)
            opt.step()
        self.scheduler.step()
        return loss

    @staticmethod
    def average(model: torch.nn.Module) -> None:
        """The workers' mean gradient in every worker's ``.grad``."""
        average_([p.grad for p in model.parameters() if p.grad is not None])

    def statistics(self) -> dict[str, float]:
        stats = optimizer_statistics(self.optimizer)
        stats["lr"] = self.optimizer.param_groups[0]["lr"] * lr_gain(self.optimizer)  # the rate applied
        return stats


def run_trial(
    config: Mapping[str, Any], report: Report | None = None, checkpoint_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Train one trial; return its final metrics with ``status``, best and time-/steps-to-target.

    With ``checkpoint_dir``, a checkpoint is written there after every epoch, and a checkpoint already there is
    resumed exactly (it must come from the same config). ``report(metrics, checkpoint_dir)`` is called after every
    epoch's checkpoint. Exceptions other than divergence propagate.
    """
    with warnings.catch_warnings():
        # torch's generic advice on backward(create_graph=True): AdaHessian detaches its gradients after the HVP.
        warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
        trial = Trial(config, checkpoint_dir)
        for metrics in trial.epochs():
            if report is not None:
                report(metrics, trial.checkpoint_dir)
        return trial.summary()


class Trial:
    """A trial as an iterator over its epochs, so that several (seeds) can advance in lockstep.

    ``Trial(config, checkpoint_dir).epochs()`` yields each epoch's metrics (with ``status``) once its checkpoint is
    written (with ``autosave=False`` only when the caller calls :meth:`save`: a sweep checkpoints when it reports);
    a trial resumed from a finished checkpoint yields its last epoch again, so a caller that lost the report still
    receives it. :meth:`summary` is the final result. An unreadable (truncated, damaged) checkpoint is a
    :class:`~autoaccel.errors.DataError` naming the file, or with ``restart_if_unreadable`` a warning and a start
    from the first epoch (what a sweep's trial does: the epochs it repeats come out the same).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        checkpoint_dir: str | os.PathLike[str] | None = None,
        autosave: bool = True,
        restart_if_unreadable: bool = False,
    ) -> None:
        self.autosave = autosave
        self.config, self.workload = validate_trial_config(config)
        self.setup = _Setup(self.config, self.workload)
        self.path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
        self.checkpoint_dir = str(checkpoint_dir) if checkpoint_dir is not None else None
        self.history: list[dict[str, Any]] = []
        self.epoch, self.step, self.elapsed, self.status = 0, 0, 0.0, "completed"
        self.restarted = False  # its checkpoint was unreadable, and it started over
        if self.path is not None and self.path.exists():
            try:
                self._load()
            except DataError as error:  # truncated or damaged: the file is named; nothing of it was applied
                if not restart_if_unreadable:
                    raise
                # a sweep's trial starts over: training is deterministic, so it repeats the lost epochs exactly
                warnings.warn(f"{error}; the trial starts over from its first epoch", RuntimeWarning, stacklevel=2)
                self.restarted = True

    def _load(self) -> None:
        trial = self.setup
        saved = load_checkpoint(self.path)
        if saved["config"] != self.config:
            allowed = f"a checkpoint of this same trial config; it differs: {differences(saved['config'], self.config)}"
            raise ConfigError("checkpoint_dir", str(self.path), allowed)
        written_by = saved.get("world_size", 1)
        if written_by != trial.workers:
            allowed = f"a checkpoint written by {trial.workers} worker(s), as this trial has (it was {written_by})"
            raise ConfigError("checkpoint_dir", str(self.path), allowed)
        trial.model.load_state_dict(saved["model"])
        trial.optimizer.load_state_dict(saved["optimizer"])
        trial.scheduler.load_state_dict(saved["scheduler"])
        trial.generator.set_state(saved["generator"])
        set_rng_state(saved["rng_per_rank"][trial.rank] if trial.workers > 1 else saved["rng"])
        self.epoch, self.step, self.elapsed, self.history, self.status = (
            saved[k] for k in ("epoch", "step", "time_s", "history", "status")
        )

    @property
    def finished(self) -> bool:
        if self.status != "completed":
            return True
        if budget_progress(self.setup.optimizer) is None:
            return self.epoch >= self.setup.epochs
        return self.setup.spent(self.step) >= self.setup.total_steps

    def epochs(self) -> Iterator[dict[str, Any]]:
        if self.finished and self.history:
            yield {**self.history[-1], "epochs_planned": self.setup.planned_epochs(), "status": self.status}
        while not self.finished:
            yield self._train_epoch()

    def _train_epoch(self) -> dict[str, Any]:
        trial, workload = self.setup, self.workload
        started = time.perf_counter()
        trial.model.train()
        total, count = torch.zeros((), device=trial.device), 0
        for batch in workload.batches(trial.global_batch, trial.generator):
            if trial.spent(self.step) >= trial.total_steps:
                break
            if trial.workers * trial.micro_batches > workload.batch_size_of(batch):
                continue  # a last batch too small to give each worker's (AdaScale's) micro-batches an example
            if trial.workers > 1:
                batch = workload.split(batch, trial.workers)[trial.rank]
            total += trial.step(batch)
            count, self.step = count + 1, self.step + 1
        if count == 0 and not self.finished:
            raise RuntimeError(f"epoch {self.epoch + 1} trained no step: every batch is smaller than the micro-batches")
        mean_loss = total / max(count, 1)
        train_loss = (average_scalar(mean_loss) if trial.workers > 1 else mean_loss).item()
        if trial.workers > 1 and not agree(trial.model):
            warnings.warn(
                f"the data-parallel workers' parameters differed after epoch {self.epoch + 1}: rank 0's were "
                "broadcast (a kernel that rounds differently on another node?)",
                RuntimeWarning,
                stacklevel=2,
            )
        trial.model.eval()
        evaluated = {}
        if math.isfinite(train_loss) and trial.rank == 0:
            # on the weights the algorithm outputs (Lookahead's slow φ); the training weights are back, bit for bit,
            # before the checkpoint below is written, so a resumed run goes on from them
            with evaluation_weights(trial.optimizer):
                evaluated = workload.evaluate(trial.model)
        seconds = time.perf_counter() - started
        if trial.workers > 1:  # rank 0's evaluation and clock: every worker takes the same decisions
            broadcast_module(trial.model, parameters=False)
            evaluated, seconds = share((evaluated, seconds))
        if not evaluated or not all(math.isfinite(v) for v in evaluated.values()):
            self.status = "diverged"
            evaluated = {name: workload.worst for name in workload.metrics}
            train_loss = 1.0e6
        self.epoch += 1
        self.elapsed += seconds
        metrics = {
            "epoch": self.epoch,
            "budget_epochs": trial.budget_epochs(self.epoch, self.step),
            "step": self.step,
            "time_s": self.elapsed,
            "train_loss": train_loss,
            "world_size": trial.workers,
            **evaluated,
            **trial.statistics(),
        }
        metrics["metric"] = metrics[workload.metric]
        self.history.append(metrics)
        if self.path is not None and self.autosave:
            self.save()
        return {**metrics, "epochs_planned": trial.planned_epochs(), "status": self.status}

    def save(self) -> None:
        """Checkpoint the trial as it is now (into ``checkpoint_dir``), atomically."""
        if self.path is None:
            raise ValueError("Trial.save() needs the trial's checkpoint_dir")
        trial = self.setup
        # data-parallel: every worker calls save (a collective); rank 0 writes every rank's random state
        per_rank = gather(rng_state()) if trial.workers > 1 else None
        if trial.rank != 0:
            return
        state = {
            "config": self.config,
            "epoch": self.epoch,
            "step": self.step,
            "time_s": self.elapsed,
            "history": self.history,
            "status": self.status,
            "model": trial.model.state_dict(),
            "optimizer": trial.optimizer.state_dict(),
            "scheduler": trial.scheduler.state_dict(),
            "generator": trial.generator.get_state(),
            "world_size": trial.workers,
            "rng_per_rank": per_rank,
        }
        save_checkpoint(self.path, state)

    def summary(self) -> dict[str, Any]:
        return _summary(self.workload, self.history, self.status)


def _summary(workload: Workload, history: list[dict[str, Any]], status: str) -> dict[str, Any]:
    final = dict(history[-1]) if history else {}
    mode = workload.mode
    values = [h[workload.metric] for h in history]
    best = objective.best(values, mode) if values else workload.worst
    reached = next((h for h in history if objective.reached(h[workload.metric], workload.target, mode)), None)
    return {
        **final,
        "status": status,
        "best_metric": best,
        "best_epoch": values.index(best) + 1 if values else 0,
        "target": workload.target,
        "time_to_target": reached["time_s"] if reached else None,
        "steps_to_target": reached["step"] if reached else None,
    }
