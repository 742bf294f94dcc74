"""AdaScale against its equations (the golden 4/3 case), against fairscale, and its progress τ."""

import pytest
import torch
from torch import nn

from autoaccel.optim import AdaHessian, AdaScale, DemonSGD, demon_momentum

from helpers import tiny_mlp, train


def _golden_step(opt, model):
    for x in ([1.0, 0.0], [0.0, 1.0]):
        (model(torch.tensor([x])).sum() / 2).backward()  # loss divided by the accumulation count
    opt.step()


def test_golden_gain_four_thirds():
    """Linear(2, 2), micro-batches e₁ and e₂, sum loss: Σ‖gᵢ‖² = 8, ‖ḡ‖² = 3, so with S = n = 2
    σ² = (8 − 2·3)/1 = 2, μ² = 3 − σ²/2 = 2 and r = (2 + 2)/(2/2 + 2) = 4/3."""
    model = nn.Linear(2, 2)
    opt = AdaScale(torch.optim.SGD(model.parameters(), lr=0.1), num_gradients_to_accumulate=2)
    _golden_step(opt, model)
    assert opt.gain() == pytest.approx(4 / 3, rel=1e-6)
    assert opt.scale_invariant_steps == pytest.approx(4 / 3, rel=1e-6)


def test_learning_rate_is_scaled_for_the_step_only():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.zero_()
    opt = AdaScale(torch.optim.SGD(model.parameters(), lr=0.3), num_gradients_to_accumulate=2)
    _golden_step(opt, model)
    # ḡ for the weight is 0.5 everywhere: one step of lr × r moves it by −0.3 · 4/3 · 0.5.
    torch.testing.assert_close(model.weight, torch.full((2, 2), -0.3 * 4 / 3 * 0.5))
    assert opt.param_groups[0]["lr"] == 0.3


@pytest.mark.parametrize("n", [2, 4, 8])
def test_gain_and_trajectory_match_fairscale(n):
    fairscale = pytest.importorskip("fairscale.optim")
    a, b = tiny_mlp(), tiny_mlp()
    ours = AdaScale(torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9), num_gradients_to_accumulate=n)
    ref = fairscale.AdaScale(
        torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9), world_size=1, num_gradients_to_accumulate=n
    )
    for step in range(6):
        train(a, ours, 1, start=step, micro_batches=n)
        train(b, ref, 1, start=step, micro_batches=n)
        assert ours.gain() == pytest.approx(ref.gain(), rel=1e-5)
        assert 1.0 <= ours.gain() <= n
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_progress_drives_a_wrapped_demon_schedule():
    model = tiny_mlp()
    demon = DemonSGD(model.parameters(), lr=0.05, total_steps=20)
    opt = AdaScale(demon, num_gradients_to_accumulate=4)
    gains = []
    for step in range(5):
        train(model, opt, 1, start=step, micro_batches=4)
        gains.append(opt.gain())
    assert opt.scale_invariant_steps == pytest.approx(sum(gains))
    assert demon.progress == pytest.approx(sum(gains))
    assert opt.statistics()["adascale_gain"] == pytest.approx(gains[-1])
    assert demon.statistics()["demon_beta"] == pytest.approx(demon_momentum(sum(gains), 20, 0.9))


def test_needs_at_least_two_gradients():
    with pytest.raises(ValueError, match="≥ 2 gradients"):
        AdaScale(torch.optim.SGD(tiny_mlp().parameters(), lr=0.1), num_gradients_to_accumulate=1)


def test_refuses_adahessian():
    with pytest.raises(TypeError, match="AdaHessian"):
        AdaScale(AdaHessian(tiny_mlp().parameters()), num_gradients_to_accumulate=2)


def test_wrong_number_of_backward_calls_is_an_error():
    model = tiny_mlp()
    opt = AdaScale(torch.optim.SGD(model.parameters(), lr=0.1), num_gradients_to_accumulate=3)
    with pytest.raises(RuntimeError, match="exactly"):
        train(model, opt, 1, micro_batches=2)


def test_no_checkpoint_in_the_middle_of_an_accumulation():
    model = tiny_mlp()
    opt = AdaScale(torch.optim.SGD(model.parameters(), lr=0.1), num_gradients_to_accumulate=2)
    train(model, opt, 1, micro_batches=2)
    model(torch.ones(1, 4)).sum().backward()
    with pytest.raises(RuntimeError, match="accumulation"):
        opt.state_dict()


def test_unhook_removes_the_hooks():
    model = tiny_mlp()
    opt = AdaScale(torch.optim.SGD(model.parameters(), lr=0.1), num_gradients_to_accumulate=2)
    opt.unhook()
    model(torch.ones(1, 4)).sum().backward()
    assert opt._backward_calls == {}


def test_zero_grad_clears_a_partial_accumulation():
    """E.g. after a step skipped for overflowing gradients: the next full accumulation steps normally."""
    model = tiny_mlp()
    opt = AdaScale(torch.optim.SGD(model.parameters(), lr=0.1), num_gradients_to_accumulate=2)
    model(torch.ones(1, 4)).sum().backward()  # one micro-batch, then no step
    train(model, opt, 1, micro_batches=2)  # train() calls zero_grad first
    assert opt.gain() >= 1.0 and opt.scale_invariant_steps > 0
