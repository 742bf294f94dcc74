"""build_optimizer, config validation and the `autoaccel optimizers` listing."""

import json

import pytest
import torch

from autoaccel.cli import main
from autoaccel.errors import ConfigError
from autoaccel.optim import (
    TECHNIQUES,
    AdaHessian,
    AdaScale,
    AndersonAcceleration,
    DemonAdam,
    Lookahead,
    build_optimizer,
    evaluation_weights,
    iter_stack,
    validate_config,
)

from helpers import params_of, same_bits, tiny_mlp, train


def _layers(config):
    return [type(o).__name__ for o in iter_stack(build_optimizer(tiny_mlp().parameters(), config))]


def test_every_base_builds_with_its_defaults():
    for name, technique in TECHNIQUES.items():
        if technique.kind != "base":
            continue
        config = {"base": name}
        if technique.section == "demon":
            config["demon"] = {"total_steps": 10}
        assert len(_layers(config)) == 1


def test_wrapping_order_is_fixed_whatever_the_key_order():
    config = {"adascale": {"num_gradients_to_accumulate": 2}, "anderson": {}, "lookahead": {}, "base": "sgd"}
    assert _layers(config) == ["AdaScale", "AndersonAcceleration", "Lookahead", "SGD"]


def test_values_reach_the_optimizers():
    opt = build_optimizer(
        tiny_mlp().parameters(),
        {
            "base": "demon_adam",
            "lr": 3e-4,
            "beta2": 0.99,
            "demon": {"beta_init": 0.95, "total_steps": 50, "variant": "ema"},
            "lookahead": {"k": 7, "alpha": 0.8},
            "anderson": {"history": 4, "averaging": "on", "rsd_threshold": 0.05},
        },
    )
    aa, la, demon = iter_stack(opt)
    assert isinstance(aa, AndersonAcceleration) and aa.hyper["history"] == 4 and aa.hyper["averaging"] == "on"
    assert isinstance(la, Lookahead) and (la.k, la.alpha) == (7, 0.8)
    assert isinstance(demon, DemonAdam) and demon.total_steps == 50
    group = demon.param_groups[0]
    assert (group["lr"], group["beta2"], group["beta_init"], group["variant"]) == (3e-4, 0.99, 0.95, "ema")


def test_adahessian_section_and_betas():
    opt = build_optimizer(
        tiny_mlp().parameters(), {"base": "adahessian", "beta1": 0.8, "adahessian": {"update_each": 2}}
    )
    assert isinstance(opt, AdaHessian) and opt.update_each == 2 and opt.param_groups[0]["beta1"] == 0.8


@pytest.mark.parametrize(
    ("config", "key", "allowed"),
    [
        ({"base": "rmsprop"}, "base", "one of sgd, adam"),
        ({"lr": 0.1}, "base", "one of"),
        ({"base": "adam", "lr": -1.0}, "lr", "> 0"),
        ({"base": "adam", "lr": "fast"}, "lr", "a number"),
        ({"base": "adam", "momentum": 0.9}, "momentum", "allowed keys: "),
        ({"base": "sgd", "anderson": {"history": 0}}, "anderson.history", "≥ 1"),
        ({"base": "sgd", "anderson": {"windows": 3}}, "anderson.windows", "allowed keys: "),
        ({"base": "sgd", "anderson": {"averaging": "sometimes"}}, "anderson.averaging", "'off', 'on', 'auto'"),
        ({"base": "sgd", "lookahead": {"alpha": 0.0}}, "lookahead.alpha", "(0, 1]"),
        ({"base": "sgd", "lookahead": 5}, "lookahead", "a mapping"),
        ({"base": "adam", "adascale": {}}, "adascale", "SGD-family"),
        ({"base": "adahessian", "adascale": {}}, "adascale", "Hessian-vector"),
        ({"base": "adam", "demon": {"beta_init": 0.9}}, "demon", "demon_sgd or demon_adam"),
        ({"base": "demon_sgd", "demon": {"total_steps": 0}}, "demon.total_steps", "≥ 1"),
        ({"base": "demon_sgd", "demon": {"beta_init": 1.0, "total_steps": 5}}, "demon.beta_init", "[0, 1)"),
        ({"base": "sgd", "nesterov": True}, "nesterov", "momentum > 0"),
        ({"base": "adahessian", "adahessian": {"hessian_power": 2}}, "adahessian.hessian_power", "[0, 1]"),
        ({"base": "sgd", "anderson": {"history": 2.5}}, "anderson.history", "an integer"),
        ({"base": "sgd", "anderson": {"safeguard": True}, "adascale": {}}, "anderson.safeguard", "takes no closure"),
    ],
)
def test_bad_configs_name_the_key_the_value_and_what_is_allowed(config, key, allowed):
    with pytest.raises(ConfigError) as info:
        build_optimizer(tiny_mlp().parameters(), config)
    assert info.value.key == key
    assert allowed in info.value.allowed
    assert str(info.value).startswith(f"{key} = ")


