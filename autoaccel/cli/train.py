"""``autoaccel train``: one trial from the command line, with a progress line per epoch and optional MLflow run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from autoaccel.config import apply_overrides
from autoaccel.errors import ConfigError
from autoaccel.paths import check_output_file, check_output_folder
from autoaccel.redaction import redact_uri
from autoaccel.run import check_device, run_trial, validate_trial_config
from autoaccel.run.processes import check_workers, run_data_parallel

__all__ = ["train_command", "trial_config_from_args"]

_BAR = 24


def trial_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from autoaccel.optim import DEFAULT_BASE

    optimizer: dict[str, Any] = {"base": DEFAULT_BASE}
    if args.config:
        try:
            loaded = yaml.safe_load(Path(args.config).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError("--config", args.config, f"a readable YAML mapping ({error})") from None
        if not isinstance(loaded, dict):
            raise ConfigError("--config", args.config, "a YAML mapping (the nested optimizer config)")
        optimizer = loaded
    optimizer = apply_overrides(optimizer, args.set)
    workload = apply_overrides({"name": args.workload}, args.option, flag="--option")
    budget: dict[str, Any] = {"schedule": args.schedule}
    if args.gamma is not None:
        budget["gamma"] = args.gamma
    # `is not None`, not truthiness: a 0 is the user's value, refused by the budget's check, never the default
    budget.update(
        {"steps": args.steps} if args.steps is not None else {"epochs": 10 if args.epochs is None else args.epochs}
    )
    if args.batch_size is not None:
        budget["batch_size"] = args.batch_size
    return {"workload": workload, "optimizer": optimizer, "budget": budget, "seed": args.seed, "device": args.device}


def _line(metrics: dict[str, Any], budget: dict[str, Any], metric: str) -> str:
    done = metrics["epoch"] / budget["epochs"] if budget["epochs"] else metrics["step"] / budget["steps"]
    filled = round(_BAR * min(done, 1.0))
    shown = [f"{key}={metrics[key]:.4g}" for key in ("train_loss", metric) if key in metrics]
    shown += [f"{k}={metrics[k]:.3g}" for k in _progress_statistics() if k in metrics]
    bar = "█" * filled + "·" * (_BAR - filled)
    return f"epoch {metrics['epoch']:>4} |{bar}| {metrics['time_s']:7.1f}s  " + "  ".join(shown)


def _progress_statistics() -> list[str]:
    """What the techniques report that the progress line shows (each technique declares its own)."""
    from autoaccel.optim import techniques

    return list(dict.fromkeys(s.key for t in techniques().values() for s in t.statistics if s.on_progress_line))


def train_command(args: argparse.Namespace) -> int:
    config, workload = validate_trial_config(trial_config_from_args(args))  # bad input fails here, before any work
    check_device(config["device"], "--device")
    check_workers(config["device"], args.workers)
    if args.output_json:
        check_output_file("--output-json", args.output_json)
    if args.checkpoint_dir:
        check_output_folder("--checkpoint-dir", args.checkpoint_dir)
    import torch

    from autoaccel.optim import build_optimizer, planned_workers

    try:  # the optimizer as each worker will build it (AdaScale counts workers × accumulation), before any work
        with planned_workers(args.workers):
            build_optimizer([torch.zeros(1, requires_grad=True)], config["optimizer"])  # a stand-in parameter
    except (ValueError, TypeError) as error:  # a constructor's rule across keys
        raise ConfigError("optimizer", config["optimizer"], str(error)) from None
    tracker = run_id = None
    if args.tracking_uri:
        from autoaccel.optim import technique_label
        from autoaccel.tracking import Tracker, check_tracking_uri, resolve_tracking_uri

        uri = resolve_tracking_uri(args.tracking_uri)
        check_tracking_uri(uri, key="--tracking-uri")
        tracker = Tracker(uri, args.experiment)
        label = technique_label(config["optimizer"])
        tags = {"workload": workload.name, "family": label, "seed": config["seed"], "world_size": args.workers}
        run_id = tracker.start_run(f"{workload.name}-{label}-s{config['seed']}", config, tags)

    def report(metrics: dict[str, Any], _: str | None) -> None:
        print(_line(metrics, config["budget"], workload.metric), file=sys.stderr, flush=True)
        if tracker is not None:
            tracker.log_epoch(run_id, metrics, step=metrics["epoch"])

    try:
        if args.workers > 1:
            result = run_data_parallel(config, args.workers, report=report, checkpoint_dir=args.checkpoint_dir)
        else:
            result = run_trial(config, report=report, checkpoint_dir=args.checkpoint_dir)
    except BaseException as error:  # the MLflow run still ends in a terminal state
        if tracker is not None:
            tracker.finish(run_id, "errored" if isinstance(error, Exception) else "interrupted")
        raise
    status = result["status"]
    if tracker is not None:
        tracker.set_tags(run_id, {"epochs": result.get("epoch", 0), "best_metric": result["best_metric"]})
        tracker.finish(run_id, status)
    summary = {k: v for k, v in result.items() if not isinstance(v, float) or abs(v) < 1e300}
    print(
        f"{workload.name} {status}: {workload.metric}={result.get(workload.metric, float('nan')):.6g} "
        f"(best {result['best_metric']:.6g} at epoch {result['best_epoch']}, target {workload.target:g}, "
        f"time to target {result['time_to_target'] if result['time_to_target'] is not None else 'not reached'})"
    )
    if args.output_json:
        Path(args.output_json).write_text(json.dumps({"config": config, "result": summary}, indent=2) + "\n")
    if run_id:
        print(f"MLflow run {run_id} in {redact_uri(args.tracking_uri)}")
    return 0
