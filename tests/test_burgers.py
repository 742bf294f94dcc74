"""The Burgers PINN workload: exact solutions, quadrature, training signal, options, AdaHessian, micro-batches."""

import math

import pytest
import torch

from autoaccel.errors import ConfigError
from autoaccel.workloads import get_workload
from autoaccel.workloads.burgers import (
    NU,
    BurgersPINN,
    _autograd_laplacian,
    _forward_laplacian,
    _tanh_mlp_layers,
    burgers_1d_exact,
)

SMALL_100D = {"dim": 100, "collocation": 256, "boundary": 128, "width": 16, "depth": 2}


def _points(n, seed=0, t_low=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1
    t = t_low + torch.rand(n, generator=g, dtype=torch.float64) * (1 - t_low)
    return x, t


def test_cole_hopf_solution_satisfies_burgers():
    # autograd through the float64 quadrature; t ≥ 0.05 keeps d√t/dt moderate
    x, t = _points(64, t_low=0.05)
    x.requires_grad_(True)
    t.requires_grad_(True)
    u = burgers_1d_exact(x, t)
    u_x, u_t = torch.autograd.grad(u.sum(), (x, t), create_graph=True)
    (u_xx,) = torch.autograd.grad(u_x.sum(), x)
    scale = u_t.abs() + (u * u_x).abs() + (NU * u_xx).abs()
    assert scale.max() > 1.0  # the points reach the steep region, where a wrong formula shows most
    residual = u_t + u * u_x - NU * u_xx
    assert (residual.abs() / scale).max() < 1e-9
    # the check can fail: twice the viscosity leaves an O(1) relative residual
    wrong = u_t + u * u_x - 2 * NU * u_xx
    assert (wrong.abs() / scale).max() > 0.1


def test_cole_hopf_initial_and_boundary_conditions():
    x, t = _points(50, seed=1)
    assert torch.equal(burgers_1d_exact(x, torch.zeros_like(x)), -torch.sin(math.pi * x))
    # just after t = 0 the quadrature itself (not the t = 0 shortcut) reproduces the initial condition
    near = burgers_1d_exact(x, torch.full_like(x, 1e-10))
    assert torch.allclose(near, -torch.sin(math.pi * x), atol=1e-6)
    for side in (-1.0, 1.0):
        assert burgers_1d_exact(torch.full_like(t, side), t).abs().max() < 1e-13


def test_quadrature_is_converged_and_matches_the_published_slope():
    x, t = _points(400, seed=2)
    coarse = burgers_1d_exact(x, t)
    fine = burgers_1d_exact(x, t, nodes=1601, half_width=18.0)
    assert (coarse - fine).abs().max() < 1e-12
    # Basdevant et al. (1986): the steepest slope, |u_x| = 152.00516 at x = 0, t = 1.6037/π
    x0 = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    u = burgers_1d_exact(x0, torch.full((1,), 1.6037 / math.pi, dtype=torch.float64))
    (slope,) = torch.autograd.grad(u.sum(), x0)
    assert slope.item() == pytest.approx(-152.00516, abs=1e-4)


def test_high_dimensional_solution_satisfies_its_pde_and_conditions():
    workload = BurgersPINN(dim=100)
    g = torch.Generator().manual_seed(3)
    points = torch.cat([torch.rand(32, 100, generator=g) * 2 - 1, torch.rand(32, 1, generator=g)], 1).double()

    def exact(p):
        return workload.exact_solution(p[:, :-1], p[:, -1:])

    u, grad, laplacian = _autograd_laplacian(exact, points, 100)
    a = 100 / 2  # σ = √d
    assert (2 * a / 100, (100 + a) / (2 * a)) == (1.0, 1.5)
    residual = grad[:, -1] + a * laplacian + (u - 1.5) * grad[:, :-1].sum(1)
    assert residual.abs().max() < 1e-12 and grad[:, -1].abs().min() > 0.1
    wrong = grad[:, -1] + a * laplacian + (u - 1.4) * grad[:, :-1].sum(1)
    assert wrong.abs().min() > 0.01
    # the workload's own residual operator, applied to the exact solution, agrees
    assert workload.residual(exact, points).abs().max() < 1e-12

    workload.setup(torch.device("cpu"))
    data = workload._data
    boundary = data["boundary"]
    on_time_face = boundary[:, -1] == 1.0
    on_space_face = (boundary[:, :-1].abs() == 1.0).any(1)
    assert on_time_face.sum() == 200 and (on_time_face | on_space_face).all()
    assert torch.allclose(data["boundary_u"], torch.sigmoid(boundary[:, -1:] + boundary[:, :-1].mean(1, keepdim=True)))


def test_forward_laplacian_matches_autograd():
    workload = BurgersPINN(**SMALL_100D)
    torch.manual_seed(0)
    model = workload.model().double()
    points = torch.rand(20, 101, dtype=torch.float64) * 2 - 1
    for ours, reference in zip(
        _forward_laplacian(_tanh_mlp_layers(model), points, 100), _autograd_laplacian(model, points, 100), strict=True
    ):
        assert torch.allclose(ours, reference, rtol=1e-10, atol=1e-12)
    assert _tanh_mlp_layers(torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.ReLU(), torch.nn.Linear(1, 1))) is None


