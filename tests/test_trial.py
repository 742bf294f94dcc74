"""The trial runner: metrics per epoch, exact resume, divergence as a result, clear errors; ``autoaccel train``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from autoaccel.cli import main
from autoaccel.errors import ConfigError
from autoaccel.run import CHECKPOINT, check_budget, run_trial, validate_trial_config
from autoaccel.run.budget import lr_factor
from autoaccel.workloads import register_workload
from autoaccel.workloads.quadratic import NoisyQuadratic

from helpers import interrupted_and_resumed, without_time

QUAD = {"name": "quadratic", "dim": 8, "samples": 96, "condition": 50.0}

STACKS: dict[str, dict[str, Any]] = {
    "sgd_cosine": {"base": "sgd", "lr": 0.2, "momentum": 0.9},
    "demon_adam": {"base": "demon_adam", "lr": 0.05, "demon": {"beta_init": 0.9}},
    "anderson_lookahead_adam": {
        "base": "adam",
        "lr": 0.05,
        "lookahead": {"k": 3, "alpha": 0.5},
        "anderson": {"history": 3, "averaging": "auto", "averaging_window": 3},
    },
    "anderson_safeguard_sgd": {"base": "sgd", "lr": 0.2, "anderson": {"history": 3, "safeguard": True}},
    "adascale_demon_sgd": {"base": "demon_sgd", "lr": 0.1, "adascale": {"num_gradients_to_accumulate": 2}},
    "adahessian": {"base": "adahessian", "lr": 0.1, "adahessian": {"update_each": 2}},
    # 6 steps an epoch: every epoch ends 2 steps past a sync, where the slow weights it is evaluated on are not θ
    "lookahead_sgd": {"base": "sgd", "lr": 0.2, "momentum": 0.9, "lookahead": {"k": 4, "alpha": 0.5}},
}


class _DropoutLinear(torch.nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.nn.functional.dropout(x, 0.3, self.training))  # draws from the global RNG


@register_workload
class _DropoutQuadratic(NoisyQuadratic):
    name = "dropout_quadratic"

    def model(self) -> torch.nn.Module:
        return _DropoutLinear(self.config["dim"], 1, bias=False)


def _config(optimizer: dict[str, Any], epochs: int = 6, workload: dict[str, Any] | None = None, **budget: Any) -> dict:
    schedule = {"schedule": "cosine", "warmup_steps": 2}
    return {
        "workload": workload or QUAD,
        "optimizer": optimizer,
        "budget": {"epochs": epochs, "batch_size": 16, **schedule, **budget},
        "seed": 3,
        "device": "cpu",
    }


@pytest.mark.parametrize("name", [*sorted(STACKS), "dropout"])
def test_resume_is_bit_exact(name: str, tmp_path: Path) -> None:
    if name == "dropout":
        config = _config(STACKS["sgd_cosine"], workload={**QUAD, "name": "dropout_quadratic"})
    else:
        config = _config(STACKS[name])
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    reports: list[dict[str, Any]] = []
    result = run_trial(config, report=lambda m, _: reports.append(m), checkpoint_dir=straight)
    again = interrupted_and_resumed(config, resumed, after_epoch=3)
    a = torch.load(straight / CHECKPOINT, weights_only=True)
    b = torch.load(resumed / CHECKPOINT, weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert without_time(a["history"]) == without_time(b["history"])
    assert without_time([again]) == without_time([result])
    # AdaScale's budget is scale-invariant: it trains until τ = S × the budget, more epochs when the gain is < S
    epochs = len(reports) if name.startswith("adascale") else 6
    assert epochs >= 6 and reports[-1]["budget_epochs"] >= reports[-1]["epochs_planned"] == 6
    assert [r["epoch"] for r in reports] == list(range(1, epochs + 1)) and result["status"] == "completed"


def test_reports_every_epoch_with_design_metrics(tmp_path: Path) -> None:
    reports: list[tuple[dict[str, Any], str | None]] = []
    config = _config(STACKS["demon_adam"], epochs=4)
    result = run_trial(config, report=lambda m, d: reports.append((m, d)), checkpoint_dir=tmp_path)
    assert len(reports) == 4
    for metrics, folder in reports:
        assert folder == str(tmp_path) and (tmp_path / CHECKPOINT).exists()
        for key in ("epoch", "step", "time_s", "train_loss", "val_loss", "val_suboptimality", "metric", "lr"):
            assert math.isfinite(metrics[key]), key
        assert metrics["status"] == "completed"
    assert [m["step"] for m, _ in reports] == [6, 12, 18, 24]  # 96 samples / 16
    betas = [m["demon_beta"] for m, _ in reports]
    assert betas == sorted(betas, reverse=True) and betas[-1] == 0.0  # Demon's total_steps came from the budget
    assert result["metric"] < reports[0][0]["metric"]  # it learns
    assert result["best_metric"] == min(m["metric"] for m, _ in reports)


def test_steps_budget_and_adascale_accumulation() -> None:
    result = run_trial(_config({"base": "sgd", "lr": 0.1}, epochs=None, steps=10))
    assert result["step"] == 10 and result["epoch"] == 2  # the last epoch partial
    config = _config(STACKS["adascale_demon_sgd"], epochs=None, steps=10)
    result = run_trial(config)  # S = 2: until τ = 20 scale-1 steps, 10 to 20 real ones
    assert 1.0 <= result["adascale_gain"] <= 2.0 and 20 <= result["adascale_scale_invariant_steps"] < 22
    assert 10 <= result["step"] <= 20


def test_huge_learning_rate_is_a_diverged_result_not_a_crash() -> None:
    reports: list[dict[str, Any]] = []
    result = run_trial(_config({"base": "sgd", "lr": 1.0e4}, epochs=5), report=lambda m, _: reports.append(m))
    assert result["status"] == "diverged" and reports[-1]["status"] == "diverged"
    assert len(reports) < 5  # stopped at once
    assert all(math.isfinite(v) for v in result.values() if isinstance(v, float))
    assert result["metric"] == result["val_suboptimality"] == 1.0e6
    assert result["time_to_target"] is None


def test_reaching_the_target_is_timed() -> None:
    result = run_trial(_config({"base": "adam", "lr": 0.1}, epochs=15))
    assert result["metric"] <= result["target"] == 1e-2
    assert 0 < result["steps_to_target"] <= result["step"] and result["time_to_target"] <= result["time_s"]


class _Broken(NoisyQuadratic):
    name = "broken_quadratic"

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        raise RuntimeError("a bug in the user's loss")


def test_other_exceptions_propagate() -> None:
    register_workload(_Broken)
    with pytest.raises(RuntimeError, match="a bug in the user's loss"):
        run_trial(_config({"base": "sgd", "lr": 0.1}, workload={"name": "broken_quadratic"}))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"epochs_total": 3}, "epochs_total"),
        ({"budget": {"epochs": 3, "steps": 10}}, "budget"),
        ({"budget": {"batch_size": 16}}, "budget"),
        ({"budget": {"epochs": 0}}, "budget.epochs"),
        ({"budget": {"epochs": 2, "schedule": "polynomial"}}, "budget.schedule"),
        ({"budget": {"epochs": 2, "schedule": "exponential"}}, "budget.gamma"),
        ({"budget": {"epochs": 2, "schedule": "cosine", "gamma": 0.5}}, "budget.gamma"),
        ({"budget": {"epochs": 2, "schedule": "step", "gamma": 1.5}}, "budget.gamma"),
        ({"budget": {"epochs": 2, "schedule": "onecycle", "warmup_steps": 3}}, "budget.warmup_steps"),
        ({"seed": -1}, "seed"),
        ({"device": "tpu"}, "device"),
        ({"workload": {"dim": 3}}, "workload"),
        ({"workload": {"name": "quadratic", "dim": 0}}, "workload.dim"),
        ({"optimizer": {"base": "adam", "momentum": 0.9}}, "optimizer.momentum"),
        ({"optimizer": {"base": "adam", "adascale": {}}}, "optimizer.adascale"),
    ],
)
def test_bad_trial_configs(change: dict[str, Any], key: str) -> None:
    config = {**_config({"base": "sgd", "lr": 0.1}), **change}
    with pytest.raises(ConfigError) as error:
        validate_trial_config(config)
    assert error.value.key == key


def test_checkpoint_of_another_config_is_refused_naming_what_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_trial(_config({"base": "sgd", "lr": 0.1}, epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(
        ConfigError, match=r"a checkpoint of this same trial config; it differs: optimizer.lr 0.1 → 0.2$"
    ):
        run_trial(_config({"base": "sgd", "lr": 0.2}, epochs=1), checkpoint_dir=tmp_path)
    # from the command line: every key that differs (old → new), one line, nothing trained over the checkpoint
    argv = ["train", "--workload", "quadratic", "--option", "samples=64", "--epochs", "1", "--checkpoint-dir"]
    assert main([*argv, str(tmp_path / "cli"), "--set", "base=sgd", "--set", "lr=0.1"]) == 0
    saved = (tmp_path / "cli" / CHECKPOINT).read_bytes()
    capsys.readouterr()
    changed = ["--set", "base=sgd", "--set", "lr=0.2", "--set", "momentum=0.9", "--seed", "3"]
    assert main([*argv, str(tmp_path / "cli"), *changed]) == 2
    err = capsys.readouterr().err
    differs = "it differs: optimizer.lr 0.1 → 0.2; optimizer.momentum (none) → 0.9; seed 0 → 3"
    assert err.startswith("autoaccel train: error: checkpoint_dir = ") and err.endswith(f"{differs}\n"), err
    assert (tmp_path / "cli" / CHECKPOINT).read_bytes() == saved


def test_train_command_json_and_mlflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "metrics.json"
    argv = ["train", "--workload", "quadratic", "--option", "samples=64", "--set", "base=sgd", "--set", "lr=0.3"]
    argv += ["--set", "lookahead.k=3", "--epochs", "3", "--batch-size", "16", "--output-json", str(out)]
    assert main([*argv, "--tracking-uri", uri, "--experiment", "cli"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("epoch ") == 3 and "quadratic completed" in captured.out
    saved = json.loads(out.read_text())
    assert saved["config"]["optimizer"] == {"base": "sgd", "lr": 0.3, "lookahead": {"k": 3}}
    assert saved["result"]["epoch"] == 3
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("cli").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
    assert run.data.params["optimizer.lookahead.k"] == "3" and run.data.tags["family"] == "lookahead+sgd"
    history = client.get_metric_history(run.info.run_id, "val_suboptimality")
    assert [m.step for m in history] == [1, 2, 3]


def test_train_command_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--workload", "quadratic", "--set", "anderson.history=0", "--epochs", "1"]) == 2
    assert "optimizer.anderson.history = 0" in capsys.readouterr().err
    assert main(["train", "--workload", "quadratic", "--option", "condition", "--epochs", "1"]) == 2
    assert "--option = 'condition': KEY=VALUE" in capsys.readouterr().err
    for flag in ("--epochs", "--steps", "--batch-size"):  # a zero is refused, never replaced by a default
        assert main(["train", "--workload", "quadratic", flag, "0"]) == 2
        err = capsys.readouterr().err
        assert "= 0" in err and "Traceback" not in err, err


def test_a_cuda_device_this_machine_lacks_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --device cuda` without a GPU (or cuda:N past the last one) is one line naming the device and what this
    machine allows, before anything trains (before: "RuntimeError: Found no NVIDIA driver" traceback)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cases = {"cuda": "auto or cpu: torch sees no CUDA device", "cuda:0": "auto or cpu"} if count == 0 else {}
    cases[f"cuda:{count}"] = "auto or cpu" if count == 0 else f"cuda:0 … cuda:{count - 1} (this machine has {count})"
    for device, allowed in cases.items():
        argv = ["train", "--workload", "quadratic", "--epochs", "1", "--device", device]
        assert main([*argv, "--checkpoint-dir", str(tmp_path / "ck")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"autoaccel train: error: --device = {device!r}: ") and allowed in err, err
        assert "Traceback" not in err and not (tmp_path / "ck").exists()  # nothing trained


def test_a_finished_checkpoint_replays_its_last_report(tmp_path: Path) -> None:
    config = _config({"base": "sgd", "lr": 0.1}, epochs=2)
    first = run_trial(config, checkpoint_dir=tmp_path)
    replayed: list[dict[str, Any]] = []
    again = run_trial(config, report=lambda m, _: replayed.append(m), checkpoint_dir=tmp_path)
    assert [m["epoch"] for m in replayed] == [2] and replayed[0]["metric"] == first["metric"]  # nothing retrained
    assert again == first


def test_adascale_skips_a_last_batch_smaller_than_its_micro_batches() -> None:
    # 10 samples in batches of 4: the last batch (2) cannot feed 4 micro-batches; it would give empty ones (NaN)
    config = _config(
        {"base": "sgd", "lr": 0.05, "adascale": {"num_gradients_to_accumulate": 4}},
        epochs=2,
        workload={**QUAD, "samples": 10},
        batch_size=4,
    )
    reports: list[dict[str, Any]] = []
    result = run_trial(config, report=lambda m, _: reports.append(m))
    assert result["status"] == "completed" and all(math.isfinite(r["train_loss"]) for r in reports)
    steps = [b["step"] - a["step"] for a, b in zip([{"step": 0}, *reports], reports, strict=False)]
    assert set(steps[:-1]) == {2}  # 2 full batches per epoch; the last (partial) epoch ends when τ reaches 4 × 6


def test_replayed_last_epoch_carries_the_planned_epochs(tmp_path: Path) -> None:
    from autoaccel.run import Trial

    config = _config({"base": "sgd", "lr": 0.1}, epochs=2)
    run_trial(config, checkpoint_dir=tmp_path)
    (replayed,) = list(Trial(config, tmp_path).epochs())  # what a retry after the final report sees
    assert replayed["epoch"] == replayed["epochs_planned"] == 2 and replayed["status"] == "completed"


class _NormedLinear(torch.nn.Linear):
    """A linear model behind a BatchNorm layer, whose running statistics are buffers the forward pass updates."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, 1, bias=False)
        self.norm = torch.nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.norm(x))


