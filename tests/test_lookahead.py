"""Lookahead against Algorithm 1 and against pytorch-optimizer's (paper-exact) implementation."""

import pytest
import torch

from autoaccel.optim import Lookahead

from helpers import tiny_mlp, train


def test_algorithm_1_by_hand():
    """Gradient 1 everywhere, SGD lr 1: θ falls by 1 per inner step; every k steps θ ← φ + α(θ − φ)."""
    theta = torch.zeros(1, requires_grad=True)
    opt = Lookahead(torch.optim.SGD([theta], lr=1.0), k=3, alpha=0.5)
    phi, fast, trace = 0.0, 0.0, []
    for step in range(1, 10):
        theta.grad = torch.ones(1)
        opt.step()
        fast -= 1.0
        if step % 3 == 0:
            phi = phi + 0.5 * (fast - phi)
            fast = phi
        trace.append((theta.item(), fast))
    assert [t for t, _ in trace] == [f for _, f in trace]
    assert theta.item() == -4.5  # three syncs of -3 steps, each halved: -1.5 each


@pytest.mark.parametrize("inner", ["sgd", "adam"])
def test_same_trajectory_as_pytorch_optimizer(inner):
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    a, b = tiny_mlp(), tiny_mlp()

    def base(model):
        if inner == "sgd":
            return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return torch.optim.Adam(model.parameters(), lr=0.01)

    ours = Lookahead(base(a), k=5, alpha=0.5)
    ref = pytorch_optimizer.Lookahead(base(b), k=5, alpha=0.5)
    for step in range(23):
        train(a, ours, 1, start=step)
        train(b, ref, 1, start=step)
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_slow_weights_context_swaps_and_restores():
    model = tiny_mlp()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=4, alpha=0.5)
    train(model, opt, 6)  # two steps past a sync: fast and slow differ
    fast = [p.detach().clone() for p in model.parameters()]
    slow = [opt.state[p]["slow"].clone() for p in model.parameters()]
    assert not all(torch.equal(f, s) for f, s in zip(fast, slow, strict=True))
    with opt.slow_weights():
        assert all(torch.equal(p, s) for p, s in zip(model.parameters(), slow, strict=True))
    assert all(torch.equal(p, f) for p, f in zip(model.parameters(), fast, strict=True))


def test_alpha_one_recovers_the_inner_optimizer():
    a, b = tiny_mlp(), tiny_mlp()
    train(a, Lookahead(torch.optim.SGD(a.parameters(), lr=0.1), k=2, alpha=1.0), 7)
    train(b, torch.optim.SGD(b.parameters(), lr=0.1), 7)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("k", "alpha"), [(0, 0.5), (5, 0.0), (5, 1.5)])
def test_bad_hyperparameters(k, alpha):
    with pytest.raises(ValueError, match=r"k|alpha"):
        Lookahead(torch.optim.SGD(tiny_mlp().parameters(), lr=0.1), k=k, alpha=alpha)


def test_slow_weights_start_from_the_weights_of_the_first_step():
    """Weights loaded after the optimizer was built are φ_0 (not the random initialisation)."""
    model = tiny_mlp()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.0), k=2, alpha=0.5)
    model.load_state_dict(tiny_mlp(seed=5).state_dict())
    loaded = [p.detach().clone() for p in model.parameters()]
    train(model, opt, 2)  # lr 0: θ stays, so the sync must leave it where it was loaded
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), loaded, strict=True))
