"""Lookahead against Algorithm 1 and against pytorch-optimizer's (paper-exact) implementation, and evaluated on
its output, the slow weights φ: swapped in bit for bit, through nested wrappers, checkpoints and the trial loop."""

import pytest
import torch

from autoaccel.optim import AndersonAcceleration, Lookahead, build_optimizer, evaluation_weights, iter_stack
from autoaccel.run import CHECKPOINT, Trial, run_trial

from helpers import interrupted_and_resumed, params_of, roundtrip, same_bits, tiny_mlp, train, without_time


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


def _slow(opt: Lookahead) -> list[torch.Tensor]:
    return [opt.state[p]["slow"].clone() for p in opt._params()]


def _all_differ(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_evaluation_weights_are_the_slow_weights_and_the_fast_ones_come_back_bit_for_bit():
    model = tiny_mlp()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=4, alpha=0.5)
    with opt.evaluation_weights():  # before the first step φ_0 is the current weights: nothing to swap
        assert all(same_bits(p, q) for p, q in zip(model.parameters(), params_of(tiny_mlp()), strict=True))
    train(model, opt, 6)  # two steps past a sync: fast and slow differ
    with torch.no_grad():
        next(model.parameters())[0, 0] = -0.0  # a bit pattern that torch.equal cannot tell from 0.0
    fast, slow = params_of(model), _slow(opt)
    assert _all_differ(fast, slow)
    with opt.evaluation_weights():
        assert all(same_bits(p, s) for p, s in zip(model.parameters(), slow, strict=True))
    assert all(same_bits(p, f) for p, f in zip(model.parameters(), fast, strict=True))
    with pytest.raises(KeyError), evaluation_weights(opt):  # an evaluation that fails puts θ back too
        raise KeyError("the evaluation failed")
    assert all(same_bits(p, f) for p, f in zip(model.parameters(), fast, strict=True))
    assert all(same_bits(a, b) for a, b in zip(_slow(opt), slow, strict=True))  # φ itself untouched


def test_no_step_and_no_load_inside_the_evaluation_weights():
    """A step there would train φ and be overwritten by θ on exit; a load would be undone by it."""
    model = tiny_mlp()
    opt = AndersonAcceleration(Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=4), history=2)
    train(model, opt, 6)
    saved, before = opt.state_dict(), params_of(model)
    with opt.evaluation_weights():
        for layer in iter_stack(opt):
            if isinstance(layer, torch.optim.SGD):
                continue
            with pytest.raises(RuntimeError, match=r"step\(\) inside evaluation_weights\(\)"):
                train(model, layer, 1)
        with pytest.raises(RuntimeError, match=r"load_state_dict\(\) inside evaluation_weights\(\)"):
            opt.load_state_dict(saved)
    assert all(same_bits(p, q) for p, q in zip(model.parameters(), before, strict=True))
    train(model, opt, 1)  # outside, it trains again
    assert _all_differ(params_of(model), before)


def test_a_checkpoint_inside_or_around_the_evaluation_resumes_exactly():
    """Inside, the model's state holds φ (what an evaluation exports), and the optimizer's also the training weights
    θ it put aside: loaded model first, optimizer second, they put θ back, and N + M steps are bit for bit N, a
    checkpoint taken inside, then M. Around it (before or after), the state dict is the one it always was."""
    n, m = 6, 5

    def build(seed: int) -> tuple[torch.nn.Module, Lookahead]:
        model = tiny_mlp(seed)
        return model, Lookahead(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), k=4, alpha=0.5)

    model, opt = build(0)
    train(model, opt, n + m)
    uninterrupted = params_of(model)

    model, opt = build(0)
    train(model, opt, n)
    fast, slow = params_of(model), _slow(opt)
    before = roundtrip(opt.state_dict())
    with opt.evaluation_weights():
        inside = roundtrip({"model": model.state_dict(), "optimizer": opt.state_dict()})
    after = roundtrip(opt.state_dict())
    assert all(same_bits(v, s) for v, s in zip(inside["model"].values(), slow, strict=True))
    assert all(same_bits(v, f) for v, f in zip(inside["optimizer"]["training_weights"].values(), fast, strict=True))
    assert "training_weights" not in before and "training_weights" not in after
    for state in (after, {k: v for k, v in inside["optimizer"].items() if k != "training_weights"}):
        assert state.keys() == before.keys() and state["lookahead"] == before["lookahead"]
        for index, saved in before["state"].items():
            assert same_bits(state["state"][index]["slow"], saved["slow"])
        for index, saved in before["inner"]["state"].items():
            assert same_bits(state["inner"]["state"][index]["momentum_buffer"], saved["momentum_buffer"])

    fresh_model, fresh_opt = build(1)
    fresh_model.load_state_dict(inside["model"])
    fresh_opt.load_state_dict(inside["optimizer"])
    assert all(same_bits(p, f) for p, f in zip(fresh_model.parameters(), fast, strict=True))
    train(fresh_model, fresh_opt, m, start=n)
    assert all(same_bits(p, q) for p, q in zip(fresh_model.parameters(), uninterrupted, strict=True))


