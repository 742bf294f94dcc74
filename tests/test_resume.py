"""Exact resume: N steps, checkpoint, load into freshly built objects, M more steps ≡ N + M steps, bit for bit."""

import pytest
import torch

from autoaccel.optim import (
    AdaHessian,
    AdaScale,
    AndersonAcceleration,
    DemonAdam,
    DemonSGD,
    Lookahead,
    build_optimizer,
)

from helpers import params_of, roundtrip, tiny_convnet, tiny_mlp, train


def _sgd(m):
    return torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)


# name -> (model factory, optimizer factory, training options)
STACKS = {
    "demon_sgd": (tiny_mlp, lambda m: DemonSGD(m.parameters(), lr=0.05, total_steps=9, nesterov=True), {}),
    "demon_adam_paper": (tiny_mlp, lambda m: DemonAdam(m.parameters(), lr=1e-3, total_steps=12), {}),
    "demon_adam_ema": (tiny_mlp, lambda m: DemonAdam(m.parameters(), lr=1e-2, total_steps=12, variant="ema"), {}),
    "adahessian": (tiny_convnet, lambda m: AdaHessian(m.parameters(), lr=0.05, n_samples=2), {"create_graph": True}),
    "adahessian_delayed": (
        tiny_convnet,
        lambda m: AdaHessian(m.parameters(), lr=0.05, update_each=3),
        {"create_graph": True},
    ),
    "lookahead_sgd": (tiny_mlp, lambda m: Lookahead(_sgd(m), k=4, alpha=0.5), {}),
    "adascale_sgd": (tiny_mlp, lambda m: AdaScale(_sgd(m), num_gradients_to_accumulate=3), {"micro_batches": 3}),
    "anderson_adam_auto": (
        tiny_mlp,
        lambda m: AndersonAcceleration(torch.optim.Adam(m.parameters(), lr=0.01), history=3),
        {},
    ),
    "anderson_sgd_on_blocks": (
        tiny_mlp,
        lambda m: AndersonAcceleration(_sgd(m), history=2, store_every=2, frequency=4, warmup=1, averaging="on"),
        {},
    ),
    "anderson_reset_inner_state": (
        tiny_mlp,
        lambda m: AndersonAcceleration(_sgd(m), history=2, averaging="off", reset_inner_state=True),
        {},
    ),
    "anderson_safeguard": (
        tiny_mlp,
        lambda m: AndersonAcceleration(_sgd(m), history=3, safeguard=True, averaging="off"),
        {"closure": True},
    ),
    "anderson(lookahead(demon_adam))": (
        tiny_mlp,
        lambda m: AndersonAcceleration(
            Lookahead(DemonAdam(m.parameters(), lr=1e-2, total_steps=12), k=3), history=3, store_every=3
        ),
        {},
    ),
    "lookahead(adahessian)": (
        tiny_convnet,
        lambda m: Lookahead(AdaHessian(m.parameters(), lr=0.05), k=2),
        {"create_graph": True},
    ),
    "config:adascale(anderson(lookahead(demon_sgd)))": (
        tiny_mlp,
        lambda m: build_optimizer(
            m.parameters(),
            {
                "base": "demon_sgd",
                "lr": 0.05,
                "demon": {"beta_init": 0.95, "total_steps": 10},
                "lookahead": {"k": 2, "alpha": 0.6},
                "anderson": {"history": 2, "averaging": "auto"},
                "adascale": {"num_gradients_to_accumulate": 2},
            },
        ),
        {"micro_batches": 2},
    ),
}


@pytest.mark.parametrize("name", list(STACKS))
def test_exact_resume(name):
    make_model, make_opt, options = STACKS[name]
    n, m = 7, 6

    model = make_model(0)
    opt = make_opt(model)
    train(model, opt, n + m, **options)
    uninterrupted = params_of(model)

    model = make_model(0)
    opt = make_opt(model)
    train(model, opt, n, **options)
    checkpoint = roundtrip({"model": model.state_dict(), "optimizer": opt.state_dict()})

    fresh_model = make_model(1)  # different initial weights: everything must come from the checkpoint
    fresh_model.load_state_dict(checkpoint["model"])
    fresh_opt = make_opt(fresh_model)
    fresh_opt.load_state_dict(checkpoint["optimizer"])
    train(fresh_model, fresh_opt, m, start=n, **options)

    for p, q in zip(params_of(fresh_model), uninterrupted, strict=True):
        assert torch.equal(p, q), f"{name}: resumed run differs by {(p - q).abs().max().item():g}"


@pytest.mark.parametrize("name", ["lookahead_sgd", "anderson_adam_auto", "adascale_sgd"])
def test_state_dict_is_keyed_by_position_not_identity(name):
    make_model, make_opt, options = STACKS[name]
    model = make_model(0)
    opt = make_opt(model)
    train(model, opt, 3, **options)
    state = opt.state_dict()
    assert set(state["state"]) <= set(range(len(list(model.parameters()))))
    assert "inner" in state and "param_groups" in state


def test_loading_a_foreign_state_dict_is_a_clear_error():
    model = tiny_mlp()
    plain = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="Lookahead"):
        Lookahead(torch.optim.SGD(model.parameters(), lr=0.1)).load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="demon"):
        DemonSGD(model.parameters(), lr=0.1, total_steps=3).load_state_dict(plain.state_dict())


def test_anderson_refuses_a_checkpoint_with_another_history():
    model = tiny_mlp()
    saved = AndersonAcceleration(_sgd(model), history=3).state_dict()
    with pytest.raises(ValueError, match="history"):
        AndersonAcceleration(_sgd(model), history=4).load_state_dict(saved)