def test_config_error_names_the_file_when_given_one():
    with pytest.raises(ConfigError) as info:
        validate_config({"base": "adam", "lr": 0})
    assert str(info.value.in_file("trials/x.yaml")) == "trials/x.yaml: lr = 0.0: a number > 0"


def test_validation_converts_integral_floats_and_keeps_types():
    config = validate_config({"base": "sgd", "lr": 1, "anderson": {"history": 4.0}})
    assert config["lr"] == 1.0 and isinstance(config["lr"], float)
    assert config["anderson"]["history"] == 4 and isinstance(config["anderson"]["history"], int)


def test_null_section_means_absent():
    assert _layers({"base": "adam", "lookahead": None}) == ["Adam"]


def test_adascale_built_from_config_accumulates():
    opt = build_optimizer(tiny_mlp().parameters(), {"base": "sgd", "adascale": {"num_gradients_to_accumulate": 3}})
    assert isinstance(opt, AdaScale) and opt.scale == 3.0


def test_cli_lists_every_technique_with_defaults_and_ranges(capsys):
    assert main(["optimizers"]) == 0
    out = capsys.readouterr().out
    for name in TECHNIQUES:
        assert f"{name} (" in out
    assert "anderson.rsd_threshold" in out and "default 0.1" in out and "demon.total_steps" in out


def test_cli_json_listing(capsys):
    assert main(["optimizers", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(TECHNIQUES)
    history = next(h for h in rows["anderson"]["hyperparameters"] if h["key"] == "anderson.history")
    assert history == {
        "key": "anderson.history",
        "default": 5,
        "allowed": "an integer ≥ 1",
        "help": history["help"],
    }


def test_console_script_is_installed():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = shutil.which("autoaccel") or str(Path(sys.executable).parent / "autoaccel")
    out = subprocess.run([script, "optimizers"], capture_output=True, text=True, check=True).stdout
    assert "lookahead (wrapper)" in out


def test_torch_bases_are_the_torch_classes():
    assert isinstance(build_optimizer(tiny_mlp().parameters(), {"base": "adamw"}), torch.optim.AdamW)


@pytest.mark.parametrize("name", sorted(name for name in TECHNIQUES if name != "lookahead"))
def test_every_technique_but_lookahead_outputs_its_parameters(name):
    """What a run evaluates is the parameters for all but Lookahead (whose output is its slow weights): Demon,
    AdaHessian and AdaScale update them in place, Anderson writes its average and its extrapolation into them, and
    torch's optimizers declare nothing (the protocol's default). Their evaluation weights swap nothing."""
    technique = TECHNIQUES[name]
    config = {"base": name} if technique.kind == "base" else {"base": "sgd", name: {}}
    options = {}
    if technique.section == "demon":
        config["demon"] = {"total_steps": 10}
    if name == "adahessian":
        options = {"create_graph": True}
    if name == "adascale":
        config["adascale"] = {"num_gradients_to_accumulate": 2}
        options = {"micro_batches": 2}
    model = tiny_mlp()
    opt = build_optimizer(model.parameters(), config)
    train(model, opt, 7, **options)
    before = params_of(model)
    assert not all(same_bits(p, q) for p, q in zip(before, params_of(tiny_mlp()), strict=True))  # it trained
    with evaluation_weights(opt):
        assert all(same_bits(p, q) for p, q in zip(model.parameters(), before, strict=True))
