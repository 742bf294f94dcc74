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
