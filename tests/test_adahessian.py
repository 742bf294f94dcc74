"""AdaHessian against its equations (closed forms on separable quadratics) and against torch-optimizer."""

import pytest
import torch
from torch import nn

from autoaccel.optim import AdaHessian

from helpers import tiny_convnet, train

H = torch.tensor([0.5, 2.0, 4.0, 0.1], dtype=torch.float64)


def _quadratic_steps(update_each, steps, lr=0.1, betas=(0.9, 0.999), eps=1e-4, power=1.0):
    """f(θ) = ½ Σ hᵢ θᵢ²: Hz = h ⊙ z, so z ⊙ Hz = h exactly, whatever the probe."""
    theta = torch.ones(4, dtype=torch.float64, requires_grad=True)
    opt = AdaHessian([theta], lr=lr, betas=betas, eps=eps, hessian_power=power, update_each=update_each, seed=3)
    trace = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (H * theta**2).sum()).backward(create_graph=True)
        opt.step()
        trace.append(theta.detach().clone())
    return trace


def _by_hand(steps, lr=0.1, b1=0.9, b2=0.999, eps=1e-4, power=1.0):
    theta, m = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    v = torch.zeros(4, dtype=torch.float64)
    for t in range(1, steps + 1):
        g = H * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * H**2
        denom = (v / (1 - b2**t)).sqrt() ** power + eps
        theta = theta - lr * (m / (1 - b1**t)) / denom
    return theta


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_exact_on_a_separable_quadratic(power):
    torch.testing.assert_close(
        _quadratic_steps(1, 15, power=power)[-1], _by_hand(15, power=power), rtol=1e-12, atol=1e-12
    )


