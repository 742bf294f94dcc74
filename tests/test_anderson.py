"""Anderson acceleration: the extrapolation formula, the acceleration it buys, the RSD switch and safeguards."""

import copy
import itertools

import numpy as np
import pytest
import torch

from autoaccel.optim import AndersonAcceleration

from helpers import (
    averaging_fraction_on_noisy_regression,
    gradient_descent,
    ill_conditioned_quadratic,
    same_bits,
    tiny_mlp,
    train,
)


def _aadl_by_hand(iterates, relaxation):
    """AADL's type-II update (research notes §1.2) written with numpy, on consecutive iterates x_0..x_{m+1}."""
    x = np.stack([t.numpy() for t in iterates], axis=1)  # n × (m + 2)
    f = x[:, 1:] - x[:, :-1]
    d_f, d_x = f[:, 1:] - f[:, :-1], x[:, 1:-1] - x[:, :-2]
    gamma = np.linalg.lstsq(d_f, f[:, -1], rcond=None)[0]
    x_bar = x[:, -2] - d_x @ gamma
    f_bar = f[:, -1] - d_f @ gamma
    return x_bar + relaxation * f_bar


class _Scripted(torch.optim.Optimizer):
    """A base 'optimizer' whose step moves the parameter to the next of a list of given points: a map G whose
    iterates are random vectors, so that the least-squares problem is well conditioned."""

    def __init__(self, param, points):
        super().__init__([param], {})
        self.points = iter(points)

    @torch.no_grad()
    def step(self, closure=None):
        self.param_groups[0]["params"][0].copy_(next(self.points))


@pytest.mark.parametrize(("history", "relaxation"), [(3, 1.0), (3, 0.5), (5, 0.3), (8, 0.9)])
def test_extrapolation_equals_the_aadl_formula(history, relaxation):
    g = torch.Generator().manual_seed(history)
    iterates = list(torch.randn(history + 2, 20, generator=g, dtype=torch.float64))
    x = iterates[0].clone().requires_grad_()
    opt = AndersonAcceleration(
        _Scripted(x, iterates[1:]), history=history, frequency=history + 1, relaxation=relaxation, averaging="off"
    )
    for _ in range(history + 1):
        opt.step()
    assert opt.counters["accepted"] == 1
    np.testing.assert_allclose(x.detach().numpy(), _aadl_by_hand(iterates, relaxation), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("history", "frequency", "cap"), [(5, 1, 10.0), (5, None, 1e3), (10, 1, 10.0)])
def test_far_smaller_error_than_gradient_descent_on_an_ill_conditioned_quadratic(history, frequency, cap):
    """Eigenvalues 1e-3..1, lr 1, 300 steps: GD leaves an error of ≈29; AA(5) every step ≈0.6, AA(10) every step
    ≈2e-4. The default window of 6 fresh consecutive GD pairs is a Krylov basis so collinear that it needs
    |α| > 10: ≈1.6 with a cap of 1e3, ≈12.5 under the default cap of 10 (tuned for noisy mini-batches)."""
    a, b, x_star = ill_conditioned_quadratic()
    gd, _ = gradient_descent(a, b, 300)
    aa, opt = gradient_descent(a, b, 300, history=history, frequency=frequency, averaging="off", max_coefficient=cap)
    gd_error, aa_error = (gd - x_star).norm().item(), (aa - x_star).norm().item()
    assert gd_error > 20
    assert aa_error < gd_error / 15
    assert opt.statistics()["aa_accepted_fraction"] == 1.0


def test_auto_averaging_switches_on_for_small_noisy_batches_and_stays_off_for_full_batches():
    assert averaging_fraction_on_noisy_regression(batch=1) > 0.5
    assert averaging_fraction_on_noisy_regression(batch=256) < 0.1


def test_max_ratio_criterion_never_fires_on_negative_parameters():
    """AADL's max σ / max μ is negative when every parameter is: the scale-robust default still fires."""
    assert averaging_fraction_on_noisy_regression(batch=1, criterion="max_ratio", negative=True, threshold=0.01) == 0.0
    assert averaging_fraction_on_noisy_regression(batch=1, criterion="norm_ratio", negative=True, threshold=0.01) > 0.5


