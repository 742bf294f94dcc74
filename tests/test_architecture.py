"""The package's shape: dependencies point one way, the trial runner knows optimizers only through their protocol,
each public name has one import path, and techniques can be added without editing autoaccel."""

from __future__ import annotations

import ast
import contextlib
import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

import autoaccel
from autoaccel.errors import ConfigError
from autoaccel.optim import Technique, build_optimizer, iter_stack, register_technique, techniques, validate_config
from autoaccel.run import run_trial
from autoaccel.workloads import Workload

PACKAGE = Path(autoaccel.__file__).parent
OPTIM_CLASSES = {"AdaHessian", "AdaScale", "AndersonAcceleration", "DemonAdam", "DemonSGD", "Lookahead"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The autoaccel modules ``name`` imports anywhere (inside functions too), resolved to known modules."""
    package = name if name in known and any(k.startswith(name + ".") for k in known) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def _plugin_trial(optimizer: dict, epochs: int) -> dict:
    """A trial of a plugin technique's stack on a small quadratic, on the CPU."""
    return {
        "workload": {"name": "quadratic", "dim": 8, "samples": 64},
        "optimizer": optimizer,
        "budget": {"epochs": epochs, "batch_size": 16},
        "device": "cpu",
    }


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    modules = _modules()
    graph = {name: _imports(name, tree, set(modules)) for name, tree in modules.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                cycle.extend([*path[path.index(child) :], node, child] if child in path else [node, child])
                return True
            if child not in state and visit(child, [*path, node]):
                return True
        state[node] = 2
        return False

    assert not any(visit(name, []) for name in sorted(graph) if name not in state), " -> ".join(cycle)


# docs/architecture.md: each layer imports only layers below it (and its own package)
LAYERS = (
    ("autoaccel.redaction", "autoaccel.ports"),
    ("autoaccel.errors", "autoaccel.objective"),
    ("autoaccel.config", "autoaccel.paths"),
    ("autoaccel.optim", "autoaccel.workloads"),
    ("autoaccel.run",),
    ("autoaccel.tracking",),
    ("autoaccel.sweep",),
    ("autoaccel.analysis",),
    ("autoaccel.comparison",),
    ("autoaccel.cluster",),
    ("autoaccel.cli",),
)


def _layer(module: str) -> tuple[int, str]:
    for depth, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return depth, package
    return len(LAYERS), "autoaccel"


def test_each_layer_imports_only_layers_below_it() -> None:
    modules = _modules()
    upward = []
    for name, tree in modules.items():
        depth, package = _layer(name)
        for target in _imports(name, tree, set(modules)):
            target_depth, target_package = _layer(target)
            if target_package != package and target_depth >= depth:
                upward.append(f"{name} → {target}")
    assert not upward


def test_outside_optim_no_private_optim_import_and_no_optimizer_class_test() -> None:
    problems = []
    for name, tree in _modules().items():
        if name.startswith("autoaccel.optim"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autoaccel.optim._"):
                problems.append(f"{name} imports {node.module}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
                if names & OPTIM_CLASSES:
                    problems.append(f"{name}:{node.lineno} tests {sorted(names & OPTIM_CLASSES)}")
    assert not problems


def _string_constants(tree: ast.Module) -> list[ast.Constant]:
    """The module's string literals, docstrings left out."""
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_technique_recognised_by_name_outside_optim() -> None:
    """What a module outside optim/ knows of a technique comes from its registry entry (statistics, scale, gain,
    heat-map pairs, horizon): no literal there is a technique's name, one of its config keys (``lookahead.k``,
    ``optimizer.adascale.scale``) or a statistic it reports (``adascale_gain``, ``aa_`` ...). Prose (a literal with
    a space: a help text's example) is no recognition."""
    names = {name for name in techniques()}
    sections = {t.section for t in techniques().values() if t.section}
    statistics = {s.key for t in techniques().values() for s in t.statistics}
    found = []
    for module, tree in _modules().items():
        if module.startswith("autoaccel.optim"):
            continue
        for node in _string_constants(tree):
            text = node.value
            if any(c.isspace() for c in text) or not text:
                continue
            bare = text.removeprefix("optimizer.").removeprefix("final_")
            if (
                bare in names
                or (bare.partition(".")[0] in sections and "." in bare)
                or any(key in text for key in statistics)
            ):
                found.append(f"{module}:{node.lineno} {text!r}")
    assert not found


def test_no_pyplot_and_no_backend_switch_in_the_library() -> None:
    """Plots use matplotlib's object API (``Figure``): building a report never switches a notebook's backend."""
    found = []
    for module, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                imported = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                imported += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
                found += [f"{module}:{node.lineno} imports {n}" for n in imported if n == "matplotlib.pyplot"]
            if isinstance(node, ast.Attribute) and node.attr == "use" and getattr(node.value, "id", "") == "matplotlib":
                found.append(f"{module}:{node.lineno} matplotlib.use")
    assert not found


def test_every_search_of_mlflow_runs_goes_through_the_paging_reader() -> None:
    """``search_runs`` is called in one place, tracking's paginated reader, which passes a page token: no read of a
    sweep's runs is capped at a page (before, four queries asked for at most 50,000)."""
    calls = []
    for module, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "search_runs":
                calls.append((module, {k.arg for k in node.keywords}))
            elif isinstance(node, ast.Attribute) and node.attr == "search_runs" and not isinstance(node.ctx, ast.Store):
                calls.append((module, None))  # passed on as a function: not allowed either
    calls = [(m, k) for m, k in calls if k is not None or not any(m == c[0] and c[1] for c in calls)]
    assert [m for m, _ in calls] == ["autoaccel.tracking._schema"], calls
    assert {"page_token", "max_results"} <= calls[0][1]


def test_errors_have_one_import_path() -> None:
    wrong = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module not in ("autoaccel.errors", None):
                given = {alias.name for alias in node.names} & {"ConfigError", "DataError"}
                if given and name != "autoaccel":
                    wrong.append(f"{name} imports {sorted(given)} from {node.module}")
    assert not wrong


def test_top_level_api_is_lazy_and_complete() -> None:
    heavy = "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules))"
    code = f"import sys, autoaccel, autoaccel.cli; autoaccel.cli.build_parser(); {heavy}"  # `autoaccel --help`
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "[]"
    for name in autoaccel.__all__:
        assert getattr(autoaccel, name) is not None
    assert autoaccel.ConfigError is ConfigError and autoaccel.run_trial is run_trial
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        autoaccel.nope  # noqa: B018


def test_a_workload_without_a_target_cannot_be_built() -> None:
    class NoTarget(Workload):
        name, task, summary, metric, mode, metrics = "no_target", "regression", "", "val_loss", "min", ("val_loss",)

        def model(self):  # pragma: no cover - never reached
            return torch.nn.Linear(1, 1)

        train_size = batches = loss = evaluate = model

    with pytest.raises(TypeError, match="target"):
        NoTarget()


class _Twice(torch.optim.Optimizer):
    """A wrapper-like test optimizer that declares the whole runner protocol and records what the loop gave it."""

    def __init__(self, inner: torch.optim.Optimizer, parts: int) -> None:
        self.inner, self.micro_batches, self.needs_closure = inner, parts, False
        self.horizon, self.create_graph_asked, self.closures = None, 0, 0
        super().__init__(inner.param_groups, {})

    @property
    def needs_create_graph(self) -> bool:
        self.create_graph_asked += 1
        return False

    def set_horizon(self, total_steps: int) -> None:
        self.horizon = total_steps

    def step(self, closure=None):
        self.closures += closure is not None
        return self.inner.step()


def test_registered_technique_is_built_validated_and_driven_by_the_runner() -> None:
    """A wrapper registered from outside: validated with its ranges, placed at its order in the stack, and given a
    horizon and micro-batches by the trial runner through the protocol alone."""
    built: list[_Twice] = []

    def build(inner, hp):
        built.append(_Twice(inner, hp["parts"]))
        return built[-1]

    from autoaccel.config import Hyperparameter

    twice = Technique(
        "twice_test",
        "wrapper",
        "test wrapper",
        "-",
        build=build,
        section="twice_test",
        section_keys=(Hyperparameter("parts", int, 2, "micro-batches", 1),),
        order=5,
    )
    register_technique(twice)
    try:
        assert "twice_test" in techniques()
        with pytest.raises(ConfigError, match=r"twice_test\.parts"):
            validate_config({"base": "sgd", "twice_test": {"parts": 0}})
        opt = build_optimizer([torch.zeros(1, requires_grad=True)], {"base": "sgd", "twice_test": {"parts": 3}})
        assert isinstance(opt, _Twice) and opt.micro_batches == 3
        config = _plugin_trial({"base": "sgd", "lr": 0.01, "twice_test": {"parts": 4}}, epochs=2)
        result = run_trial(config)
        runner_opt = built[-1]
        assert result["status"] == "completed" and result["step"] == 8
        assert runner_opt.horizon == 8 and runner_opt.create_graph_asked == 8 and runner_opt.closures == 0
        with pytest.raises(ValueError, match="exists already"):
            register_technique(Technique("sgd", "base", "", "", build=build))
    finally:
        techniques().pop("twice_test")


class _Gain(_Twice):
    """A test wrapper that multiplies the learning rate by a fixed gain and reports it."""

    lr_gain = 2.0

    def statistics(self) -> dict[str, float]:
        return {"gain_test_r": self.lr_gain}


def test_a_registered_technique_gets_what_its_capabilities_declare() -> None:
    """Nothing outside optim/ knows a technique's name: a plugin that declares a learning-rate gain, a statistic, a
    batch scale and a heat-map pair gets the effective rate in its trial's metrics, its statistic on `train`'s
    progress line, its runs grouped by S in a report and its heat map, exactly as the built-in techniques do."""
    from autoaccel.analysis import by_scale
    from autoaccel.analysis._sections import _heatmap_pairs
    from autoaccel.cli.train import _progress_statistics
    from autoaccel.config import Hyperparameter
    from autoaccel.optim import Statistic

    gain = Technique(
        "gain_test",
        "wrapper",
        "test wrapper",
        "-",
        build=lambda inner, hp: _Gain(inner, 1),
        section="gain_test",
        section_keys=(Hyperparameter("factor", int, 2, "its scale", 1),),
        order=6,
        statistics=(Statistic("gain_test_r", "the gain"),),
        lr_gain="gain_test_r",
        scale=lambda section, workers: float(section.get("factor", 2) * workers),
        heatmaps=(("lr", "gain_test.factor"),),
    )
    register_technique(gain)
    try:
        config = _plugin_trial({"base": "sgd", "lr": 0.01, "gain_test": {"factor": 3}}, epochs=1)
        result = run_trial(config)
        assert result["lr"] == pytest.approx(0.02) and result["gain_test_r"] == 2.0
        assert "gain_test_r" in _progress_statistics()
        assert ("optimizer.lr", "optimizer.gain_test.factor") in _heatmap_pairs()
        runs = pd.DataFrame(
            {
                "technique": ["gain_test+sgd", "gain_test+sgd", "sgd"],
                "workload": ["q"] * 3,
                "optimizer.gain_test.factor": [3, 4, None],
                "world_size": [2, 1, 1],
                "status": ["completed"] * 3,
                "final_metric": [0.1, 0.2, 0.3],
                "final_gain_test_r": [2.0, 2.0, None],
            }
        )
        table = by_scale(runs).set_index("S")
        assert sorted(table.index) == [4.0, 6.0] and table.loc[6.0, "median final gain"] == 2.0
    finally:
        techniques().pop("gain_test")


class _PolyakSGD(torch.optim.SGD):
    """SGD with Polyak–Ruppert averaging read out beside it: the iteration goes on unaveraged and outputs the running
    mean of its iterates, which ``evaluation_weights()`` swaps in."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.means: list[torch.Tensor] = []
        self.count = 0

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        self.count += 1
        if not self.means:
            self.means = [p.detach().clone() for p in self._params()]
        for mean, p in zip(self.means, self._params(), strict=True):
            mean.add_(p - mean, alpha=1 / self.count)
        return loss

    @contextlib.contextmanager
    def evaluation_weights(self):
        saved = [p.detach().clone() for p in self._params()]
        with torch.no_grad():
            for p, mean in zip(self._params(), self.means, strict=True):
                p.copy_(mean)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, kept in zip(self._params(), saved, strict=True):
                    p.copy_(kept)


def test_a_registered_base_is_evaluated_on_the_weights_it_declares_also_inside_a_wrapper() -> None:
    """A base of one's own whose output is not its parameters (a Polyak average) declares ``evaluation_weights``;
    the runner evaluates every epoch on them, through a built-in wrapper around it that outputs its parameters."""
    from autoaccel.config import Hyperparameter
    from autoaccel.optim import evaluation_weights
    from autoaccel.run import Trial

    polyak = Technique(
        "polyak_test",
        "base",
        "test base",
        "-",
        build=lambda params, hp, _: _PolyakSGD(params, **hp),
        top_level=(Hyperparameter("lr", float, 0.1, "learning rate", 0.0, low_open=True),),
    )
    register_technique(polyak)
    try:
        config = _plugin_trial({"base": "polyak_test", "lr": 0.1, "anderson": {"history": 2}}, epochs=2)
        trial = Trial(config)
        history = list(trial.epochs())
        model, workload, opt = trial.setup.model, trial.workload, trial.setup.optimizer
        (base,) = [layer for layer in iter_stack(opt) if isinstance(layer, _PolyakSGD)]
        averaged = copy.deepcopy(model)
        with torch.no_grad():
            for p, mean in zip(averaged.parameters(), base.means, strict=True):
                p.copy_(mean)
        on_mean = workload.evaluate(averaged)[workload.metric]
        assert history[-1]["metric"] == on_mean != workload.evaluate(model)[workload.metric]
        with evaluation_weights(opt):  # the wrapper passes its base's output on
            assert workload.evaluate(model)[workload.metric] == on_mean
    finally:
        techniques().pop("polyak_test")


def test_technique_from_an_entry_point_in_another_process(tmp_path: Path) -> None:
    """``[project.entry-points."autoaccel.techniques"]``: found by `autoaccel optimizers` and trained by `train`."""
    (tmp_path / "rms_plugin.py").write_text(
        textwrap.dedent(
            """
            import torch
            from autoaccel.config import Hyperparameter
            from autoaccel.optim import Technique

            RMSPROP = Technique(
                "rmsprop", "base", "RMSprop (torch.optim.RMSprop)", "Tieleman & Hinton 2012",
                build=lambda params, hp, section: torch.optim.RMSprop(params, **hp),
                top_level=(Hyperparameter("lr", float, 1e-2, "learning rate", 0.0, low_open=True),),
            )
            """
        )
    )
    info = tmp_path / "rms_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rms-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[autoaccel.techniques]\nrmsprop = rms_plugin:RMSPROP\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = subprocess.run(
        [sys.executable, "-m", "autoaccel.cli", "optimizers", "--json"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert "rmsprop" in [row["name"] for row in json.loads(listed.stdout)]
    out = tmp_path / "result.json"
    train = [sys.executable, "-m", "autoaccel.cli", "train", "--workload", "quadratic", "--option", "dim=8"]
    train += ["--set", "base=rmsprop", "--set", "lr=0.01", "--epochs", "1", "--output-json", str(out)]
    trained = subprocess.run(train, capture_output=True, text=True, env=env)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(out.read_text())["result"]["status"] == "completed"
