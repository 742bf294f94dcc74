"""One trial: train one workload with one optimizer config for a budget; resumable, and honest about divergence.

A trial config is a plain mapping (what a sweep samples and what ``autoaccel train`` builds)::

    workload:  {name: admissions_mlp, <workload options>}
    optimizer: {base: adam, lr: 1.0e-3, anderson: {history: 5}}      # see autoaccel.optim.build_optimizer
    budget:    {epochs: 30, batch_size: 40}     # or steps: N; optional schedule: constant | cosine, warmup_steps
    seed: 0
    device: auto                                # auto (CUDA when available) | cpu | cuda | cuda:N

:func:`run_trial` fills in what the optimizers need from the budget: Demon's ``total_steps`` (in scale-invariant
steps under AdaScale: steps × scale), AdaScale's gradient accumulation (each batch is cut into
``num_gradients_to_accumulate`` micro-batches), AdaHessian's ``create_graph=True`` on refresh steps, and a closure
when Anderson's safeguard needs one. After every epoch it evaluates, checkpoints (model, optimizer, scheduler, every
RNG, the data-order generator, the history) and calls ``report(metrics, checkpoint_dir)``. A non-finite training
loss ends the trial with status ``diverged`` and the workload's finite worst value for its metrics.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoaccel.optim import AdaHessian, AdaScale, AndersonAcceleration, build_optimizer, iter_stack, validate_config
from autoaccel.optim import optimizer_statistics as stack_statistics
from autoaccel.optim._hyper import ConfigError, Hyperparameter, check_all
from autoaccel.workloads import Workload, get_workload

__all__ = ["CHECKPOINT", "Report", "Trial", "run_trial", "validate_trial_config"]

CHECKPOINT = "trial.pt"
Report = Callable[[dict[str, Any], "str | None"], None]

BUDGET = (
    Hyperparameter("epochs", int, None, "training epochs (or give steps)", 1, nullable=True),
    Hyperparameter("steps", int, None, "optimizer steps (the last epoch may be partial)", 1, nullable=True),
    Hyperparameter("batch_size", int, None, "examples per optimizer step (default: the workload's)", 1, nullable=True),
    Hyperparameter(
        "schedule", str, "constant", "learning-rate schedule over the steps", choices=("constant", "cosine")
    ),
    Hyperparameter("warmup_steps", int, 0, "linear warm-up steps before the schedule", 0),
)
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
    budget = check_all(BUDGET, dict(config.get("budget") or {}), prefix="budget.")
    if (budget.get("epochs") is None) == (budget.get("steps") is None):
        raise ConfigError("budget", config.get("budget"), "exactly one of epochs or steps")
    budget = {h.name: budget.get(h.name, h.default) for h in BUDGET}
    budget["batch_size"] = budget["batch_size"] or workload.default_batch_size
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", seed, "an integer ≥ 0")
    device = config.get("device", "auto")
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise ConfigError("device", device, "one of auto, cpu, cuda, cuda:N")
    optimizer = dict(config.get("optimizer") or {})
    if optimizer.get("base") in ("demon_sgd", "demon_adam"):
        optimizer["demon"] = {"total_steps": 1, **(optimizer.get("demon") or {})}  # the real total comes from setup
    try:
        validate_config(optimizer)
    except ConfigError as error:
        raise ConfigError(f"optimizer.{error.key}", error.value, error.allowed) from None
    return {
        "workload": {"name": spec["name"], **workload.config},
        "optimizer": dict(config.get("optimizer") or {}),
        "budget": budget,
        "seed": seed,
        "device": device,
    }, workload


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "state": numpy_state["state"]["key"].tolist(),
            "pos": numpy_state["state"]["pos"],
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", np.array(n["state"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _Setup:
    """What a trial trains, assembled from a validated config: workload, model, optimizer stack, schedule."""

    def __init__(self, config: dict[str, Any], workload: Workload) -> None:
        self.config, self.workload = config, workload
        budget = config["budget"]
        self.device = _device(config["device"])
        workload.setup(self.device)
        _seed_everything(config["seed"])
        self.model = workload.model().to(self.device)
        self.batch_size = budget["batch_size"]
        self.steps_per_epoch = workload.steps_per_epoch(self.batch_size)
        self.total_steps = budget["steps"] or budget["epochs"] * self.steps_per_epoch
        self.epochs = budget["epochs"] or math.ceil(budget["steps"] / self.steps_per_epoch)
        optimizer = dict(config["optimizer"])
        scale = float((optimizer.get("adascale") or {}).get("scale") or 0) or None
        if optimizer["base"] in ("demon_sgd", "demon_adam"):
            accumulate = (optimizer.get("adascale") or {}).get("num_gradients_to_accumulate", 1)
            invariant = self.total_steps * (scale or accumulate if "adascale" in optimizer else 1)
            optimizer["demon"] = {"total_steps": math.ceil(invariant), **(optimizer.get("demon") or {})}
        self.optimizer = build_optimizer(self.model.parameters(), optimizer)
        layers = list(iter_stack(self.optimizer))
        self.hessian = next((o for o in layers if isinstance(o, AdaHessian)), None)
        self.micro_batches = self.optimizer.num_gradients_to_accumulate if isinstance(self.optimizer, AdaScale) else 1
        self.closure = any(isinstance(o, AndersonAcceleration) and o.hyper["safeguard"] for o in layers)
        warmup, cosine = budget["warmup_steps"], budget["schedule"] == "cosine"
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: _schedule(step, self.total_steps, warmup, cosine)
        )
        self.generator = torch.Generator().manual_seed(config["seed"])

    def create_graph(self) -> bool:
        return self.hessian is not None and self.hessian.needs_create_graph

    def step(self, batch: Any) -> torch.Tensor:
        """One optimizer step on ``batch``; the mean training loss (detached)."""
        workload, model, opt = self.workload, self.model, self.optimizer
        if self.closure:

            def closure() -> torch.Tensor:
                backward = torch.is_grad_enabled()  # the safeguard re-evaluates under no_grad: loss only
                with torch.enable_grad():  # a PINN's loss differentiates its inputs even then
                    if backward:
                        opt.zero_grad()
                    loss = workload.loss(model, batch)
                    if backward:
                        loss.backward(create_graph=self.create_graph())
                return loss.detach()

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
            opt.step()
        self.scheduler.step()
        return loss

    def statistics(self) -> dict[str, float]:
        stats = stack_statistics(self.optimizer)
        stats["lr"] = self.optimizer.param_groups[0]["lr"] * stats.get("adascale_gain", 1.0)
        return stats


def _schedule(step: int, total: int, warmup: int, cosine: bool) -> float:
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


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
    written; a trial resumed from a finished checkpoint yields its last epoch again, so a caller that lost the
    report still receives it. :meth:`summary` is the final result.
    """

    def __init__(self, config: Mapping[str, Any], checkpoint_dir: str | os.PathLike[str] | None = None) -> None:
        self.config, self.workload = validate_trial_config(config)
        self.setup = _Setup(self.config, self.workload)
        self.path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
        self.checkpoint_dir = str(checkpoint_dir) if checkpoint_dir is not None else None
        self.history: list[dict[str, Any]] = []
        self.epoch, self.step, self.elapsed, self.status = 0, 0, 0.0, "completed"
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        trial = self.setup
        # on the CPU: RNG states must stay CPU ByteTensors; load_state_dict moves the rest onto the parameters' device
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        if saved["config"] != self.config:
            raise ConfigError("checkpoint_dir", str(self.path), "a checkpoint of this same trial config")
        trial.model.load_state_dict(saved["model"])
        trial.optimizer.load_state_dict(saved["optimizer"])
        trial.scheduler.load_state_dict(saved["scheduler"])
        trial.generator.set_state(saved["generator"])
        _set_rng_state(saved["rng"])
        self.epoch, self.step, self.elapsed, self.history, self.status = (
            saved[k] for k in ("epoch", "step", "time_s", "history", "status")
        )

    @property
    def finished(self) -> bool:
        return self.epoch >= self.setup.epochs or self.status != "completed"

    def epochs(self) -> Iterator[dict[str, Any]]:
        if self.finished and self.history:
            yield {**self.history[-1], "epochs_planned": self.setup.epochs, "status": self.status}
        while not self.finished:
            yield self._train_epoch()

    def _train_epoch(self) -> dict[str, Any]:
        trial, workload = self.setup, self.workload
        started = time.perf_counter()
        trial.model.train()
        total, count = torch.zeros((), device=trial.device), 0
        for batch in workload.batches(trial.batch_size, trial.generator):
            if self.step >= trial.total_steps:
                break
            if trial.micro_batches > workload.batch_size_of(batch):
                continue  # a last batch too small to give each of AdaScale's S micro-batches an example
            total += trial.step(batch)
            count, self.step = count + 1, self.step + 1
        train_loss = (total / max(count, 1)).item()
        trial.model.eval()
        evaluated = workload.evaluate(trial.model) if math.isfinite(train_loss) else {}
        if not evaluated or not all(math.isfinite(v) for v in evaluated.values()):
            self.status = "diverged"
            evaluated = {name: workload.worst for name in workload.metrics}
            train_loss = workload.worst if workload.mode == "min" else 1.0e6
        self.epoch += 1
        self.elapsed += time.perf_counter() - started
        metrics = {
            "epoch": self.epoch,
            "step": self.step,
            "time_s": self.elapsed,
            "train_loss": train_loss,
            **evaluated,
            **trial.statistics(),
        }
        metrics["metric"] = metrics[workload.metric]
        self.history.append(metrics)
        if self.path is not None:
            _save(self.path, trial, self.config, self.epoch, self.step, self.elapsed, self.history, self.status)
        return {**metrics, "epochs_planned": trial.epochs, "status": self.status}

    def summary(self) -> dict[str, Any]:
        return _summary(self.workload, self.history, self.status)


