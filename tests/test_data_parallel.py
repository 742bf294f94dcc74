"""Data-parallel trials on real torch.distributed process groups (gloo, 2 CPU processes on this machine): what Ray
Train sets up for a multi-worker sweep trial, without Ray (its own tests are in test_sweep_workers.py)."""

from __future__ import annotations

import datetime
import ipaddress
import multiprocessing
import os
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from autoaccel.errors import ConfigError
from autoaccel.optim import iter_stack
from autoaccel.run import Trial, run_trial
from autoaccel.run.processes import run_data_parallel

WORKLOAD = {"name": "quadratic", "samples": 128, "dim": 8}
STACKS = {
    # safeguard on: the closure path (every worker must take the same accept/reject decision on the mean loss)
    "anderson": {"base": "sgd", "lr": 0.05, "anderson": {"history": 2, "safeguard": True, "averaging": "on"}},
    "lookahead": {"base": "adam", "lr": 0.01, "lookahead": {"k": 3, "alpha": 0.5}},
    "demon": {"base": "demon_sgd", "lr": 0.05},
    "adahessian": {"base": "adahessian", "lr": 0.05},
    "adascale": {"base": "sgd", "lr": 0.05, "adascale": {"num_gradients_to_accumulate": 1}},
}


def _config(optimizer: dict[str, Any], batch_size: int = 8, epochs: int = 2, seed: int = 3) -> dict[str, Any]:
    return {
        "workload": WORKLOAD,
        "optimizer": optimizer,
        "budget": {"epochs": epochs, "batch_size": batch_size},
        "seed": seed,
        "device": "cpu",
    }


def _rank(rank: int, address: str, results: Any) -> None:
    """One of two workers: every stack trained for 2 epochs; what each rank ends with goes back by queue."""
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2, timeout=datetime.timedelta(60))
    try:
        for name, optimizer in STACKS.items():
            trial = Trial(_config(optimizer))
            for _ in trial.epochs():
                pass
            opt = trial.setup.optimizer
            probes = [
                [bytes(g.get_state().numpy()) for g in layer._generators.values()]
                for layer in iter_stack(opt)
                if hasattr(layer, "_generators")
            ]
            params = torch.cat([p.detach().flatten() for p in trial.setup.model.parameters()])
            # plain bytes: a tensor sent by queue lives in this process's shared memory, gone once it exits
            results.put((rank, name, bytes(params.numpy()), probes, trial.summary()))
        # rank 1's parameters knocked off after epoch 1: the next epoch's check finds it and rank 0's are restored
        trial = Trial(_config(STACKS["lookahead"], epochs=3))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for metrics in trial.epochs():
                if metrics["epoch"] == 1 and rank == 1:
                    with torch.no_grad():
                        next(trial.setup.model.parameters()).add_(1e-3)
        params = torch.cat([p.detach().flatten() for p in trial.setup.model.parameters()])
        warned = sum("parameters differed after epoch 2" in str(w.message) for w in caught)
        results.put((rank, "knocked off", bytes(params.numpy()), [], {"warned": warned}))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks() -> dict[str, dict[int, tuple]]:
    from autoaccel.ports import free_loopback_port

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    address = f"tcp://127.0.0.1:{free_loopback_port()}"
    workers = [context.Process(target=_rank, args=(r, address, results)) for r in range(2)]
    for worker in workers:
        worker.start()
    found: dict[str, dict[int, tuple]] = {}
    for _ in range(2 * (len(STACKS) + 1)):
        rank, name, params, probes, summary = results.get(timeout=240)
        found.setdefault(name, {})[rank] = (params, probes, summary)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    return found


@pytest.mark.parametrize("name", list(STACKS))
def test_every_rank_ends_with_bit_equal_parameters(two_ranks: dict, name: str) -> None:
    (params0, _, summary0), (params1, _, summary1) = two_ranks[name][0], two_ranks[name][1]
    assert summary0["world_size"] == summary1["world_size"] == 2
    assert summary0["status"] == "completed"
    assert params0 == params1  # the bytes of every parameter
    if name == "anderson":  # the extrapolations (and the safeguard's decisions on them) did happen
        assert summary0["aa_extrapolations"] > 0


def test_workers_whose_parameters_drift_apart_get_rank_0s_back(two_ranks: dict) -> None:
    (params0, _, summary0), (params1, _, summary1) = two_ranks["knocked off"][0], two_ranks["knocked off"][1]
    assert summary0["warned"] == summary1["warned"] == 1
    assert params0 == params1


def test_adahessian_draws_the_same_probes_on_every_rank(two_ranks: dict) -> None:
    (_, probes0, _), (_, probes1, _) = two_ranks["adahessian"][0], two_ranks["adahessian"][1]
    assert probes0 and len(probes0) == len(probes1)
    assert probes0 == probes1
    fresh = bytes(torch.Generator().manual_seed(3).get_state().numpy())
    assert probes0[0][0] != fresh  # the generator did advance: probes were drawn