def test_averaging_on_replaces_the_iterate_by_the_window_mean():
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = AndersonAcceleration(
        torch.optim.SGD([w], lr=0.1), history=50, frequency=10**6, averaging="on", averaging_window=3
    )
    target = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    raw, current = [], torch.zeros(3, dtype=torch.float64)
    for _ in range(6):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
        raw.append(current - 0.1 * 2 * (current - target))  # the plain SGD step from the current point
        current = torch.stack(raw[-3:]).mean(dim=0)
        torch.testing.assert_close(w.detach(), current, rtol=1e-12, atol=1e-12)


def test_the_averaged_and_extrapolated_points_are_the_iterates_so_evaluation_swaps_nothing():
    """The moving average and an accepted extrapolation are written into the parameters and the next base step
    starts from them (its raw iterate is SGD's step from there): they are the iteration's output, not a read-out
    beside it as in Polyak averaging, so the weights a run evaluates are the parameters, unswapped."""
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = AndersonAcceleration(torch.optim.SGD([w], lr=0.1), history=2, averaging="on", averaging_window=3)
    target = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    moved = 0
    for _ in range(12):
        start = w.detach().clone()
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
        newest = (opt._groups[0]["window_slot"] - 1) % 3
        torch.testing.assert_close(opt.state[w]["window"][newest], start - 0.1 * 2 * (start - target))
        moved += not torch.equal(w.detach(), opt.state[w]["window"][newest])  # averaged or extrapolated
        before = w.detach().clone()
        with opt.evaluation_weights():
            assert same_bits(w, before)
    assert opt.counters["accepted"] >= 2 and opt.counters["averaged"] >= 6 and moved >= 8


def test_each_param_group_has_its_own_extrapolation():
    a1, b1, _ = ill_conditioned_quadratic(d=8, seed=2, low=1e-2)
    a2, b2, _ = ill_conditioned_quadratic(d=8, seed=3, low=1e-2)
    x1 = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    x2 = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    opt = AndersonAcceleration(
        torch.optim.SGD([{"params": [x1]}, {"params": [x2]}], lr=0.5), history=3, averaging="off"
    )
    for _ in range(20):
        opt.zero_grad()
        (0.5 * x1 @ a1 @ x1 - b1 @ x1 + 0.5 * x2 @ a2 @ x2 - b2 @ x2).backward()
        opt.step()
    alone1, _ = gradient_descent(a1, b1, 20, lr=0.5, history=3, averaging="off")
    alone2, _ = gradient_descent(a2, b2, 20, lr=0.5, history=3, averaging="off")
    torch.testing.assert_close(x1.detach(), alone1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x2.detach(), alone2, rtol=1e-10, atol=1e-10)


def test_non_finite_extrapolation_falls_back_to_the_plain_iterate():
    a, b, _ = ill_conditioned_quadratic(d=6, seed=4, low=1e-1)
    x = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    opt = AndersonAcceleration(torch.optim.SGD([x], lr=0.5), history=3, frequency=4, averaging="off")
    for step in range(4):
        if step == 3:
            opt.state[x]["x_hist"][0, 0] = float("inf")  # a poisoned history column
        opt.zero_grad()
        (0.5 * x @ a @ x - b @ x).backward()
        before = x.detach().clone()
        opt.step()
    torch.testing.assert_close(x.detach(), before - 0.5 * (a @ before - b))
    assert opt.counters == {**opt.counters, "extrapolations": 1, "accepted": 0}


def test_coefficient_cap_raises_regularization_instead_of_giving_up():
    a, b, _ = ill_conditioned_quadratic()
    x, opt = gradient_descent(a, b, 300, history=5, averaging="off", max_coefficient=2.0)
    stats = opt.statistics()
    assert stats["aa_regularized_fraction"] > 0
    assert stats["aa_accepted_fraction"] == 1.0
    assert torch.isfinite(x).all()


def _safeguarded(losses):
    a, b, _ = ill_conditioned_quadratic(d=10, seed=5, low=1e-2)
    x = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt = AndersonAcceleration(torch.optim.SGD([x], lr=0.5), history=3, averaging="off", safeguard=True)
    for _ in range(12):
        opt.zero_grad()

        def closure():
            loss = 0.5 * x @ a @ x - b @ x
            if torch.is_grad_enabled():
                loss.backward()
                return loss
            return next(losses)

        opt.step(closure)
    return x.detach(), opt


