"""The wrappers behave as torch optimizers: schedulers, shared param groups, hooks, zero_grad, deepcopy."""

import copy
import warnings

import pytest
import torch

from autoaccel.optim import (
    AdaHessian,
    AdaScale,
    AndersonAcceleration,
    DemonAdam,
    DemonSGD,
    Lookahead,
    iter_stack,
    optimizer_statistics,
)

from helpers import tiny_mlp, train

WRAPPERS = {
    "lookahead": lambda opt: Lookahead(opt, k=2),
    "anderson": lambda opt: AndersonAcceleration(opt, history=2),
    "adascale": lambda opt: AdaScale(opt, num_gradients_to_accumulate=2),
    "anderson(lookahead)": lambda opt: AndersonAcceleration(Lookahead(opt, k=2), history=2),
}


def _micro(name):
    return 2 if "adascale" in name else 1


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_param_groups_are_the_inner_optimizers(name):
    model = tiny_mlp()
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = WRAPPERS[name](inner)
    assert opt.param_groups is inner.param_groups
    opt.param_groups[0]["lr"] = 0.01
    assert inner.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_lr_scheduler_drives_the_inner_optimizer(name):
    model = tiny_mlp()
    inner = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = WRAPPERS[name](inner)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for step in range(5):
            train(model, opt, 1, start=step, micro_batches=_micro(name))
            scheduler.step()
            seen.append(inner.param_groups[0]["lr"])
    assert seen == pytest.approx([0.1, 0.05, 0.05, 0.025, 0.025])


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_step_hooks_fire_once_per_step(name):
    model = tiny_mlp()
    opt = WRAPPERS[name](torch.optim.SGD(model.parameters(), lr=0.1))
    calls = []
    opt.register_step_post_hook(lambda *_: calls.append(1))
    train(model, opt, 3, micro_batches=_micro(name))
    assert len(calls) == 3


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_zero_grad_and_add_param_group(name):
    model = tiny_mlp()
    extra = torch.nn.Linear(2, 2)
    opt = WRAPPERS[name](torch.optim.SGD(model.parameters(), lr=0.1))
    opt.add_param_group({"params": extra.parameters(), "lr": 0.2})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["lr"] == 0.2
    for _step in range(3):
        for _ in range(_micro(name)):
            (model(torch.ones(1, 4)).sum() + extra(torch.ones(1, 2)).sum()).backward()
        opt.step()
        opt.zero_grad()
        assert all(p.grad is None for p in extra.parameters())
    assert not torch.equal(extra.weight, torch.nn.Linear(2, 2).weight)


def test_deepcopy_and_repr_and_stack():
    model = tiny_mlp()
    opt = AndersonAcceleration(Lookahead(torch.optim.Adam(model.parameters()), k=3), history=2)
    clone = copy.deepcopy(opt)
    assert isinstance(clone.optimizer, Lookahead)
    assert [type(o).__name__ for o in iter_stack(opt)] == ["AndersonAcceleration", "Lookahead", "Adam"]
    assert "history=2" in repr(opt) and "k=3" in repr(opt) and "Adam" in repr(opt)
    train(model, opt, 3)
    assert set(optimizer_statistics(opt)) >= {"aa_accepted_fraction", "aa_averaging_fraction"}


def test_wrapping_a_non_optimizer_is_a_type_error():
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        Lookahead([torch.zeros(1)])


@pytest.mark.parametrize(
    ("make", "create_graph"),
    [
        (lambda ps: DemonSGD(ps, lr=0.1, total_steps=5), False),
        (lambda ps: DemonAdam(ps, lr=0.1, total_steps=5), False),
        (lambda ps: AdaHessian(ps, lr=0.1), True),
    ],
)
def test_bases_evaluate_the_closure_with_gradients_enabled(make, create_graph):
    """torch's closure protocol: step(closure) runs it with grad enabled, uses its gradients, returns its loss."""
    w = torch.ones(3, requires_grad=True)
    opt = make([w])

    def closure():
        opt.zero_grad()
        loss = ((w - 2.0) ** 2).sum()
        loss.backward(create_graph=create_graph)
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 3.0
    assert (w > 1.0).all()  # moved towards 2


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: DemonSGD(ps, lr=0.1, total_steps=10),
        lambda ps: DemonAdam(ps, lr=0.1, total_steps=10),
        lambda ps: AdaHessian(ps, lr=0.1, update_each=100),
    ],
)
def test_lr_scheduler_drives_the_bases(make):
    """A LambdaLR run equals a run whose lr is set by hand to the same values, and differs from a constant lr."""

    def run(schedule):
        w = torch.zeros(2, requires_grad=True)
        opt = make([w])
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5**k) if schedule == "scheduler" else None
        for k in range(4):
            if schedule == "by hand":
                opt.param_groups[0]["lr"] = 0.1 * 0.5**k
            opt.zero_grad()
            (w - torch.tensor([1.0, -2.0])).pow(2).sum().backward(create_graph=isinstance(opt, AdaHessian))
            opt.step()
            if scheduler:
                scheduler.step()
        return w.detach()

    scheduled = run("scheduler")
    assert torch.equal(scheduled, run("by hand"))
    assert not torch.equal(scheduled, run("constant"))


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_deepcopy_and_pickle_after_a_scheduler_is_attached(name):
    """A copy steps its own parameters, not the original's through the scheduler's bound step; it pickles."""
    import pickle

    model = tiny_mlp()
    opt = WRAPPERS[name](torch.optim.SGD(model.parameters(), lr=0.1))
    torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    opt.register_step_post_hook(lambda *_: None)
    train(model, opt, 2, micro_batches=_micro(name))
    model_copy, opt_copy = copy.deepcopy((model, opt))
    before = [p.detach().clone() for p in model.parameters()]
    train(model_copy, opt_copy, 2, start=2, micro_batches=_micro(name))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert not all(torch.equal(p, b) for p, b in zip(model_copy.parameters(), before, strict=True))
    if isinstance(opt_copy, AdaScale):
        assert opt_copy.gain() > 1.0  # its hooks were registered on the copied parameters
    assert pickle.loads(pickle.dumps(opt)).state_dict()["param_groups"][0]["lr"] == opt.param_groups[0]["lr"]


@pytest.mark.parametrize(
    "build",
    [
        lambda m: DemonSGD(m.parameters(), lr=0.1, beta_init=0.9, total_steps=10),
        lambda m: DemonAdam(m.parameters(), lr=0.01, total_steps=10),
        lambda m: AdaHessian(m.parameters(), lr=0.05, seed=1),
    ],
    ids=["demon_sgd", "demon_adam", "adahessian"],
)
def test_a_copied_or_unpickled_base_continues_exactly_as_the_original(build):
    """torch's Optimizer.__getstate__ keeps only defaults, state and param groups: a copy lost Demon's schedule and
    AdaHessian's step count and probe generator, and crashed at its next step."""
    import pickle

    graph = isinstance(build(tiny_mlp()), AdaHessian)
    model = tiny_mlp()
    opt = build(model)
    train(model, opt, 3, create_graph=graph)
    for copied in (copy.deepcopy((model, opt)), pickle.loads(pickle.dumps((model, opt)))):
        model_copy, opt_copy = copied
        train(model_copy, opt_copy, 2, start=3, create_graph=graph)
        reference_model, reference_opt = copy.deepcopy((model, opt))
        train(reference_model, reference_opt, 2, start=3, create_graph=graph)
        for a, b in zip(model_copy.parameters(), reference_model.parameters(), strict=True):
            assert torch.equal(a, b)
    train(model, opt, 2, start=3, create_graph=graph)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model_copy.parameters(), strict=True))