def _save(
    path: Path,
    trial: _Setup,
    config: dict[str, Any],
    epoch: int,
    step: int,
    elapsed: float,
    history: list[dict[str, Any]],
    status: str,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "config": config,
        "epoch": epoch,
        "step": step,
        "time_s": elapsed,
        "history": history,
        "status": status,
        "model": trial.model.state_dict(),
        "optimizer": trial.optimizer.state_dict(),
        "scheduler": trial.scheduler.state_dict(),
        "generator": trial.generator.get_state(),
        "rng": _rng_state(),
    }
    partial = path.with_suffix(".part")
    torch.save(state, partial)
    os.replace(partial, path)  # a crash mid-write leaves the previous epoch's checkpoint intact


def _summary(workload: Workload, history: list[dict[str, Any]], status: str) -> dict[str, Any]:
    final = dict(history[-1]) if history else {}
    pick = min if workload.mode == "min" else max
    values = [h[workload.metric] for h in history]
    best = pick(values) if values else workload.worst
    sign = 1.0 if workload.mode == "min" else -1.0
    reached = next((h for h in history if sign * h[workload.metric] <= sign * workload.target), None)
    return {
        **final,
        "status": status,
        "best_metric": best,
        "best_epoch": values.index(best) + 1 if values else 0,
        "target": workload.target,
        "time_to_target": reached["time_s"] if reached else None,
        "steps_to_target": reached["step"] if reached else None,
    }