def test_safeguard_rejects_when_the_loss_does_not_decrease():
    x, opt = _safeguarded(itertools.repeat(1.0))  # the extrapolated point never looks better
    assert opt.counters["extrapolations"] > 0 and opt.counters["accepted"] == 0
    a, b, _ = ill_conditioned_quadratic(d=10, seed=5, low=1e-2)
    plain, _ = gradient_descent(a, b, 12, lr=0.5)
    torch.testing.assert_close(x, plain)


def test_safeguard_accepts_when_the_loss_decreases():
    x, opt = _safeguarded(itertools.count(0.0, -1.0))  # every later evaluation is lower
    assert opt.counters["accepted"] == opt.counters["extrapolations"] > 0
    a, b, _ = ill_conditioned_quadratic(d=10, seed=5, low=1e-2)
    unguarded, _ = gradient_descent(a, b, 12, lr=0.5, history=3, averaging="off")
    torch.testing.assert_close(x, unguarded)


def test_safeguard_needs_a_closure():
    x = torch.zeros(2, requires_grad=True)
    opt = AndersonAcceleration(torch.optim.SGD([x], lr=0.1), safeguard=True)
    x.sum().backward()
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_frequency_must_be_a_multiple_of_store_every():
    with pytest.raises(ValueError, match="multiple"):
        AndersonAcceleration(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), store_every=3, frequency=4)


def test_warmup_and_store_every():
    a, b, _ = ill_conditioned_quadratic(d=6, seed=6, low=1e-1)
    _, opt = gradient_descent(a, b, 20, lr=0.5, history=2, store_every=2, frequency=2, warmup=4, averaging="off")
    # 16 steps after warm-up = 8 stored pairs; the first extrapolation needs 2 pairs: 7 extrapolations.
    assert opt.counters["extrapolations"] == 7


def test_channels_last_parameters_and_empty_groups():
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    opt = AndersonAcceleration(torch.optim.SGD(conv.parameters(), lr=0.1), history=2, averaging="auto")
    opt.add_param_group({"params": []})
    for _ in range(7):
        opt.zero_grad()
        conv(torch.randn(2, 3, 6, 6).to(memory_format=torch.channels_last)).square().mean().backward()
        opt.step()
    assert opt.counters["extrapolations"] == 2 and torch.isfinite(conv.weight).all()


def test_a_group_added_mid_block_waits_for_the_next_block():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = AndersonAcceleration(torch.optim.SGD([x], lr=0.1), history=2, store_every=2, averaging="off")

    def step():
        opt.zero_grad()
        ((x - 1) ** 2).sum().add(((y - 2) ** 2).sum()).backward()
        opt.step()

    step()  # block 0 opens
    opt.add_param_group({"params": [y]})
    step()  # block 0 closes: y had no input stored for it, so no pair
    assert [book["pairs"] for book in opt._groups] == [1, 0]
    step()
    step()
    assert [book["pairs"] for book in opt._groups] == [2, 1]


def test_state_follows_a_dtype_change_after_construction():
    model = torch.nn.Linear(3, 1)
    opt = AndersonAcceleration(torch.optim.SGD(model.parameters(), lr=0.1), history=2)
    model.double()
    for _ in range(4):
        opt.zero_grad()
        model(torch.randn(4, 3, dtype=torch.float64)).sum().backward()
        opt.step()
    assert opt.state[model.weight]["g_hist"].dtype == torch.float64


@pytest.mark.parametrize("reset", [False, True])
def test_reset_inner_state_clears_the_base_momentum_after_an_accepted_jump(reset):
    model = tiny_mlp(0)
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt = AndersonAcceleration(base, history=2, averaging="off", reset_inner_state=reset)
    frequency = opt.hyper["frequency"]
    train(model, opt, frequency - 1)
    assert all("momentum_buffer" in base.state[p] for p in model.parameters())
    train(model, opt, 1, start=frequency - 1)  # the step that extrapolates
    assert opt.counters["accepted"] == 1
    assert all(("momentum_buffer" in base.state[p]) != reset for p in model.parameters())
    train(model, opt, 1, start=frequency)  # SGD re-creates the buffer from the next gradient
    assert all("momentum_buffer" in base.state[p] for p in model.parameters())