def test_delayed_hessian_updates_are_bias_corrected_by_refresh_count():
    """The Hessian is constant, so a correctly bias-corrected v̂ is h² whether it is refreshed every step or every
    4th: the trajectories must coincide (pytorch-optimizer corrects by the step count and does not)."""
    every, delayed = _quadratic_steps(1, 17), _quadratic_steps(4, 17)
    for a, b in zip(every, delayed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_spatial_averaging_over_conv_kernels():
    """On ½ Σ hᵢ wᵢ² with a 4-d (Conv2d) and a 3-d (Conv1d) weight, D^(s) is the kernel mean of |h|."""
    w4 = torch.ones(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    w3 = torch.ones(2, 2, 3, dtype=torch.float64, requires_grad=True)
    h4 = torch.arange(18, dtype=torch.float64).view(2, 1, 3, 3) - 4
    h3 = torch.arange(12, dtype=torch.float64).view(2, 2, 3) * 0.5
    opt = AdaHessian([w4, w3], lr=0.1, betas=(0.9, 0.5), seed=0)
    (0.5 * ((h4 * w4**2).sum() + (h3 * w3**2).sum())).backward(create_graph=True)
    opt.step()
    for w, h, dims in ((w4, h4, (2, 3)), (w3, h3, (2,))):
        v_hat = opt.state[w]["exp_hessian_diag_sq"] / (1 - 0.5)
        expected = h.abs().mean(dim=dims, keepdim=True).expand_as(h) ** 2
        torch.testing.assert_close(v_hat, expected, rtol=1e-12, atol=1e-12)


class _MLPConv(nn.Module):
    """Only ≤ 2-d and 4-d tensors: what torch-optimizer's Adahessian supports."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x.view(-1, 1, 2, 2).repeat(1, 1, 2, 2))).flatten(1))


def test_matches_torch_optimizer_with_hessian_power_one():
    torch_optimizer = pytest.importorskip("torch_optimizer")
    torch.manual_seed(0)
    a = _MLPConv()
    b = _MLPConv()
    b.load_state_dict(a.state_dict())

    class SameProbes(AdaHessian):
        """The reference's probe draw (torch.randint(0, 2), one per entry) from our own generator, seeded as the
        reference's global one: the same probes, so the update rules are compared, not our faster draw."""

        def _rademacher(self, p, out=None):
            generator = self._generator(p.device)
            return torch.randint(0, 2, p.shape, generator=generator, dtype=p.dtype).mul_(2).sub_(1)

    ours = SameProbes(a.parameters(), lr=0.05, weight_decay=1e-3, seed=123)
    ref = torch_optimizer.Adahessian(b.parameters(), lr=0.05, weight_decay=1e-3, hessian_power=1.0)
    torch.manual_seed(123)  # the reference draws its probes from the global generator, in the same order
    for step in range(8):
        train(a, ours, 1, start=step, create_graph=True)
        train(b, ref, 1, start=step, create_graph=True)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_missing_create_graph_is_a_clear_error():
    model = tiny_convnet()
    opt = AdaHessian(model.parameters())
    with pytest.raises(RuntimeError, match="create_graph=True"):
        train(model, opt, 1, create_graph=False)


def test_constant_gradient_and_gradless_parameters_do_not_crash():
    w = torch.ones(3, requires_grad=True)
    c = torch.zeros(2, requires_grad=True)  # enters the loss linearly: its gradient is constant
    frozen = torch.ones(2, requires_grad=True)  # never receives a gradient
    opt = AdaHessian([w, c, frozen], lr=0.1, eps=1e-4, seed=0)
    for _ in range(3):
        opt.zero_grad()
        ((w**2).sum() + 0.5 * c.sum()).backward(create_graph=True)
        opt.step()
    assert torch.isfinite(w).all() and torch.isfinite(c).all()
    assert torch.equal(opt.state[c]["exp_hessian_diag_sq"], torch.zeros(2))  # zero curvature, no crash
    assert torch.equal(frozen, torch.ones(2)) and frozen not in opt.state


def test_uses_its_own_generator_not_the_global_one():
    model = tiny_convnet()
    opt = AdaHessian(model.parameters(), n_samples=2, seed=7)
    before = torch.get_rng_state()
    train(model, opt, 3, create_graph=True)
    assert torch.equal(before, torch.get_rng_state())


def test_same_seed_same_trajectory_and_different_seed_differs():
    runs = []
    for seed in (1, 1, 2):
        model = tiny_convnet()
        train(model, AdaHessian(model.parameters(), lr=0.05, seed=seed), 4, create_graph=True)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_needs_create_graph_follows_update_each():
    model = tiny_convnet()
    opt = AdaHessian(model.parameters(), update_each=3)
    due = []
    for step in range(7):
        due.append(opt.needs_create_graph)
        train(model, opt, 1, start=step, create_graph=opt.needs_create_graph)
    assert due == [True, False, False, True, False, False, True]


def test_gradients_are_detached_after_the_step():
    model = tiny_convnet()
    opt = AdaHessian(model.parameters())
    train(model, opt, 1, create_graph=True)
    assert all(p.grad is not None and p.grad.grad_fn is None for p in model.parameters())


def test_needs_create_graph_ignores_frozen_parameters():
    model = tiny_convnet()
    model.head.bias.requires_grad_(False)
    opt = AdaHessian(model.parameters(), update_each=2)
    train(model, opt, 1, create_graph=True)
    assert opt.needs_create_graph is False


def test_probes_are_balanced_independent_signs_from_the_optimizers_own_generator():
    """Eight entries per random byte: every entry ±1, half of each, no correlation between neighbours (bits of one
    byte) or between two draws, and the same stream for the same seed."""
    p = torch.nn.Parameter(torch.zeros(1000, 1001))  # not a multiple of 8 entries
    draws = [AdaHessian([p], seed=5)._rademacher(p).clone() for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    opt = AdaHessian([p], seed=5)
    first, second = opt._rademacher(p).clone(), opt._rademacher(p).clone()
    assert first.shape == p.shape and set(first.unique().tolist()) == {-1.0, 1.0}
    flat = first.view(-1)
    assert abs(flat.mean().item()) < 0.005  # 1e6 entries: 5 standard errors
    assert abs((flat[:-1] * flat[1:]).mean().item()) < 0.005 and abs((first * second).mean().item()) < 0.005