@pytest.mark.parametrize(
    ("config", "options"),
    [
        ({"base": "sgd", "lr": 0.05, "momentum": 0.9, "lookahead": {"k": 4}, "anderson": {"history": 2}}, {}),
        (
            {
                "base": "demon_sgd",
                "lr": 0.05,
                "demon": {"total_steps": 20},
                "lookahead": {"k": 4},
                "anderson": {"history": 2, "averaging": "on"},
                "adascale": {"num_gradients_to_accumulate": 2},
            },
            {"micro_batches": 2},
        ),
    ],
    ids=["anderson(lookahead(sgd))", "adascale(anderson(lookahead(demon_sgd)))"],
)
def test_outer_layers_that_output_their_parameters_pass_lookaheads_slow_weights_on(config, options):
    model = tiny_mlp()
    opt = build_optimizer(model.parameters(), config)
    (lookahead,) = [layer for layer in iter_stack(opt) if isinstance(layer, Lookahead)]
    train(model, opt, 7, **options)
    fast, slow = params_of(model), _slow(lookahead)
    assert _all_differ(fast, slow)
    with evaluation_weights(opt):
        assert all(same_bits(p, s) for p, s in zip(model.parameters(), slow, strict=True))
    assert all(same_bits(p, f) for p, f in zip(model.parameters(), fast, strict=True))


def test_nested_lookaheads_are_evaluated_on_the_outer_slow_weights_and_resume_exactly():
    """Lookahead(Lookahead(SGD)): the outer φ is the stack's output. Each layer puts aside what the parameters held
    when it swapped; a checkpoint inside restores the inner record (the true θ) last, so it resumes exactly."""

    def build(seed: int) -> tuple[torch.nn.Module, Lookahead]:
        model = tiny_mlp(seed)
        inner = Lookahead(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), k=2, alpha=0.5)
        return model, Lookahead(inner, k=3, alpha=0.7)

    model, opt = build(0)
    train(model, opt, 12)
    uninterrupted = params_of(model)

    model, opt = build(0)
    train(model, opt, 7)
    fast, outer, inner = params_of(model), _slow(opt), _slow(opt.optimizer)
    assert _all_differ(fast, outer) and _all_differ(fast, inner) and _all_differ(outer, inner)
    with opt.evaluation_weights():
        assert all(same_bits(p, s) for p, s in zip(model.parameters(), outer, strict=True))
        with opt.optimizer.evaluation_weights():  # re-entering a layer already swapped changes nothing
            assert all(same_bits(p, s) for p, s in zip(model.parameters(), outer, strict=True))
        inside = roundtrip({"model": model.state_dict(), "optimizer": opt.state_dict()})
    assert all(same_bits(p, f) for p, f in zip(model.parameters(), fast, strict=True))

    fresh_model, fresh_opt = build(1)
    fresh_model.load_state_dict(inside["model"])
    fresh_opt.load_state_dict(inside["optimizer"])
    train(fresh_model, fresh_opt, 5, start=7)
    assert all(same_bits(p, q) for p, q in zip(fresh_model.parameters(), uninterrupted, strict=True))


QUAD = {"name": "quadratic", "dim": 8, "samples": 96, "condition": 50.0}


def _trial_config(k: int, epochs: int = 5) -> dict:
    return {
        "workload": QUAD,
        "optimizer": {"base": "sgd", "lr": 0.2, "momentum": 0.9, "lookahead": {"k": k, "alpha": 0.5}},
        "budget": {"epochs": epochs, "batch_size": 16},  # 6 steps an epoch
        "seed": 3,
        "device": "cpu",
    }


def test_with_k_beyond_the_run_every_epoch_reports_the_untrained_model_and_resumes_exactly(tmp_path):
    """φ never syncs, so it stays φ_0 = θ_0: every epoch, and the final metric, are the untrained model's, while θ
    trains (its training loss falls); a run cut off after epoch 2 and resumed gives the same history bit for bit,
    and its checkpoint holds θ, not the evaluated φ."""
    config = _trial_config(k=10**6)
    untrained = Trial(config).setup
    untrained.model.eval()
    metric = untrained.workload.evaluate(untrained.model)[untrained.workload.metric]

    history = []
    result = run_trial(config, report=lambda m, _: history.append(m), checkpoint_dir=tmp_path / "straight")
    assert [h["metric"] for h in history] == [metric] * 5 and result["metric"] == result["best_metric"] == metric
    losses = [h["train_loss"] for h in history]
    assert losses[-1] < losses[0] / 2  # the fast weights do train

    resumed = interrupted_and_resumed(config, tmp_path / "resumed", after_epoch=2)
    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    assert without_time(a["history"]) == without_time(b["history"])
    assert without_time([resumed]) == without_time([result])
    initial = untrained.model.state_dict()
    for key, value in b["model"].items():
        assert same_bits(value, a["model"][key]) and not torch.equal(value, initial[key])  # θ, trained


def test_the_trial_reports_every_epoch_and_its_final_metric_on_the_slow_weights():
    """k = 4 at 6 steps an epoch: each epoch ends two steps past a sync, where θ ≠ φ. The metric is φ's."""
    trial = Trial(_trial_config(k=4, epochs=3))
    history = list(trial.epochs())
    model, workload, opt = trial.setup.model, trial.workload, trial.setup.optimizer
    on_fast = workload.evaluate(model)[workload.metric]
    with evaluation_weights(opt):
        on_slow = workload.evaluate(model)[workload.metric]
    assert history[-1]["metric"] == trial.summary()["metric"] == on_slow != on_fast
