"""Demon against the paper's schedule and update rules."""

import math

import pytest
import torch

from autoaccel.errors import ConfigError
from autoaccel.optim import DemonAdam, DemonSGD, demon_momentum, set_horizon

from helpers import batch, tiny_mlp, train

# β_t for β_init = 0.9, T = 1000 (research notes §2.1, computed from the closed form).
SCHEDULE = [(0, 0.9), (250, 0.871), (500, 0.818), (750, 0.692), (900, 0.474), (999, 0.0089), (1000, 0.0)]


@pytest.mark.parametrize(("t", "beta"), SCHEDULE)
def test_schedule_table(t, beta):
    assert demon_momentum(t, 1000, 0.9) == pytest.approx(beta, abs=6e-4)


def test_schedule_decays_the_total_contribution_linearly():
    for t in range(0, 1001, 50):
        b = demon_momentum(t, 1000, 0.95)
        assert b / (1 - b) == pytest.approx((1 - t / 1000) * 0.95 / 0.05, rel=1e-12)


def test_schedule_is_clamped_past_T_and_before_0():
    # The raw formula gives -999 at t = 1111 and > 1 after; clamped, it stays at 0.
    assert [demon_momentum(t, 1000, 0.9) for t in (1000, 1050, 1111, 1112, 10**6)] == [0.0] * 5
    assert demon_momentum(-5, 1000, 0.9) == 0.9


@pytest.mark.parametrize(("kwargs", "word"), [({"total_steps": 0}, "total_steps"), ({"beta_init": 1.0}, "beta_init")])
def test_schedule_rejects_bad_arguments(kwargs, word):
    args = {"step": 1, "total_steps": 10, "beta_init": 0.9} | kwargs
    with pytest.raises(ValueError, match=word):
        demon_momentum(**args)


@pytest.mark.parametrize("cls", [DemonSGD, DemonAdam])
@pytest.mark.parametrize("total_steps", [0, -3, 2.5])
def test_total_steps_must_be_a_positive_integer(cls, total_steps):
    with pytest.raises(ConfigError, match="total_steps"):
        cls(tiny_mlp().parameters(), lr=0.1, total_steps=total_steps)


@pytest.mark.parametrize("cls", [DemonSGD, DemonAdam])
def test_horizon_from_the_training_loop_unless_given(cls):
    """T left out: a step before set_horizon is an error naming it; set_horizon fills it; a given T is kept."""
    model = tiny_mlp()
    model(torch.ones(1, 4)).sum().backward()
    opt = cls(model.parameters(), lr=0.1, beta_init=0.9)
    with pytest.raises(ConfigError, match=r"total_steps.*set_horizon"):
        opt.step()
    set_horizon(opt, 10)
    opt.step()
    assert opt.total_steps == 10 and opt.beta(opt.param_groups[0]) == pytest.approx(demon_momentum(1, 10, 0.9))
    given = cls(model.parameters(), lr=0.1, total_steps=7)
    set_horizon(given, 10)
    assert given.total_steps == 7


@pytest.mark.parametrize("nesterov", [False, True])
def test_demon_sgd_equals_torch_sgd_with_momentum_overwritten(nesterov):
    """The paper's undampened SGDM: torch SGD(dampening=0) whose momentum is set to β_t before each step."""
    a, b = tiny_mlp(), tiny_mlp()
    T = 12
    demon = DemonSGD(a.parameters(), lr=0.05, beta_init=0.95, total_steps=T, weight_decay=1e-3, nesterov=nesterov)
    ref = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.95, weight_decay=1e-3, nesterov=nesterov, foreach=True)
    for step in range(T + 3):  # past T too: β stays 0
        for group in ref.param_groups:
            group["momentum"] = demon_momentum(step, T, 0.95)
        train(a, demon, 1, start=step)
        train(b, ref, 1, start=step)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)


def _adam_by_hand(variant, steps, T, lr=0.01, beta_init=0.9, beta2=0.999, eps=1e-8):
    """Algorithm 2 ('paper') or β_t in Adam's EMA with exact bias correction ('ema'), on one scalar parameter."""
    theta, m, v, prod = 1.0, 0.0, 0.0, 1.0
    for t in range(steps):
        g = 2 * theta - 1  # gradient of (θ − ½)² + const
        beta = demon_momentum(t, T, beta_init)
        if variant == "paper":
            m = beta * m + g
            m_hat = m
        else:
            m = beta * m + (1 - beta) * g
            prod *= beta
            m_hat = m / (1 - prod)
        v = beta2 * v + (1 - beta2) * g * g
        theta -= lr * m_hat / (math.sqrt(v / (1 - beta2 ** (t + 1))) + eps)
    return theta


@pytest.mark.parametrize("variant", ["paper", "ema"])
def test_demon_adam_matches_the_equations(variant):
    theta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = DemonAdam([theta], lr=0.01, total_steps=20, variant=variant)
    for _ in range(25):
        opt.zero_grad()
        ((theta - 0.5) ** 2).sum().backward()
        opt.step()
    assert theta.item() == pytest.approx(_adam_by_hand(variant, 25, 20), rel=1e-12)


def test_paper_variant_steps_are_larger_by_one_over_one_minus_beta():
    """With a constant gradient, m_t → g/(1 − β): the paper variant's early steps are ≈ 10× Adam's at β = 0.9."""
    theta = torch.zeros(1, requires_grad=True)
    opt = DemonAdam([theta], lr=1e-3, total_steps=10**6, variant="paper")
    moves = []
    for _ in range(60):
        before = theta.item()
        opt.zero_grad()
        theta.sum().backward()  # gradient 1
        opt.step()
        moves.append(before - theta.item())
    assert moves[0] == pytest.approx(1e-3, rel=1e-4)
    assert moves[-1] == pytest.approx(1e-3 / (1 - 0.9), rel=0.01)


def test_one_global_counter_across_param_groups_and_in_the_state_dict():
    model = tiny_mlp()
    opt = DemonSGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}], lr=0.1, total_steps=10
    )
    train(model, opt, 4)
    assert opt.progress == 4  # not 4 × number of groups
    assert opt.state_dict()["demon"] == {"progress": 4.0, "total_steps": 10}
    assert opt.statistics()["demon_beta"] == pytest.approx(demon_momentum(4, 10, 0.9))


def test_demon_adam_decoupled_weight_decay():
    theta = torch.tensor([2.0], requires_grad=True)
    opt = DemonAdam([theta], lr=0.1, total_steps=5, weight_decay=0.5, decoupled_weight_decay=True)
    theta.grad = torch.zeros(1)
    opt.step()
    assert theta.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5))


def test_sparse_gradients_are_refused():
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = DemonSGD(emb.parameters(), lr=0.1, total_steps=3)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_batch_helper_is_deterministic():
    assert torch.equal(batch(3)[0], batch(3)[0])