def _train(workload, steps, lr, batch_size):
    workload.setup(torch.device("cpu"))
    torch.manual_seed(0)
    model = workload.model()
    before = workload.evaluate(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    step = 0
    while step < steps:
        for batch in workload.batches(batch_size, g):
            opt.zero_grad()
            workload.loss(model, batch).backward()
            opt.step()
            step += 1
    return before, workload.evaluate(model)


@pytest.mark.parametrize(
    "options",
    [{"dim": 1, "collocation": 500, "boundary": 100, "source_points": 50}, SMALL_100D],
    ids=["dim1", "dim100"],
)
def test_adam_reduces_loss_and_error(options):
    before, after = _train(get_workload("burgers_pinn", **options), steps=60, lr=1e-2, batch_size=128)
    assert set(after) == {"val_loss", "val_rel_l2", "val_residual"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in after.values())
    # measured ratios over three model seeds: ≤ 0.42 and ≤ 0.51 in 1-d, ≤ 0.003 and ≤ 0.17 in 100-d
    assert after["val_loss"] < 0.6 * before["val_loss"]
    assert after["val_rel_l2"] < 0.7 * before["val_rel_l2"]


def test_points_depend_on_data_seed_only():
    a, b, c = (BurgersPINN(dim=1, collocation=100, boundary=20, data_seed=s) for s in (0, 0, 1))
    torch.manual_seed(123)
    a.setup(torch.device("cpu"))
    torch.manual_seed(456)
    b.setup(torch.device("cpu"))
    c.setup(torch.device("cpu"))
    assert all(torch.equal(a._data[k], b._data[k]) for k in a._data)
    assert not torch.equal(a._data["interior"], c._data["interior"])
    assert not torch.equal(a._data["interior"], a._data["val_interior"])
    boundary = a._data["boundary"]
    assert (boundary[:10, 1] == 0).all() and (boundary[10:, 0].abs() == 1).all()
    assert torch.allclose(a._data["boundary_u"][:10, 0], -torch.sin(math.pi * boundary[:10, 0]))
    assert a._data["boundary_u"][10:].abs().max() < 1e-12


@pytest.mark.parametrize(
    ("key", "value"),
    [("dim", 2), ("dim", True), ("collocation", 0), ("boundary", 1), ("source_points", -1), ("width", 2.5)],
)
def test_bad_options_name_their_key(key, value):
    with pytest.raises(ConfigError, match=rf"workload\.{key}"):
        get_workload("burgers_pinn", **{key: value})


def test_unknown_option_is_rejected():
    with pytest.raises(ConfigError, match=r"workload\.viscosity"):
        get_workload("burgers_pinn", viscosity=0.1)


@pytest.mark.parametrize("options", [{"dim": 1}, SMALL_100D], ids=["dim1", "dim100"])
def test_loss_supports_create_graph_backward_for_adahessian(options):
    workload = get_workload("burgers_pinn", **{**options, "collocation": 64, "boundary": 16})
    workload.setup(torch.device("cpu"))
    torch.manual_seed(0)
    model = workload.model()
    (batch,) = workload.batches(64, torch.Generator().manual_seed(0))
    params = list(model.parameters())
    loss = workload.loss(model, batch)
    loss.backward(create_graph=True)
    assert all(p.grad is not None and p.grad.requires_grad for p in params)
    # a Hessian-vector product through the gradient, as AdaHessian computes it
    vectors = [torch.randint_like(p, 2) * 2 - 1 for p in params]
    hvp = torch.autograd.grad([p.grad for p in params], params, grad_outputs=vectors)
    assert all(torch.isfinite(h).all() for h in hvp) and any(h.abs().sum() > 0 for h in hvp)


@pytest.mark.parametrize("options", [{"dim": 1, "source_points": 20}, SMALL_100D], ids=["dim1", "dim100"])
def test_micro_batch_losses_average_to_the_batch_loss(options):
    workload = get_workload("burgers_pinn", **{**options, "collocation": 120, "boundary": 40})
    workload.setup(torch.device("cpu"))
    torch.manual_seed(0)
    model = workload.model()
    (batch,) = workload.batches(120, torch.Generator().manual_seed(0))
    parts = workload.split(batch, 4)
    assert [len(p[0]) for p in parts] == [30] * 4
    mean = torch.stack([workload.loss(model, p) for p in parts]).mean()
    torch.testing.assert_close(mean, workload.loss(model, batch), rtol=1e-5, atol=0)


def test_declaration_and_exact_solution_interface():
    workload = get_workload("burgers_pinn", dim=1)
    assert (workload.metric, workload.mode, workload.task) == ("val_rel_l2", "min", "pde")
    assert workload.target == 0.1 and get_workload("burgers_pinn", dim=100).target < 0.021
    assert workload.train_size() == 10_000 and workload.steps_per_epoch(workload.default_batch_size) == 20
    assert get_workload("burgers_pinn", dim=100).train_size() == 2000
    assert get_workload("burgers_pinn", dim=1, collocation=None).config["collocation"] == 10_000
    x = torch.tensor([[0.5], [-0.25]])
    u = workload.exact_solution(x, torch.zeros(2, 1))
    assert u.shape == (2, 1) and u.dtype == torch.float32
    torch.testing.assert_close(u, -torch.sin(math.pi * x))