def test_two_workers_train_as_one_process_with_twice_the_batch(two_ranks: dict) -> None:
    """Each rank trains on its half of the global batch, in the one-process order: for AdaScale, S = 2 workers × 1
    micro-batch is one process accumulating those same 2 halves, so the gain (estimated from the two workers' real
    gradients) is the same to rounding; and above 1 with at most S."""
    alone = run_trial(_config({"base": "sgd", "lr": 0.05, "adascale": {"num_gradients_to_accumulate": 2}}, 16))
    _, _, together = two_ranks["adascale"][0]
    assert 1.0 < together["adascale_gain"] <= 2.0
    assert together["adascale_gain"] == pytest.approx(alone["adascale_gain"], rel=1e-5)
    assert together["metric"] == pytest.approx(alone["metric"], rel=1e-5)
    assert together["step"] == alone["step"]


def _stop_after(epoch: int) -> Any:
    def report(metrics: dict[str, Any], _: Any) -> None:
        if metrics["epoch"] == epoch:
            raise KeyboardInterrupt  # the run is cut here; rank 0 wrote this epoch's checkpoint first

    return report


def _listening_while(run: Any) -> tuple[Any, set[str]]:
    """``run()``'s result, and every address its worker processes listened on meanwhile."""
    from helpers import listening_addresses_of_children

    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(listening_addresses_of_children())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        return run(), seen
    finally:
        done.set()
        watcher.join()


def test_a_two_worker_trial_resumes_exactly_and_listens_on_loopback_only(tmp_path: Path) -> None:
    """Cut after epoch 2 (or a little later), resumed: the same values as a whole run, bit for bit. And the local
    workers meet through a file and connect over loopback: no socket of theirs listens on another interface."""
    config = _config(STACKS["anderson"], epochs=40)  # more than the workers can train while they are stopped
    whole, seen = _listening_while(lambda: run_data_parallel(config, 2, checkpoint_dir=tmp_path / "whole"))
    assert seen and all(ipaddress.ip_address(a).is_loopback for a in seen), seen
    with pytest.raises(KeyboardInterrupt):
        run_data_parallel(config, 2, report=_stop_after(2), checkpoint_dir=tmp_path / "cut")
    saved = torch.load(tmp_path / "cut" / "trial.pt", weights_only=True)
    # the workers may checkpoint an epoch or two more before they are stopped: a run cut mid-way, in any case
    assert 2 <= saved["epoch"] < 40 and saved["world_size"] == 2 and len(saved["rng_per_rank"]) == 2
    resumed = run_data_parallel(config, 2, checkpoint_dir=tmp_path / "cut")
    assert resumed["epoch"] == 40
    for key in ("metric", "train_loss", "aa_extrapolations", "step"):
        assert resumed[key] == whole[key], key  # bit for bit
    with pytest.raises(ConfigError, match="written by 1 worker"):  # another world size: refused, not mixed up
        run_trial(config, checkpoint_dir=tmp_path / "cut")


def test_a_worker_that_dies_stops_the_trial_with_its_rank(tmp_path: Path) -> None:
    """A rank killed outright (no Python exception to send) ends the launch with an error naming it, promptly, and
    the other rank does not hang on its next collective."""
    marker = tmp_path / "kill"
    marker.write_text("1")  # rank 1 kills itself in its first epoch (see tests/sweep_workloads.py)
    config = {
        **_config(STACKS["lookahead"], epochs=3),
        "workload": {"name": "sweep_workloads:DyingQuadratic", "samples": 128, "dim": 8, "marker": str(marker)},
    }
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    with pytest.raises(RuntimeError, match=r"worker 1 of 2 died \(signal 9\)"):
        run_data_parallel(config, 2)


@pytest.mark.parametrize(
    ("device", "workers", "allowed"),
    [
        ("cpu", 0, "an integer ≥ 1"),
        ("cuda:1", 2, "cuda or auto with --workers"),
        ("cuda", torch.cuda.device_count() + 2, "NCCL needs a GPU per worker"),
    ],
)
def test_workers_this_machine_cannot_run_are_refused_before_any_work(device: str, workers: int, allowed: str) -> None:
    from autoaccel.run.processes import check_workers

    with pytest.raises(ConfigError, match=re.escape(allowed)):
        check_workers(device, workers)


def test_the_backend_follows_the_device() -> None:
    from autoaccel.run.processes import check_workers

    assert check_workers("cpu", 2) == "gloo"
    assert check_workers("cuda:0", 1) == "nccl"  # one process on a named GPU: no per-worker rule to break
    assert check_workers("auto", 1) == ("nccl" if torch.cuda.is_available() else "gloo")