def test_the_moving_average_restarts_after_an_accepted_jump():
    """A jump is not noise: kept in the window it raises the RSD, and `auto` averaging pulls the parameters back
    toward the iterates before it. Restarted, `auto` on a deterministic quadratic stays close to averaging off."""
    a, b, x_star = ill_conditioned_quadratic()
    errors = {
        label: (gradient_descent(a, b, 300, history=5, **options)[0] - x_star).norm().item()
        for label, options in {
            "off": {"averaging": "off"},
            "restarted": {"averaging": "auto"},
            "kept": {"averaging": "auto", "restart_average": False},
        }.items()
    }
    assert errors["restarted"] < 0.75 * errors["kept"] and errors["restarted"] < 1.2 * errors["off"]


def test_after_a_jump_the_average_is_of_post_jump_iterates_only():
    """The rows averaged after an accepted jump are the iterates since the jump, the newest included."""
    w = torch.zeros(3, requires_grad=True)
    opt = AndersonAcceleration(torch.optim.SGD([w], lr=0.1), history=2, averaging="on", averaging_window=4)
    for step in range(8):
        w.grad = torch.full((3,), float(step + 1))
        jumps = opt.counters["accepted"]
        opt.step()
        if opt.counters["accepted"] > jumps:
            jumped = w.detach().clone()
            w.grad = torch.ones(3)
            opt.step()  # one step after the jump: the window holds this step's iterate, in its first row, alone
            book = opt._groups[0]
            assert book["window_count"] == 1 and book["window_slot"] == 1
            assert torch.equal(opt.state[w]["window"][0], jumped - 0.1)
            return
    raise AssertionError("no extrapolation was accepted")


def test_a_checkpoint_from_before_the_restart_keeps_its_behaviour():
    model = tiny_mlp()
    opt = AndersonAcceleration(torch.optim.SGD(model.parameters(), lr=0.1), history=2)
    state = opt.state_dict()
    del state["anderson"]["hyper"]["restart_average"]  # as saved before the option existed
    fresh = AndersonAcceleration(torch.optim.SGD(tiny_mlp().parameters(), lr=0.1), history=2)
    fresh.load_state_dict(state)
    assert fresh.hyper["restart_average"] is False


class _TwoPassRSD(AndersonAcceleration):
    """The RSD always from the window's deviations (the reference for the kept-row-norm shortcut)."""

    def _rsd_from_sums(self, *args):
        return None


def _noisy_auto_run(optimizer_class, threshold, dtype, lr, steps=120):
    model = tiny_mlp(0).to(dtype)
    opt = optimizer_class(torch.optim.SGD(model.parameters(), lr=lr), history=3, rsd_threshold=threshold)
    two_pass = opt._rsd
    calls = []
    opt._rsd = lambda *args: calls.append(1) or two_pass(*args)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(2, 4, generator=g, dtype=dtype)).pow(2).sum().backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt.counters, len(calls)


@pytest.mark.parametrize(
    ("threshold", "dtype", "lr"),
    [(0.03, torch.float32, 0.2), (0.05, torch.float32, 0.2), (0.1, torch.float32, 0.5), (0.003, torch.float64, 0.05)],
)
def test_the_rsd_from_kept_row_norms_takes_every_decision_the_deviations_take(threshold, dtype, lr):
    """(c − 1)‖σ‖² = Σ_r ‖x_r‖² − c‖μ‖² with the rows' norms kept from when they were written: on a run where some
    steps average and some do not, every decision and every parameter equals the two-pass computation's, and the
    shortcut, not the fallback, decided most steps (τ ≳ 0.02 in float32: below, rounding leaves it to the fallback)."""
    fast, counters, fallbacks = _noisy_auto_run(AndersonAcceleration, threshold, dtype, lr)
    reference, reference_counters, _ = _noisy_auto_run(_TwoPassRSD, threshold, dtype, lr)
    assert 0 < counters["averaged"] < counters["averaging_decisions"]  # both decisions happen
    assert counters == reference_counters
    assert all(torch.equal(a, b) for a, b in zip(fast, reference, strict=True))
    assert fallbacks < counters["averaging_decisions"] // 2