@register_workload
class _BatchNormQuadratic(NoisyQuadratic):
    name = "batchnorm_quadratic"

    def model(self) -> torch.nn.Module:
        return _NormedLinear(self.config["dim"])


def test_the_safeguard_evaluations_leave_batchnorm_statistics_alone() -> None:
    """Anderson's safeguard evaluates the loss twice per extrapolation: measurements, not training steps, so the
    running statistics see exactly one forward pass per optimizer step."""
    from autoaccel.run import Trial

    config = {
        "workload": {"name": "batchnorm_quadratic", "dim": 8, "samples": 64},
        "optimizer": {"base": "sgd", "lr": 0.05, "anderson": {"history": 2, "safeguard": True, "averaging": "off"}},
        "budget": {"epochs": 3, "batch_size": 16},
        "device": "cpu",
    }
    trial = Trial(config)
    history = list(trial.epochs())
    assert history[-1]["aa_extrapolations"] >= 3  # the safeguard ran
    assert int(trial.setup.model.norm.num_batches_tracked) == trial.step == 12


def test_under_adascale_the_budget_and_the_schedules_are_scale_invariant() -> None:
    """AdaScale's τ (Σ gains) is the clock: the run lasts until τ = S × the budget's steps (Johnson et al.,
    Algorithm 1), and Demon's β and the cosine learning rate reach their ends exactly then, not at a real-step count
    that leaves β at 0.85 because τ grew by less than S per step."""
    from autoaccel.run import Trial

    optimizer = {
        "base": "demon_sgd",
        "lr": 0.05,
        "demon": {"beta_init": 0.9},
        "adascale": {"num_gradients_to_accumulate": 4},
    }
    config = _config(optimizer, epochs=4, schedule="cosine", warmup_steps=0)
    trial = Trial(config)
    history = list(trial.epochs())
    scale_steps = trial.setup.optimizer.scale_invariant_steps
    budget = trial.setup.total_steps  # 4 epochs of 6 steps at batch 16
    assert budget * 4 <= scale_steps < budget * 4 + 4  # τ reached S × budget, within one step's gain
    assert trial.step > budget  # the gain stayed below S: more real steps than the budget's
    assert history[-1]["demon_beta"] == 0.0 and history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert history[-1]["budget_epochs"] >= history[-1]["epochs_planned"] == 4
    assert history[0]["demon_beta"] > 0.85


