"""Search spaces: loading and validation, define-by-run conditionals with real Optuna, nesting, the shipped files."""

import json
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autoaccel.errors import ConfigError
from autoaccel.sweep.space import check, load_space, sample, show, to_config

SPACES = Path(__file__).parent.parent / "search_spaces"

ANDERSON = """
name: anderson_adam
params:
  base: {value: adam}
  lr: {float: [1.0e-4, 1.0e-1], log: true}
  anderson.history: {int: [2, 10]}
  anderson.averaging: {choice: ["off", "on", auto]}
  anderson.averaging_window: {int: [2, 20], log: true, when: {anderson.averaging: ["on", auto]}}
  anderson.rsd_threshold: {float: [1.0e-3, 1.0], log: true, when: {anderson.averaging: auto}}
  _decay: {choice: [false, true]}
  weight_decay: {float: [1.0e-6, 1.0e-2], log: true, when: {_decay: true}}
  lookahead: {value: null}
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _ask(space, sampler=None):
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    return trial, space.suggest(trial)


# --- conditionals, nesting, families ------------------------------------------------------------------------------


def test_a_conditional_parameter_is_drawn_exactly_when_its_condition_holds(tmp_path):
    space = load_space(_write(tmp_path, "a.yaml", ANDERSON))
    samples = sample(space, 200, seed=1)
    seen = {s.params["anderson.averaging"] for s in samples} | {s.params["_decay"] for s in samples}
    assert seen == {"off", "on", "auto", False, True}
    for s in samples:
        averaging = s.params["anderson.averaging"]
        assert ("rsd_threshold" in s.optimizer["anderson"]) == (averaging == "auto")
        assert ("averaging_window" in s.optimizer["anderson"]) == (averaging in ("on", "auto"))
        assert ("weight_decay" in s.optimizer) == s.params["_decay"]


def test_optuna_sees_exactly_the_active_drawn_parameters(tmp_path):
    space = load_space(_write(tmp_path, "a.yaml", ANDERSON))
    fixed = {p.name for p in space.params if p.kind == "value"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(60):
        trial = study.ask()
        flat = space.suggest(trial)
        assert set(trial.params) == set(flat) - fixed
        assert fixed <= set(flat)  # fixed values come back as constants (OptunaSearch merges them)


def test_to_config_nests_dotted_names_and_splits_budget_family_and_helpers():
    flat = {
        "family": "lookahead_adam",
        "base@lookahead_adam": "adam",
        "lr@lookahead_adam": 0.01,
        "_decay@lookahead_adam": False,
        "lookahead.k@lookahead_adam": 5,
        "lookahead.alpha@lookahead_adam": 0.5,
        "anderson.frequency": None,
        "budget.batch_size": 40,
    }
    drawn = to_config(flat)
    assert drawn.family == "lookahead_adam"
    assert drawn.optimizer == {
        "base": "adam",
        "lr": 0.01,
        "lookahead": {"k": 5, "alpha": 0.5},
        "anderson": {"frequency": None},
    }
    assert drawn.budget == {"batch_size": 40}
    assert drawn.params == flat
    assert to_config({"base": "sgd"}).family is None


def test_a_null_section_and_its_keys_conflict():
    with pytest.raises(ConfigError, match=r"lookahead\.k = 5: no lookahead\.k while lookahead is None"):
        to_config({"base": "adam", "lookahead": None, "lookahead.k": 5})


def test_families_draw_one_family_with_its_own_tagged_parameters():
    space = load_space(SPACES / "combined.yaml")
    samples = sample(space, 120, seed=0)
    assert {s.family for s in samples} == set(space.families)
    for s in samples:
        assert all(name == "family" or name.endswith(f"@{s.family}") for name in s.params)
        assert "family" not in s.optimizer
    bases = {s.family: s.optimizer["base"] for s in samples}
    assert bases["anderson_sgd"] == "sgd" and bases["anderson_adam"] == "adam" and bases["adascale_sgd"] == "sgd"
    lrs = {p.name: p.bounds for p in space.params if p.key == "lr"}
    assert lrs["lr@adahessian"] == (1e-2, 1.0) and lrs["lr@adam"] == (1e-4, 1e-1)  # each family keeps its range


def test_shared_params_come_after_family_and_may_depend_on_it(tmp_path):
    _write(tmp_path, "sgd.yaml", "params: {base: {value: sgd}, lr: {float: [1.0e-3, 1.0], log: true}}")
    path = _write(
        tmp_path,
        "c.yaml",
        """
        params:
          budget.batch_size: {choice: [8, 40], when: {family: sgd}}
        families:
          sgd: sgd.yaml
          adam: {params: {base: {value: adam}, _x: {choice: [1, 2]}, beta1: {float: [0.8, 0.9], when: {_x: 2}}}}
        """,
    )
    space = load_space(path)
    names = ["family", "budget.batch_size", "base@sgd", "lr@sgd", "base@adam", "_x@adam", "beta1@adam"]
    assert [p.name for p in space.params] == names
    for s in sample(space, 40, seed=0):
        assert ("batch_size" in s.budget) == (s.family == "sgd")
        assert ("beta1" in s.optimizer) == (s.params.get("_x@adam") == 2)


def test_the_same_seed_draws_the_same_samples():
    space = load_space(SPACES / "combined.yaml")
    assert sample(space, 15, seed=7) == sample(space, 15, seed=7)
    assert sample(space, 15, seed=7) != sample(space, 15, seed=8)


# --- includes -----------------------------------------------------------------------------------------------------


def test_includes_come_first_and_an_override_keeps_its_place(tmp_path):
    _write(tmp_path, "parts/a.yaml", "params: {base: {value: sgd}, lr: {float: [0.1, 1.0]}, momentum: {value: 0.5}}")
    _write(tmp_path, "b.yaml", "include: [parts/a.yaml]\nparams: {lr: {value: 0.3}, weight_decay: {value: 0.1}}")
    c = _write(
        tmp_path, "c.yaml", "include: [b.yaml]\nparams: {momentum: {float: [0.0, 0.9]}, nesterov: {value: false}}"
    )
    space = load_space(c)
    assert [p.name for p in space.params] == ["base", "lr", "momentum", "weight_decay", "nesterov"]
    by_name = {p.name: p for p in space.params}
    assert by_name["lr"].kind == "value" and by_name["lr"].value == 0.3
    assert by_name["momentum"].kind == "float" and by_name["momentum"].source == str(c)
    assert by_name["lr"].source.endswith("b.yaml") and by_name["base"].source.endswith("a.yaml")
    assert space.name == "c"
    _write(tmp_path, "d.yaml", "params: {lr: {value: 0.4}, eps: {value: 1.0e-8}}")
    later = load_space(_write(tmp_path, "e.yaml", "include: [b.yaml, d.yaml]"))  # a later include wins, in place
    assert [(p.name, p.value) for p in later.params][1:] == [
        ("lr", 0.4),
        ("momentum", 0.5),
        ("weight_decay", 0.1),
        ("eps", 1e-8),
    ]


def test_a_fixed_override_switches_a_branch_off(tmp_path):
    path = _write(tmp_path, "q.yaml", "include: [base_sgd.yaml]\nparams: {_decay: {value: false}}")
    (tmp_path / "base_sgd.yaml").write_text((SPACES / "base_sgd.yaml").read_text())
    space = load_space(path)
    assert "weight_decay" not in {p.name for p in space.params}
    assert all("weight_decay" not in s.optimizer for s in sample(space, 20))


# --- errors: each names the file, the key, the value and what is allowed ------------------------------------------

ERRORS = [
    ("nmae: x\n", "nmae", "x", "unknown top-level key"),
    ("params: {lr: {flaot: [0.1, 1.0]}}", "params.lr.flaot", [0.1, 1.0], "one of float, int, choice, value"),
    ("params: {lr: {log: true}}", "params.lr", {"log": True}, "exactly one of float, int, choice, value"),
    ("params: {lr: 0.1}", "params.lr", 0.1, "a mapping with one of float"),
    ("params: {lr: {float: [0.1, 0.01]}}", "params.lr.float", [0.1, 0.01], "low < high"),
    ("params: {lr: {float: [0.1, 0.1]}}", "params.lr.float", [0.1, 0.1], "low < high"),
    ("params: {lr: {float: [1e-4, 1e-1]}}", "params.lr.float", ["1e-4", "1e-1"], "write 1.0e-4"),
    ("params: {weight_decay: {float: [0.0, 0.1], log: true}}", "params.weight_decay.float", [0.0, 0.1], "low > 0"),
    ("params: {anderson.history: {int: [1.5, 4]}}", "params.anderson.history.int", [1.5, 4], "two integers"),
    ("params: {anderson.history: {int: [1, 8], step: 2}}", "params.anderson.history.int", [1, 8], "multiple of step"),
    ("params: {anderson.history: {int: [1, 9], log: true, step: 2}}", "params.anderson.history.step", 2, "without log"),
    ("params: {lr: {float: [0.1, 1.0], step: 0.1}}", "params.lr.step", 0.1, "with int"),
    ("params: {base: {choice: [], log: true}}", "params.base.log", True, "only with float or int"),
    ("params: {base: {choice: []}}", "params.base.choice", [], "non-empty"),
    ("params: {base: {choice: [sgd, sgd]}}", "params.base.choice", ["sgd", "sgd"], "distinct"),
    ("params: {base: {choice: [[sgd]]}}", "params.base.choice", ["sgd"], "scalars"),
    ("params: {base: {choice: [sgd, rmsprop]}}", "params.base.choice", "rmsprop", "one of 'sgd', 'adam'"),
    ("params: {anderson.histroy: {int: [1, 8]}}", "params.anderson.histroy", "anderson.histroy", "did you mean"),
    ("params: {lookahead.alpha: {float: [0.3, 1.5]}}", "params.lookahead.alpha.float", 1.5, "a number in (0, 1]"),
    ("params: {lookahead.k: {float: [2, 10]}}", "params.lookahead.k.float", [2.0, 10.0], "an int range"),
    ("params: {anderson.averaging: {choice: [off, on]}}", "params.anderson.averaging.choice", False, "'off'"),
    ("params: {demon.total_steps: {value: 100}}", "params.demon.total_steps", "demon.total_steps", "the trial"),
    ("params: {lookahead: {choice: [null]}}", "params.lookahead", "one of null", "a whole section"),
    ("params: {lookahead: {value: {k: 5, beta: 1}}}", "params.lookahead.value.beta", "lookahead.beta", "k, alpha"),
    ("params: {family: {choice: [a]}}", "params.family", {"choice": ["a"]}, "reserved"),
    (
        "params: {lr: {float: [0.1, 1.0], when: {nothing: 1}}}",
        "params.lr.when.nothing",
        "nothing",
        "a parameter; earlier: none",
    ),
    (
        "params: {lr: {float: [0.1, 1.0], when: {_x: 1}}, _x: {choice: [1, 2]}}",
        "params.lr.when._x",
        "_x",
        "a parameter defined earlier",
    ),
    (
        "params: {anderson.averaging: {choice: ['off', auto]},"
        " anderson.warmup: {value: 1, when: {anderson.averaging: off}}}",
        "params.anderson.warmup.when.anderson.averaging",
        False,
        "quote off/on",
    ),
    ("params: {_x: {int: [1, 3]}, lr: {value: 0.1, when: {_x: 7}}}", "params.lr.when._x", 7, "int [1, 3]"),
    ("params: {lr: {value: 0.1}, lr: {value: 0.2}}", "yaml", "duplicate key 'lr'", "unique keys"),
    ("[1, 2]", "space", [1, 2], "a mapping with keys"),
    ("name: 3", "name", 3, "a string"),
    ("include: missing.yaml", "include", "missing.yaml", "a list of file paths"),
    ("include: [missing.yaml]", "include", "missing.yaml", "an existing file"),
    ("include: [space.yaml]", "include", "space.yaml", "no include cycle (space.yaml → space.yaml)"),
    ("families: {Adam: {params: {}}}", "families.Adam", "Adam", "a lower-case identifier"),
    ("families: {adam: {param: {}}}", "families.adam.param", {}, "one of include, params"),
    ("families: {adam: [x.yaml]}", "families.adam", ["x.yaml"], "a file path or a mapping"),
    ("families: {adam: nope.yaml}", "families.adam.include", "nope.yaml", "an existing file"),
    (
        "params: {lr: {value: 0.1}}\nfamilies: {adam: {params: {lr: {value: 0.2}}}}",
        "families.adam.params.lr",
        "lr",
        "shared params do not set",
    ),
    (
        "families: {adam: {params: {lr: {float: [0.1, 1.0], when: {_y: 1}}, _y: {choice: [1]}}}}",
        "families.adam.params.lr.when._y",
        "_y",
        "defined earlier",
    ),
]


@pytest.mark.parametrize(("text", "key", "value", "allowed"), ERRORS, ids=[e[1] + ":" + e[3] for e in ERRORS])
def test_every_load_error_names_file_key_value_and_what_is_allowed(tmp_path, text, key, value, allowed):
    path = _write(tmp_path, "space.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    error = caught.value
    assert (error.source, error.key) == (str(path), key)
    if key != "yaml":
        assert error.value == value
    else:
        assert value in error.value
    assert allowed in error.allowed
    assert str(error).startswith(f"{path}: {key} = ")


def test_an_include_cycle_and_an_included_file_with_families_are_errors(tmp_path):
    _write(tmp_path, "a.yaml", "include: [b.yaml]")
    _write(tmp_path, "b.yaml", "include: [a.yaml]\nparams: {base: {value: sgd}}")
    with pytest.raises(ConfigError, match=r"b\.yaml: include = 'a\.yaml': no include cycle \(a\.yaml → b\.yaml → a"):
        load_space(tmp_path / "a.yaml")
    _write(tmp_path, "f.yaml", "families: {sgd: {params: {base: {value: sgd}}}}")
    path = _write(tmp_path, "g.yaml", "include: [f.yaml]")
    with pytest.raises(ConfigError, match=r"f\.yaml: families = \['sgd'\]: only in the space that is loaded"):
        load_space(path)


def test_an_error_in_an_included_file_names_that_file(tmp_path):
    bad = _write(tmp_path, "parts/bad.yaml", "params: {lookahead.k: {int: [0, 5]}}")
    path = _write(tmp_path, "space.yaml", "include: [parts/bad.yaml]")
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    assert caught.value.source == str(bad.resolve())
    assert (caught.value.key, caught.value.value) == ("params.lookahead.k.int", 0)


def test_a_missing_space_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="an existing search-space file"):
        load_space(tmp_path / "nope.yaml")


# --- check: impossible stacks, reported with the sample -----------------------------------------------------------


def test_check_reports_an_impossible_stack_with_its_sample(tmp_path):
    # a rule across keys that only validating a whole sample sees (AdaScale's step takes no closure)
    text = (
        "params: {base: {value: sgd}, adascale.num_gradients_to_accumulate: {value: 2},"
        " anderson.safeguard: {value: true}}"
    )
    path = _write(tmp_path, "s.yaml", text)
    with pytest.raises(ConfigError) as caught:
        check(load_space(path), 5)
    error = caught.value
    assert (error.source, error.key) == (str(path), "anderson.safeguard")
    assert "false under adascale" in error.allowed
    assert 'sample 0 of 5 (random sampler, seed 0): {"base": "sgd"' in error.allowed


@pytest.mark.parametrize(
    ("text", "key", "where"),
    [
        # a base choice with adam: a sampled check draws the pair only by chance
        (
            "params: {base: {choice: [sgd, demon_sgd, adam]}, adascale.num_gradients_to_accumulate: {value: 2}}",
            "params.adascale.num_gradients_to_accumulate",
            'params.base can be "adam" here',
        ),
        # the wrapper behind a helper that does not exclude adam
        (
            "params: {base: {choice: [sgd, adam]}, _scaled: {choice: [false, true]},"
            " adascale.num_gradients_to_accumulate: {value: 2, when: {_scaled: true}}}",
            "params.adascale.num_gradients_to_accumulate",
            'params.base can be "adam" here',
        ),
        # a family that sets the whole section over an Adam base
        (
            "families: {plain: {params: {base: {value: sgd}}},"
            " scaled: {params: {base: {value: adam}, adascale: {value: {num_gradients_to_accumulate: 2}}}}}",
            "families.scaled.params.adascale",
            'families.scaled.params.base can be "adam" here (family scaled)',
        ),
    ],
    ids=["base choice", "behind a helper", "a family's section"],
)
def test_a_wrapper_over_a_base_it_cannot_wrap_is_refused_on_load(tmp_path, text, key, where, capsys):
    """Wherever the conditions let AdaScale meet Adam, loading refuses the space, naming the file, the wrapper's
    key and the bases it can wrap (the registry's ``Technique.wraps``), before any sample is drawn: `spaces show`
    (which samples without building) and `sweep --check` alike."""
    from autoaccel.cli import main

    path = _write(tmp_path, "s.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    error = caught.value
    assert (error.source, error.key) == (str(path), key)
    assert "only over a base adascale can wrap (sgd, demon_sgd)" in error.allowed and where in error.allowed
    assert main(["spaces", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"autoaccel spaces: error: {path}: {key} = ") and "Traceback" not in err, err


def test_a_wrapper_only_where_its_bases_are_drawn_loads(tmp_path):
    """The conditions decide: AdaScale set only when the base is SGD (directly, or through a helper that is only
    drawn then), or only in a family whose base is SGD, is a valid space; every sample builds."""
    texts = [
        "params: {base: {choice: [sgd, adam]}, adascale.num_gradients_to_accumulate: {value: 2, when: {base: sgd}}}",
        "params: {base: {choice: [sgd, adam]}, _scaled: {choice: [false, true], when: {base: [sgd]}},"
        " adascale.num_gradients_to_accumulate: {value: 2, when: {_scaled: true}}}",
        "families: {adam: {params: {base: {value: adam}}},"
        " adascale_sgd: {params: {base: {value: sgd}, adascale.num_gradients_to_accumulate: {value: 2}}}}",
    ]
    for i, text in enumerate(texts):
        samples = check(load_space(_write(tmp_path, f"s{i}.yaml", text)), 30)
        assert {s.optimizer["base"] for s in samples} == {"sgd", "adam"}  # both drawn, adascale only over sgd
        assert all("adascale" not in s.optimizer or s.optimizer["base"] == "sgd" for s in samples)


def test_check_reports_a_constructor_rule_that_validate_config_cannot_see(tmp_path):
    path = _write(tmp_path, "s.yaml", "params: {base: {value: sgd}, adascale: {value: {}}}")
    with pytest.raises(ConfigError) as caught:
        check(load_space(path), 3)
    assert caught.value.key == "optimizer" and caught.value.value == {"base": "sgd", "adascale": {}}
    assert "AdaScale needs ≥ 2 gradients per step" in caught.value.allowed


def test_check_stands_in_for_demon_total_steps(tmp_path):
    path = _write(tmp_path, "s.yaml", "params: {base: {value: demon_sgd}, demon.beta_init: {float: [0.8, 0.99]}}")
    samples = check(load_space(path), 5)
    assert all("total_steps" not in s.optimizer["demon"] for s in samples)


# --- the shipped spaces ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_space_loads_and_50_samples_build(path):
    space = load_space(path)
    assert space.description
    samples = check(space, 50, seed=0)
    assert len(samples) == 50


@pytest.mark.parametrize("path", sorted((SPACES / "parts").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_part_loads(path):
    assert load_space(path).params


def test_show_prints_the_tree_and_the_samples(tmp_path):
    space = load_space(_write(tmp_path, "a.yaml", ANDERSON))
    text = show(space, samples=3, seed=2)
    lines = text.splitlines()
    assert lines[0] == "anderson_adam" and lines[1] == f"file: {space.path}"
    tree = "\n".join(lines[2 : lines.index("3 samples (random sampler, seed 2):")])
    assert '  anderson.averaging: one of "off", "on", "auto"\n    if anderson.averaging in ["on", "auto"]:\n' in tree
    assert '    if anderson.averaging = "auto":\n      anderson.rsd_threshold: float [0.001, 1] log' in tree
    assert "  lr: float [0.0001, 0.1] log\n  anderson.history: int [2, 10]\n" in tree
    assert "  lookahead = null" in tree
    rows = [json.loads(line) for line in lines[-3:]]
    assert [row["optimizer"] for row in rows] == [s.optimizer for s in sample(space, 3, seed=2)]


def test_show_of_a_combined_space_groups_by_family():
    text = show(load_space(SPACES / "quickstart.yaml"), samples=0)
    assert '    if family = "anderson_sgd":\n      base@anderson_sgd = "sgd"\n' in text
    assert "samples" not in text


# --- a persistent TPE study over a conditional space --------------------------------------------------------------


def test_tpe_on_a_journal_storage_resumes_across_a_reload(tmp_path):
    space = load_space(SPACES / "anderson.yaml")
    journal = str(tmp_path / "optuna.journal")

    def objective(trial: optuna.Trial) -> float:
        drawn = to_config(space.suggest(trial))
        return abs(drawn.optimizer["lr"] - 0.01) + drawn.optimizer["anderson"]["history"] / 100

    def study() -> optuna.Study:
        storage = JournalStorage(JournalFileBackend(journal))
        sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=4)
        return optuna.create_study(study_name="s", storage=storage, sampler=sampler, load_if_exists=True)

    study().optimize(objective, n_trials=8)
    reloaded = study()
    assert len(reloaded.trials) == 8
    reloaded.optimize(objective, n_trials=6)
    trials = study().trials
    assert len(trials) == 14 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        family = t.params["family"]
        assert all(name == "family" or name.endswith(f"@{family}") for name in t.params)
        averaging = t.params[f"anderson.averaging@{family}"]
        assert (f"anderson.rsd_threshold@{family}" in t.params) == (averaging == "auto")
    assert [t.number for t in trials] == list(range(14))  # the reload continued the same study
    lr = trials[-1].distributions[f"lr@{trials[-1].params['family']}"]
    assert isinstance(lr, optuna.distributions.FloatDistribution) and lr.log