def test_kept_row_norms_resume_exactly_and_are_recomputed_for_an_older_checkpoint():
    def steps(opt, model, g, n):
        for _ in range(n):
            opt.zero_grad()
            model(torch.randn(2, 4, generator=g)).pow(2).sum().backward()
            opt.step()

    def build():
        model = tiny_mlp(0)
        return model, AndersonAcceleration(torch.optim.SGD(model.parameters(), lr=0.05), history=3, rsd_threshold=0.01)

    model, opt = build()
    g = torch.Generator().manual_seed(1)
    steps(opt, model, g, 37)
    saved, model_state, rng = copy.deepcopy((opt.state_dict(), model.state_dict(), g.get_state()))
    steps(opt, model, g, 40)
    for drop in (False, True):
        resumed_model, resumed = build()
        resumed_model.load_state_dict(model_state)
        state = {**saved, "anderson": dict(saved["anderson"])}
        if drop:  # as saved before the norms were kept
            del state["anderson"]["window_squares"]
        resumed.load_state_dict(state)
        steps(resumed, resumed_model, g.set_state(rng), 40)
        assert resumed.counters == opt.counters
        assert all(torch.equal(a, b) for a, b in zip(resumed_model.parameters(), model.parameters(), strict=True))


@pytest.mark.parametrize("width", [1, 100, 16383, 16384, 16385, 49152, 50000])
def test_gram_over_column_pieces_equals_the_matrix_product(width):
    from autoaccel.optim.anderson import _gram

    block = torch.randn(7, width + 3, generator=torch.Generator().manual_seed(width), dtype=torch.float64)
    block = block[:, 3:]  # a non-contiguous slice, as a chunk of the scratch block is
    assert torch.allclose(_gram(block), block @ block.T, rtol=1e-12, atol=1e-9)


def _window_decision(rows, tau):
    """The kept-norm RSD (None: left to the two-pass one) for a window of these float32 rows, and the float64 RSD."""
    from autoaccel.optim.anderson import _squared_norm

    count, n = rows.shape
    w = torch.zeros(n, requires_grad=True)
    opt = AndersonAcceleration(torch.optim.SGD([w], lr=0.0), history=2, averaging_window=count, rsd_threshold=tau)
    opt._buffer(w, "window").copy_(rows)
    squares = torch.stack([_squared_norm(row) for row in rows])
    total = opt._window_sum(w)
    torch.sum(rows, dim=0, out=total)
    shortcut = opt._rsd_from_sums([w], [total], squares.sum(), count)
    exact = rows.double()
    spread = exact.var(dim=0, unbiased=True).sum().sqrt()
    return shortcut, (spread / exact.mean(dim=0).norm()).item()


@pytest.mark.parametrize("count", [2, 4, 5])
@pytest.mark.parametrize("n", [4113, 8209, 32768])
def test_the_kept_norm_rsd_never_decides_against_the_exact_one(count, n):
    """Rows of near-equal values are the worst case for the float32 row norms (their rounding errors all point one
    way): with τ just above or below the float64 RSD, the shortcut either defers or decides as the exact RSD does."""
    g = torch.Generator().manual_seed(count * n)
    cases = [torch.full((count, n), 2.9655) + 0.9 * torch.arange(count, dtype=torch.float32)[:, None]]
    cases.append(2.9655 + 0.5 * torch.randn(count, n, generator=g))
    cases.append(torch.randn(count, n, generator=g) + torch.randn(n, generator=g) * 4)
    for rows in cases:
        _, exact = _window_decision(rows, 0.1)
        for tau in (exact * (1 - 1e-6), exact * (1 + 1e-6), exact * (1 - 1e-4), exact * (1 + 1e-4), exact * 0.5):
            shortcut, _ = _window_decision(rows, tau)
            assert shortcut is None or (shortcut > tau) == (exact > tau), (tau, shortcut, exact)
        shortcut, _ = _window_decision(rows, exact * 0.5)
        assert shortcut is not None and shortcut == pytest.approx(exact, rel=1e-3)  # far from τ: decided directly


def test_the_kept_norm_rsd_defers_where_float32_rounding_could_flip_it():
    """A window found by search where the shortcut's rounding is 1.4× what a 64-ulp band allowed (constant rows,
    errors all one way): at τ a hair above or below the RSD it must defer to the exact computation."""
    values = torch.tensor([1.9757217168807983, 3.6890273094177246, 4.020483016967773])
    rows = values[:, None].expand(3, 12289).contiguous()
    _, exact = _window_decision(rows, 0.1)
    for tau in (exact * (1 - 1e-7), exact * (1 + 1e-7)):
        shortcut, _ = _window_decision(rows, tau)
        assert shortcut is None or (shortcut > tau) == (exact > tau), (tau, shortcut, exact)