def test_a_batch_smaller_than_adascales_micro_batches_is_refused_not_trained_forever() -> None:
    config = _config({"base": "sgd", "lr": 0.05, "adascale": {"num_gradients_to_accumulate": 4}}, batch_size=2)
    with pytest.raises(ConfigError, match=r"budget\.batch_size = 2: at least the optimizer's 4 micro-batches"):
        run_trial(config)


_TORCH_SCHEDULES = {  # each schedule the budget offers, as torch builds it for a budget of 40 steps of 5 per epoch
    "cosine": (lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 40), {}, 1),
    "linear": (lambda opt: torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, 40), {}, 1),
    "step": (lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, [20, 30], 0.3), {"gamma": 0.3}, 1),
    "onecycle": (lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, 1.0, 40, cycle_momentum=False), {}, 1),
    "exponential": (lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.8), {"gamma": 0.8}, 5),  # per epoch
}


@pytest.mark.parametrize("schedule", sorted(_TORCH_SCHEDULES))
def test_each_schedule_is_torchs(schedule: str) -> None:
    """The budget's schedules are torch's own: the same learning rate at every step as torch's scheduler (stepped
    per epoch for ExponentialLR), so a family named after a torch schedule trains with it."""
    make, extra, every = _TORCH_SCHEDULES[schedule]
    weight = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([weight], lr=1.0)
    scheduler, expected = make(opt), []
    for step in range(40):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        if (step + 1) % every == 0:
            scheduler.step()
    budget = check_budget({"steps": 40, "schedule": schedule, **extra})
    ours = [lr_factor(step, 40, budget, 5) for step in range(40)]
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert len(set(ours)) > 2  # it does schedule something


