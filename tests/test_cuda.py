"""The CUDA path: every technique steps on a GPU like on the CPU, and resumes exactly there. Skipped without one."""

import pytest
import torch

from helpers import roundtrip, train
from test_resume import STACKS

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _on(device, make_model, seed=0):
    return make_model(seed).to(device)


@pytest.mark.parametrize("name", [n for n in STACKS if "adahessian" not in n])  # probes: per-device generators
def test_cuda_trajectory_matches_cpu(name):
    make_model, make_opt, options = STACKS[name]
    results = []
    for device in ("cpu", "cuda"):
        model = _on(device, make_model)
        opt = make_opt(model)
        train(model, opt, 8, device=device, **options)
        results.append([p.detach().cpu() for p in model.parameters()])
    for p, q in zip(*results, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(STACKS))
def test_cuda_exact_resume(name):
    make_model, make_opt, options = STACKS[name]
    options = {**options, "device": "cuda"}
    model = _on("cuda", make_model)
    opt = make_opt(model)
    train(model, opt, 10, **options)
    expected = [p.detach().clone() for p in model.parameters()]
    model = _on("cuda", make_model)
    opt = make_opt(model)
    train(model, opt, 4, **options)
    state = roundtrip({"model": model.state_dict(), "opt": opt.state_dict()})
    fresh = _on("cuda", make_model, seed=1)
    fresh.load_state_dict(state["model"])
    fresh_opt = make_opt(fresh)
    fresh_opt.load_state_dict(state["opt"])
    train(fresh, fresh_opt, 6, start=4, **options)
    for p, q in zip(fresh.parameters(), expected, strict=True):
        assert torch.equal(p, q)


def test_nccl_data_parallel_trial_matches_one_process():
    """The NCCL path of `run_data_parallel` on as many GPUs as there are (NCCL allows one rank per device): a
    data-parallel AdaScale trial completes on CUDA and reports its world size; with 2+ GPUs, 2 workers of batch b
    train as one process of batch 2b (the CPU/gloo test's claim, on NCCL)."""
    from autoaccel.run import run_data_parallel, run_trial

    workers = min(torch.cuda.device_count(), 2)
    accumulate = 1 if workers == 2 else 2  # AdaScale needs 2 gradients per step
    config = {
        "workload": {"name": "quadratic", "samples": 128, "dim": 8},
        "optimizer": {"base": "sgd", "lr": 0.05, "adascale": {"num_gradients_to_accumulate": accumulate}},
        "budget": {"epochs": 2, "batch_size": 16 // workers},
        "seed": 3,
        "device": "cuda",
    }
    together = run_data_parallel(config, workers)
    assert together["status"] == "completed" and together["world_size"] == workers
    alone = run_trial(
        {
            **config,
            "optimizer": {**config["optimizer"], "adascale": {"num_gradients_to_accumulate": 2}},
            "budget": {"epochs": 2, "batch_size": 16},
        }
    )
    assert together["adascale_gain"] == pytest.approx(alone["adascale_gain"], rel=1e-4)
    assert together["metric"] == pytest.approx(alone["metric"], rel=1e-4)
