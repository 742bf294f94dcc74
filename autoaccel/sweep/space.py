"""Search spaces: YAML files compiled to Optuna define-by-run functions, samples nested into optimizer configs.

Schema (``search_spaces/README.md`` is the long form)::

    name: anderson_adam                  # optional; default: the file name without .yaml
    description: one line; cite where the ranges come from
    include: [base_adam.yaml]            # relative to this file; the included params come first, in order; a
                                         # param given again here replaces the included one in its place
    params:                              # ordered; each has exactly one of float / int / choice / value
      base: {value: adam}                # fixed: any YAML value, null included; not an Optuna parameter
      lr: {float: [1.0e-4, 1.0e-1], log: true}
      anderson.history: {int: [2, 18], log: true}        # int takes log or step
      anderson.averaging: {choice: ["off", "on", auto]}  # scalars; quote off/on, YAML reads them as booleans
      anderson.rsd_threshold: {float: [1.0e-3, 1.0], log: true, when: {anderson.averaging: auto}}
      _decay: {choice: [false, true]}    # helper (leading _): sampled, usable in `when`, never passed on
      weight_decay: {float: [1.0e-6, 1.0e-2], log: true, when: {_decay: true}}   # inactive: the default, 0
      budget.batch_size: {choice: [8, 40, 200]}          # budget.<name>: a budget override, not the optimizer
    families:                            # optional: the technique family becomes the categorical `family`
      adam: base_adam.yaml               # a file, or inline {include: [...], params: {...}}
      lookahead_adam: {include: [base_adam.yaml, parts/lookahead.yaml], params: {lookahead.k: {int: [2, 10]}}}

Conditions: ``when: {p: v}`` or ``{p: [v1, v2]}`` (any of); several keys must all hold; ``p`` must come earlier in the
include-resolved order, and a condition on an inactive parameter does not hold. Inactive parameters are neither
suggested (Optuna never sees them) nor passed on.

Families: ``family`` is drawn first, then the shared ``params`` (which may use ``when: {family: ...}``), then the chosen
family's params. Those are named ``<key>@<family>`` in Optuna, so each family's ranges are separate parameters
(``lr@adam``, ``lr@sgd``); :func:`to_config` strips the tag.

Names: an optimizer config key (``autoaccel optimizers`` lists them), a whole section with a fixed value
(``lookahead: {value: null}``), ``budget.<name>`` or a helper ``_<name>``. ``demon.total_steps`` is not sampled: the
trial sets it from its step budget.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from autoaccel.errors import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["Param", "Sample", "SearchSpace", "build_sample", "check", "load_space", "sample", "show", "to_config"]

FAMILY = "family"
TAG = "@"  # <key>@<family>; neither '/' (Tune unflattens on it) nor '.' (config nesting)
_TOP_KEYS = ("name", "description", "include", "params", "families")
_FAMILY_KEYS = ("include", "params")
_KINDS = ("float", "int", "choice", "value")
_SPEC_KEYS = (*_KINDS, "log", "step", "when")
_HELPER = re.compile(r"_[a-z0-9_]+")
_BUDGET = re.compile(r"budget\.[a-z][a-z0-9_]*")
_FAMILY_NAME = re.compile(r"[a-z][a-z0-9_]*")
_SCALARS = (type(None), bool, int, float, str)  # what Optuna's categorical distribution stores
_BOOL_HINT = " (quote off/on: YAML reads them as booleans)"


@dataclass(frozen=True)
class Param:
    """One parameter: its Optuna name, distribution (or fixed value), conditions, and where it was written."""

    name: str  # unique in the space: "lr", "lr@adam", "family"
    kind: str  # float | int | choice | value
    bounds: tuple[Any, ...] = ()
    log: bool = False
    step: int | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (parameter name, values any of which satisfies)
    origin: str = ""  # the spec's key path in its file, e.g. "params.lr" or "families.adam.params.lr"
    source: str = ""  # the file

    @property
    def key(self) -> str:
        """The config key it fills (the name without its family tag)."""
        return self.name.partition(TAG)[0]

    def holds(self, drawn: Mapping[str, Any]) -> bool:
        return all(ref in drawn and drawn[ref] in values for ref, values in self.when)

    def draw(self, trial: optuna.Trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, *self.bounds, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, *self.bounds, log=self.log, step=self.step or 1)
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, self.choices)
        return copy.deepcopy(self.value)  # a fixed mapping must not be shared between samples

    def can_be(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "value":
            return value == self.value
        number = int if self.kind == "int" else (int, float)
        return isinstance(value, number) and not isinstance(value, bool) and self.bounds[0] <= value <= self.bounds[1]

    def outcomes(self) -> str:
        """What the parameter can take, in words."""
        if self.kind == "choice":
            return "one of " + ", ".join(_fmt(c) for c in self.choices)
        if self.kind == "value":
            return "only " + _fmt(self.value)
        extra = " log" if self.log else f" step {self.step}" if self.step else ""
        return f"{self.kind} [{_fmt(self.bounds[0])}, {_fmt(self.bounds[1])}]{extra}"

    def describe(self, implied: frozenset[tuple[str, tuple[Any, ...]]]) -> str:
        """One line: the name, what it takes, and the conditions that ``implied`` (the tree above it) leaves out."""
        text = f"{self.name} = {_fmt(self.value)}" if self.kind == "value" else f"{self.name}: {self.outcomes()}"
        others = [_condition(ref, values) for ref, values in self.when if (ref, values) not in implied]
        return text + (f"  (when {' and '.join(others)})" if others else "")


@dataclass(frozen=True)
class Sample:
    """One drawn configuration: the flat Optuna names and what they become."""

    params: dict[str, Any]  # flat, as Optuna and Tune record it ("lr@adam", "family", "_decay")
    optimizer: dict[str, Any]  # the nested optimizer config, without demon.total_steps (the trial sets it)
    budget: dict[str, Any]  # budget overrides ("budget.batch_size" → {"batch_size": ...})
    family: str | None  # the drawn technique family; None in a space without families


@dataclass(frozen=True)
class SearchSpace:
    """A loaded space: its parameters in draw order, includes and families resolved."""

    name: str
    description: str
    path: Path
    params: tuple[Param, ...]  # in draw order; conditions only look back
    families: tuple[str, ...] = ()

    def suggest(self, trial: optuna.Trial, family: str | None = None) -> dict[str, Any]:
        """The define-by-run function: draw the active parameters in order; return flat names → values.

        ``family``: draw only that family's configurations (``family`` is then a fixed value, not an Optuna
        parameter): what a comparison's per-family tuning samples."""
        if family is not None and family not in self.families:
            raise ConfigError("family", family, "one of the space's families: " + ", ".join(self.families))
        drawn: dict[str, Any] = {FAMILY: family} if family is not None else {}
        for param in self.params:
            if param.name not in drawn and param.holds(drawn):
                drawn[param.name] = param.draw(trial)
        return drawn

    def declared(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The distributions the space declares, as the analysis names its columns: family ("" in a space without
        families) → ``optimizer.<key>`` or ``budget.<name>`` → ``{"kind", "low", "high", "log", "step"}`` or
        ``{"kind": "choice", "choices"}``. Fixed values and helpers are left out (they are not sampled, or never
        passed on); a shared parameter belongs to every family."""
        out: dict[str, dict[str, dict[str, Any]]] = {family: {} for family in self.families or ("",)}
        for param in self.params:
            if param.kind == "value" or param.key == FAMILY or param.key.startswith("_"):
                continue
            column = param.key if param.key.startswith("budget.") else f"optimizer.{param.key}"
            if param.kind == "choice":
                declared: dict[str, Any] = {"kind": "choice", "choices": list(param.choices)}
            else:
                low, high = param.bounds
                declared = {"kind": param.kind, "low": low, "high": high, "log": param.log, "step": param.step}
            family = param.name.partition(TAG)[2]
            for name in [family] if family else out:
                out[name][column] = declared
        return out


def load_space(path: str | Path) -> SearchSpace:
    """Read, resolve and validate a search-space file; every problem is a :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("space", str(path), "an existing search-space file (YAML)")
    data = _read(path)
    source = str(path)
    name = data.get("name", path.stem)
    description = data.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            raise ConfigError(key, value, "a string", source)
    shared = _resolve(path, data, (path.resolve(),))
    families = _families(path, data.get("families"))
    params = _with_families(shared, families, source) if families else list(shared.values())
    _check_conditions(params)
    params = _prune(params)
    _check_stacks(params, tuple(families))
    return SearchSpace(name, description.strip(), path, tuple(params), tuple(families))


def to_config(flat: Mapping[str, Any]) -> Sample:
    """Split a flat draw into the nested optimizer config, the budget overrides and the family."""
    optimizer: dict[str, Any] = {}
    budget: dict[str, Any] = {}
    for name, value in flat.items():
        key = name.partition(TAG)[0]
        if key == FAMILY or key.startswith("_"):
            continue
        if key.startswith("budget."):
            budget[key.removeprefix("budget.")] = value
        else:
            _nest(optimizer, key, value)
    return Sample(dict(flat), optimizer, budget, flat.get(FAMILY))


def sample(space: SearchSpace, n: int, seed: int = 0, family: str | None = None) -> list[Sample]:
    """``n`` configurations from a seeded random sampler on an in-memory study (the same seed, the same list); only
    ``family``'s when given."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line in `spaces show`
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return [to_config(space.suggest(study.ask(), family)) for _ in range(n)]


def build_sample(drawn: Sample, workers: int = 1) -> Any:
    """Validate and build the sample's optimizer on a stand-in parameter, as a trial of ``workers`` data-parallel
    workers would; return the optimizer.

    Building (not only ``validate_config``) also catches the constructors' cross-key rules, such as AdaScale's ≥ 2
    gradients per step (world size × accumulation) or Anderson's frequency being a multiple of store_every.
    """
    import torch

    from autoaccel.optim import build_optimizer, planned_workers

    with planned_workers(workers):
        return build_optimizer([torch.zeros(1, requires_grad=True)], copy.deepcopy(drawn.optimizer))


def check(space: SearchSpace, n: int = 50, seed: int = 0, family: str | None = None, workers: int = 1) -> list[Sample]:
    """Draw ``n`` samples (of ``family`` only, when given) and build each (for trials of ``workers`` workers); the
    first impossible one raises a :class:`ConfigError` that shows it."""
    samples = sample(space, n, seed, family)
    for i, drawn in enumerate(samples):
        try:
            build_sample(drawn, workers)
        except (ValueError, TypeError) as error:  # ConfigError is a ValueError; constructors raise plain ones
            where = f"sample {i} of {n} (random sampler, seed {seed}): {json.dumps(drawn.params)}"
            if isinstance(error, ConfigError):
                raise ConfigError(error.key, error.value, f"{error.allowed}; in {where}", str(space.path)) from error
            raise ConfigError("optimizer", drawn.optimizer, f"{error}; in {where}", str(space.path)) from error
    return samples


def show(space: SearchSpace, samples: int = 5, seed: int = 0) -> str:
    """The parameter tree (children indented under the parameter they depend on), then ``samples`` draws."""
    lines = [f"{space.name}: {space.description}" if space.description else space.name, f"file: {space.path}"]
    lines += _tree(space.params)
    if samples:
        lines.append(f"{samples} samples (random sampler, seed {seed}):")
        for drawn in sample(space, samples, seed):
            row = {"family": drawn.family} if space.families else {}
            row["optimizer"] = drawn.optimizer
            if drawn.budget:
                row["budget"] = drawn.budget
            lines.append("  " + json.dumps(row))
    return "\n".join(lines)


# --- reading and resolving files -------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys: PyYAML would keep the last one silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as error:
        raise ConfigError("yaml", str(error).replace("\n", " "), "valid YAML with unique keys", source) from error
    if not isinstance(data, dict):
        raise ConfigError("space", data, "a mapping with keys " + ", ".join(_TOP_KEYS), source)
    for key, value in data.items():
        if key not in _TOP_KEYS:
            raise ConfigError(str(key), value, "unknown top-level key; allowed: " + ", ".join(_TOP_KEYS), source)
    return data


def _resolve(path: Path, body: Mapping[str, Any], stack: tuple[Path, ...], prefix: str = "") -> dict[str, Param]:
    """The includes' params in order, then this body's; a repeated name keeps its first place, takes the new spec."""
    source = str(path)
    includes = body.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(entry, str) for entry in includes):
        raise ConfigError(f"{prefix}include", includes, "a list of file paths relative to this file", source)
    params: dict[str, Param] = {}
    for entry in includes:
        params.update(_include(path, entry, stack, prefix))
    raw = body.get("params") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}params", raw, "a mapping of parameter name → spec", source)
    for name, spec in raw.items():
        params[name] = _param(str(name), spec, f"{prefix}params.{name}", source)
    return params


def _include(path: Path, entry: str, stack: tuple[Path, ...], prefix: str) -> dict[str, Param]:
    target = (path.parent / entry).resolve()
    if target in stack:
        cycle = " → ".join(p.name for p in (*stack[stack.index(target) :], target))
        raise ConfigError(f"{prefix}include", entry, f"no include cycle ({cycle})", str(path))
    if not target.is_file():
        raise ConfigError(f"{prefix}include", entry, f"an existing file (looked for {target})", str(path))
    data = _read(target)
    if "families" in data:
        allowed = "only in the space that is loaded, not in an included file"
        raise ConfigError("families", list(data["families"] or ()), allowed, str(target))
    return _resolve(target, data, (*stack, target))


def _families(path: Path, raw: Any) -> dict[str, dict[str, Param]]:
    source = str(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("families", raw, "a non-empty mapping of family name → file or {include, params}", source)
    families = {}
    for name, entry in raw.items():
        where = f"families.{name}"
        if not isinstance(name, str) or not _FAMILY_NAME.fullmatch(name):
            raise ConfigError(where, name, "a lower-case identifier (letters, digits, _)", source)
        body = {"include": [entry]} if isinstance(entry, str) else entry
        if not isinstance(body, dict):
            raise ConfigError(where, entry, "a file path or a mapping with include and/or params", source)
        for key in body:
            if key not in _FAMILY_KEYS:
                raise ConfigError(f"{where}.{key}", body[key], "one of " + ", ".join(_FAMILY_KEYS), source)
        families[name] = _resolve(path, body, (path.resolve(),), prefix=f"{where}.")
    return families


def _with_families(shared: dict[str, Param], families: dict[str, dict[str, Param]], source: str) -> list[Param]:
    """``family`` first, the shared params, then every family's params tagged ``@family`` and conditioned on it."""
    params = [Param(FAMILY, "choice", choices=tuple(families), origin="families", source=source)]
    params += shared.values()
    passed_on = {p.key for p in shared.values() if not p.key.startswith("_")}
    for family, own in families.items():
        for param in own.values():
            if param.key in passed_on:
                allowed = "a key the shared params do not set (give it in one place)"
                raise ConfigError(param.origin, param.key, allowed, param.source)
            when = tuple((f"{ref}{TAG}{family}" if ref in own else ref, values) for ref, values in param.when)
            tagged = f"{param.name}{TAG}{family}"
            params.append(replace(param, name=tagged, when=((FAMILY, (family,)), *when)))
    return params


# --- one parameter spec ------------------------------------------------------------------------------------------


def _param(name: str, spec: Any, where: str, source: str) -> Param:
    if name == FAMILY:
        raise ConfigError(where, spec, "'family' is reserved: list the techniques under the top-level families", source)
    if not isinstance(spec, dict):
        raise ConfigError(where, spec, "a mapping with one of float, int, choice, value (and log, step, when)", source)
    for key, value in spec.items():
        if key not in _SPEC_KEYS:
            raise ConfigError(f"{where}.{key}", value, "one of " + ", ".join(_SPEC_KEYS), source)
    kinds = [kind for kind in _KINDS if kind in spec]
    if len(kinds) != 1:
        raise ConfigError(where, spec, "exactly one of " + ", ".join(_KINDS), source)
    kind = kinds[0]
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool) or (log and kind not in ("float", "int")):
        raise ConfigError(f"{where}.log", log, "true or false, and true only with float or int", source)
    if step is not None and (kind != "int" or log or isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise ConfigError(f"{where}.step", step, "an integer ≥ 1, with int and without log", source)
    param = Param(name, kind, log=log, step=step, origin=where, source=source)
    if kind in ("float", "int"):
        param = replace(param, bounds=_bounds(kind, spec[kind], log, step, f"{where}.{kind}", source))
    elif kind == "choice":
        param = replace(param, choices=_choices(spec["choice"], f"{where}.choice", source))
    else:
        param = replace(param, value=spec["value"])
    param = replace(param, when=_when(spec.get("when", {}), f"{where}.when", source))
    _check_key(param)
    return param


def _bounds(kind: str, raw: Any, log: bool, step: int | None, where: str, source: str) -> tuple[Any, Any]:
    number = int if kind == "int" else (int, float)
    if not (
        isinstance(raw, list)
        and len(raw) == 2
        and all(isinstance(x, number) and not isinstance(x, bool) and math.isfinite(x) for x in raw)
    ):
        what = "two integers" if kind == "int" else "two finite numbers (YAML reads 1e-4 as a string: write 1.0e-4)"
        raise ConfigError(where, raw, f"[low, high], {what}", source)
    low, high = raw
    if not low < high:
        raise ConfigError(where, raw, "low < high (a single value is {value: ...})", source)
    if log and low <= 0:
        raise ConfigError(where, raw, "low > 0 with log: true", source)
    if step and (high - low) % step:
        raise ConfigError(where, raw, f"high − low a multiple of step {step}", source)
    return (low, high) if kind == "int" else (float(low), float(high))


def _choices(raw: Any, where: str, source: str) -> tuple[Any, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(where, raw, "a non-empty list of values", source)
    for value in raw:
        if not isinstance(value, _SCALARS):
            raise ConfigError(where, value, "scalars: null, true/false, numbers or strings", source)
    if len(set(raw)) != len(raw):
        raise ConfigError(where, raw, "distinct values", source)
    return tuple(raw)


def _when(raw: Any, where: str, source: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(raw, dict):
        raise ConfigError(where, raw, "a mapping of earlier parameter → value or list of values", source)
    when = []
    for ref, values in raw.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"{where}.{ref}", values, "a value or a non-empty list of values", source)
        when.append((str(ref), tuple(values)))
    return tuple(when)


def _check_conditions(params: list[Param]) -> None:
    """Each condition names an earlier parameter and values it can take (when it is drawn, not fixed)."""
    names = {p.name for p in params}
    earlier: dict[str, Param] = {}
    for param in params:
        for ref, values in param.when:
            written = ref.partition(TAG)[0]  # as the file spells it
            where = f"{param.origin}.when.{written}"
            if ref not in earlier:
                allowed = "a parameter defined earlier (conditions look back)" if ref in names else "a parameter"
                known = ", ".join(earlier) or "none"
                raise ConfigError(where, written, f"{allowed}; earlier: {known}", param.source)
            if earlier[ref].kind == "value":
                continue  # a fixed value overriding a choice switches its branch off: that condition may never hold
            for value in values:
                if not earlier[ref].can_be(value):
                    hint = _BOOL_HINT if isinstance(value, bool) else ""
                    allowed = f"a value {written} can take: {earlier[ref].outcomes()}{hint}"
                    raise ConfigError(where, value, allowed, param.source)
        earlier[param.name] = param


def _prune(params: list[Param]) -> list[Param]:
    """Drop what a fixed value switches off (a condition it never meets), and what depends on that."""
    kept: dict[str, Param] = {}
    for param in params:
        if all(ref in kept and (kept[ref].kind != "value" or kept[ref].value in values) for ref, values in param.when):
            kept[param.name] = param
    return list(kept.values())


def _implied(param: Param, by_name: Mapping[str, Param]) -> dict[str, list[Any]]:
    """What ``param`` being drawn implies: parameter name → the values it must have (its conditions, and those of
    the parameters they name, which must be drawn too: a condition on an inactive parameter does not hold)."""
    found: dict[str, list[Any]] = {}
    for ref, values in param.when:
        implied = [(ref, list(values)), *(_implied(by_name[ref], by_name).items() if ref in by_name else ())]
        for name, allowed in implied:
            found[name] = [v for v in found[name] if v in allowed] if name in found else allowed
    return found


def _check_stacks(params: list[Param], families: tuple[str, ...]) -> None:
    """Refuse a space that can put a wrapper over a base it cannot wrap (the registry's ``Technique.wraps``:
    AdaScale over Adam). Every pairing the conditions allow is checked, not a sample of them: a sampled check can
    miss a rare one, and ``spaces show`` samples without building."""
    from autoaccel.optim import techniques, wrapped_bases

    known, by_name = techniques(), {p.name: p for p in params}
    for param in params:
        section = param.key.partition(".")[0]
        wrapper = known.get(section)
        if wrapper is None or wrapper.kind != "wrapper" or wrapper.wraps is None:
            continue
        if param.key == section and param.kind == "value" and param.value is None:
            continue  # {value: null}: the wrapper left out
        implied, tag = _implied(param, by_name), param.name.partition(TAG)[2]
        scopes = [tag] if tag else [f for f in families if f in implied.get(FAMILY, families)] if families else [None]
        for family in scopes:
            base = by_name.get(f"base{TAG}{family}") or by_name.get("base")
            if base is None:
                continue  # no base at all: validate_config says so for every sample
            drawn = list(base.choices) if base.kind == "choice" else [base.value]
            for value in drawn:
                if value not in implied.get(base.name, drawn) or value not in known:
                    continue  # excluded by the conditions, or not a technique (the key's own check names it)
                if not wrapper.wraps(known[value]):
                    accepted = ", ".join(wrapped_bases(wrapper))
                    where = f" (family {family})" if family else ""
                    base_at = base.origin if base.source == param.source else f"{base.origin} of {base.source}"
                    allowed = (
                        f"only over a base {section} can wrap ({accepted}), but {base_at} can be {_fmt(value)} "
                        f"here{where}; narrow it, or add when: {{{base.key}: [{accepted}]}} to {param.origin}"
                    )
                    shown = param.value if param.kind == "value" else param.outcomes()
                    raise ConfigError(param.origin, shown, allowed, param.source)


# --- names against the optimizer registry ------------------------------------------------------------------------


@functools.cache
def _registry() -> tuple[dict[str, list[Any]], frozenset[str]]:
    """Declarations per config key ("lr", "anderson.history", ...) and the section names."""
    from autoaccel.config import Hyperparameter
    from autoaccel.optim import techniques

    bases = tuple(name for name, t in techniques().items() if t.kind == "base")
    declarations: dict[str, list[Any]] = {"base": [Hyperparameter("base", str, None, "base optimizer", choices=bases)]}
    for technique in techniques().values():
        for key, declaration in technique.hyperparameters:
            declarations.setdefault(key, []).append(declaration)
    sections = frozenset(t.section for t in techniques().values() if t.section)
    return declarations, sections


def _trial_set_keys() -> frozenset[str]:
    from autoaccel.optim import trial_set_keys

    return trial_set_keys()


def _check_key(param: Param) -> None:
    """The name is a config key, budget.<name> or _<name>, and every value the spec allows is valid for it."""
    key, where, source = param.name, param.origin, param.source
    if _HELPER.fullmatch(key) or _BUDGET.fullmatch(key):
        return
    declarations, sections = _registry()
    trial_sets = _trial_set_keys()
    if key in trial_sets:
        raise ConfigError(where, key, "not sampled: the trial sets it from its step budget", source)
    if key in sections:
        if param.kind != "value" or not (param.value is None or isinstance(param.value, dict)):
            allowed = "a whole section takes a fixed value: {value: null} (leave it out) or {value: {...}}"
            raise ConfigError(where, param.outcomes(), allowed, source)
        for sub, value in (param.value or {}).items():
            _check_values(f"{key}.{sub}", declarations.get(f"{key}.{sub}"), [value], f"{where}.value.{sub}", source)
        return
    if key not in declarations:
        close = difflib.get_close_matches(key, declarations, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        keys, whole = ", ".join(sorted(set(declarations) - trial_sets)), ", ".join(sorted(sections))
        allowed = f"{hint}an optimizer config key ({keys}), a section ({whole}), budget.<name> or a helper _<name>"
        raise ConfigError(where, key, allowed, source)
    declared = declarations[key]
    if param.kind == "float" and all(d.kind is int for d in declared):
        raise ConfigError(f"{where}.float", list(param.bounds), f"an int range: {key} is an integer", source)
    values = list(param.bounds) if param.bounds else list(param.choices) if param.kind == "choice" else [param.value]
    _check_values(key, declared, values, f"{where}.{param.kind}", source)


def _check_values(key: str, declared: list[Any] | None, values: list[Any], where: str, source: str) -> None:
    """Each value passes one of the key's declarations (a top-level key like lr is declared once per base)."""
    if not declared:
        section = key.partition(".")[0]
        keys = [k.partition(".")[2] for k in _registry()[0] if k.startswith(f"{section}.")]
        raise ConfigError(where, key, f"a key of the {section} section: {', '.join(keys)}", source)
    for value in values:
        if not any(_accepts(declaration, value) for declaration in declared):
            hint = _BOOL_HINT if isinstance(value, bool) and declared[0].kind is str else ""
            raise ConfigError(where, value, f"{declared[0].allowed()} (for {key}){hint}", source)


def _accepts(declaration: Any, value: Any) -> bool:
    try:
        declaration.check(value)
    except ConfigError:
        return False
    return True


# --- nesting and printing ----------------------------------------------------------------------------------------


def _nest(config: dict[str, Any], key: str, value: Any) -> None:
    section, _, sub = key.partition(".")
    if not sub:
        if section in config:
            raise ConfigError(key, value, f"set once; {section} is already {config[section]!r}")
        config[section] = value
        return
    inner = config.setdefault(section, {})
    if not isinstance(inner, dict):
        raise ConfigError(key, value, f"no {key} while {section} is {inner!r}")
    inner[sub] = value


def _tree(params: tuple[Param, ...]) -> list[str]:
    """Each parameter under the latest parameter its conditions name, grouped by the values they require."""
    position = {p.name: i for i, p in enumerate(params)}
    children: dict[str | None, list[Param]] = {}
    for param in params:
        parent = max((ref for ref, _ in param.when), key=position.__getitem__, default=None)
        children.setdefault(parent, []).append(param)
    lines: list[str] = []

    def walk(parent: str | None, depth: int, implied: frozenset[tuple[str, tuple[Any, ...]]]) -> None:
        groups: dict[tuple[Any, ...] | None, list[Param]] = {}
        for child in children.get(parent, []):
            groups.setdefault(dict(child.when).get(parent), []).append(child)
        for values, group in groups.items():
            indent, inner = depth, implied
            if parent is not None:
                lines.append("  " * depth + f"if {_condition(parent, values)}:")
                indent, inner = depth + 1, implied | {(parent, values)}
            for child in group:
                lines.append("  " * indent + child.describe(inner))
                walk(child.name, indent + 1, inner)

    walk(None, 1, frozenset())
    return lines


def _condition(ref: str, values: tuple[Any, ...]) -> str:
    if len(values) == 1:
        return f"{ref} = {_fmt(values[0])}"
    return f"{ref} in [{', '.join(_fmt(v) for v in values)}]"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value)