def test_a_schedule_drives_a_trial() -> None:
    """A trial's learning rate follows its budget's schedule: step decay by 0.1 at half and three quarters."""
    seen: list[float] = []
    config = _config({"base": "sgd", "lr": 0.1}, epochs=4, schedule="step", warmup_steps=0)
    run_trial(config, report=lambda metrics, _: seen.append(metrics["lr"]))
    assert seen[0] == pytest.approx(0.1) and seen[-1] == pytest.approx(0.001)


def test_an_unreadable_checkpoint_is_named_and_a_sweep_trial_starts_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated checkpoint: `train` (and Trial) say which file, exit 2; a sweep's trial (restart_if_unreadable)
    warns and starts over, and ends exactly where an uninterrupted run ends."""
    from autoaccel.errors import DataError
    from autoaccel.run import Trial

    config = _config({"base": "sgd", "lr": 0.1, "momentum": 0.9}, epochs=4)
    fresh = run_trial(config)
    run_trial({**config, "budget": {**config["budget"], "epochs": 2}}, checkpoint_dir=tmp_path)
    checkpoint = tmp_path / CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(DataError, match=re.escape(f"{checkpoint}: an unreadable checkpoint")):
        Trial(config, tmp_path)
    with pytest.warns(RuntimeWarning, match="starts over from its first epoch"):
        trial = Trial(config, tmp_path, restart_if_unreadable=True)
    assert trial.epoch == 0
    for _ in trial.epochs():
        pass
    assert without_time([trial.summary()]) == without_time([fresh])
    checkpoint.write_bytes(b"")  # an empty file: what a full disk can leave
    command = [
        "train",
        "--workload",
        "quadratic",
        "--epochs",
        "2",
        "--checkpoint-dir",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    assert main(command) == 2
    shown = capsys.readouterr().err
    assert f"{checkpoint}: an unreadable checkpoint" in shown and "Traceback" not in shown


def test_when_one_seeds_checkpoint_is_unreadable_every_seed_starts_over(tmp_path: Path) -> None:
    """A sweep trial trains its seeds in lockstep: if one seed must start over, all do (else the merged reports mix
    epochs), and each then ends exactly where an uninterrupted run of it ends."""
    from autoaccel.run import Trial
    from autoaccel.sweep.trainable import in_lockstep

    config = _config({"base": "sgd", "lr": 0.1, "momentum": 0.9}, epochs=3)
    for seed in (0, 1):  # one epoch of each, checkpointed: where a sweep's trial stood when its driver died
        next(Trial({**config, "seed": seed}, tmp_path / f"seed_{seed}").epochs())
    broken = tmp_path / "seed_1" / CHECKPOINT
    broken.write_bytes(broken.read_bytes()[:100])

    def seed_trial(seed: int) -> Trial:
        return Trial({**config, "seed": seed}, tmp_path / f"seed_{seed}", restart_if_unreadable=True)

    with pytest.warns(RuntimeWarning, match=re.escape(str(broken))):
        trials = in_lockstep(seed_trial, [0, 1])
    assert [t.epoch for t in trials] == [0, 0]
    for seed, trial in zip((0, 1), trials, strict=True):
        for _ in trial.epochs():
            pass
        assert without_time([trial.summary()]) == without_time([run_trial({**config, "seed": seed})])


def test_a_specs_schedule_defaults_never_reach_a_family_with_another_schedule() -> None:
    """A spec's budget with schedule step (gamma left out) merged with a family's budget.schedule cosine is a valid
    budget: step's default factor is applied when the schedule runs, not written into the budget."""
    spec_budget = check_budget({"epochs": 2, "schedule": "step"})
    assert spec_budget["gamma"] is None
    family = check_budget({**spec_budget, "schedule": "cosine"})
    assert lr_factor(10, 10, family, 5) == pytest.approx(0.0)
    assert lr_factor(8, 10, spec_budget, 5) == pytest.approx(0.01)  # two milestones passed: 0.1²
