"""What exists (one table, with metadata), the one factory that builds any stack from a nested config, and the
registration API for techniques of your own.

Config (the contract with search spaces and trials; see ``docs/optimizers.md``)::

    base: adam                 # sgd | adam | adamw | demon_sgd | demon_adam | adahessian
    lr: 1.0e-3                 # the base's own keys at the top level (lr, weight_decay, momentum, beta1, ...)
    demon: {beta_init: 0.9, total_steps: 3000, variant: paper}     # with demon_* bases
    adahessian: {hessian_power: 1.0, update_each: 1}               # with the adahessian base
    lookahead: {k: 5, alpha: 0.5}                                  # optional wrappers...
    anderson: {history: 5, averaging: auto, rsd_threshold: 0.1}
    adascale: {num_gradients_to_accumulate: 4}

Wrapping order is fixed by each wrapper's ``order`` (innermost first): Lookahead directly around the base (its k
counts base steps), Anderson around that (its map G is the Lookahead-wrapped step, so with ``store_every = k`` each
pair is one outer Lookahead iteration), and AdaScale outermost (it owns the gradient hooks and scales the learning
rate of everything inside)::

    AdaScale(AndersonAcceleration(Lookahead(base)))

Techniques of your own: :func:`register_technique` in this process, or an entry point in the group
``autoaccel.techniques`` naming a :class:`Technique` (found in every process, Ray workers too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import torch
from torch.optim import Optimizer

from autoaccel.config import Hyperparameter, check_all
from autoaccel.errors import ConfigError

from .adahessian import ADAHESSIAN_HYPERPARAMETERS, AdaHessian
from .adascale import ADASCALE_HYPERPARAMETERS, AdaScale
from .anderson import ANDERSON_HYPERPARAMETERS, AndersonAcceleration
from .demon import DEMON_ADAM_HYPERPARAMETERS, DEMON_SGD_HYPERPARAMETERS, DemonAdam, DemonSGD
from .lookahead import LOOKAHEAD_HYPERPARAMETERS, Lookahead

__all__ = [
    "DEFAULT_BASE",
    "TECHNIQUES",
    "Statistic",
    "Technique",
    "build_optimizer",
    "register_technique",
    "technique_label",
    "techniques",
    "techniques_in",
    "trial_set_keys",
    "validate_config",
    "wrapped_bases",
]


DEFAULT_BASE = "adam"  # the base of a trial whose config names none (`autoaccel train` without --config)


@dataclass(frozen=True)
class Statistic:
    """A value a technique's optimizer reports in ``statistics()`` every epoch (logged with the epoch's metrics),
    whether ``autoaccel train`` shows it on its progress line, and whether a report gives its mean per batch size
    (a regime that depends on the batch, as Anderson's averaging does)."""

    key: str
    help: str
    on_progress_line: bool = True
    by_batch_size: bool = False


@dataclass(frozen=True)
class Technique:
    """A technique: a base optimizer or a wrapper around any optimizer.

    ``build`` is ``(params, top_level_values, section_values) → Optimizer`` for a base and ``(inner, section_values)
    → Optimizer`` for a wrapper. Bases read ``top_level`` keys (and their own ``section``); a wrapper reads its
    ``section``, which is its name, and sits at ``order`` in the stack (innermost first). ``check`` sees the whole
    validated config and raises :class:`ConfigError` for a rule across keys (AdaScale needs an SGD-family base).
    ``baseline``: for a base that modifies another one (Demon SGD modifies SGD), the base a comparison measures it
    against.

    What the rest of autoaccel may know of a technique, so that it never recognises one by its name:

    - ``statistics``: what its optimizer reports (:class:`Statistic`), e.g. Demon's current β;
    - ``lr_gain``: the statistic by which it multiplies the learning rate of every step (AdaScale's gain r): the
      effective rate a run reports is the schedule's rate times this;
    - ``scale``: ``(section values, data-parallel workers) → S``, the batch scale it trains at (AdaScale's
      S = workers × accumulated micro-batches unless set): reports group its runs by S;
    - ``scale_invariant_budget``: its budget counts scale-invariant iterations, so at scale S it may see up to S×
      the examples of a baseline at the base batch (a comparison says so beside its verdict);
    - ``heatmaps``: pairs of config keys worth a heat map when both were sampled (the pairs its paper studies);
    - ``horizon``: the key of its section that the trial sets from the run's step budget (``set_horizon``), never
      sampled by a search space;
    - ``wraps``: for a wrapper, which bases it can wrap (``base technique → bool``; None: every one), so that a
      search space is refused where it could put it over another (AdaScale: the SGD family), without sampling.
    """

    name: str
    kind: str  # "base" or "wrapper"
    summary: str
    reference: str
    build: Callable[..., Optimizer] = field(repr=False)
    top_level: tuple[Hyperparameter, ...] = ()
    section: str | None = None
    section_keys: tuple[Hyperparameter, ...] = ()
    sgd_family: bool = False
    order: int = 0
    check: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)
    baseline: str | None = None
    statistics: tuple[Statistic, ...] = ()
    lr_gain: str | None = None
    scale: Callable[[Mapping[str, Any], int], float] | None = field(default=None, repr=False)
    scale_invariant_budget: bool = False
    heatmaps: tuple[tuple[str, str], ...] = ()
    horizon: str | None = None
    wraps: Callable[[Technique], bool] | None = field(default=None, repr=False)

    @property
    def hyperparameters(self) -> tuple[tuple[str, Hyperparameter], ...]:
        """(config key, declaration) pairs, e.g. ``("demon.beta_init", ...)``."""
        top = tuple((h.name, h) for h in self.top_level)
        return top + tuple((f"{self.section}.{h.name}", h) for h in self.section_keys)


def _pick(table: tuple[Hyperparameter, ...], *names: str) -> tuple[Hyperparameter, ...]:
    by_name = {h.name: h for h in table}
    return tuple(by_name[n] for n in names)


def _with_default(h: Hyperparameter, default: Any) -> Hyperparameter:
    return Hyperparameter(**{**h.__dict__, "default": default})


_LR = Hyperparameter("lr", float, 1e-3, "learning rate η", 0.0, low_open=True)
_WD = Hyperparameter("weight_decay", float, 0.0, "weight decay λ", 0.0)
_BETA1 = Hyperparameter("beta1", float, 0.9, "first-moment decay β₁", 0.0, 1.0, high_open=True)
_BETA2 = Hyperparameter("beta2", float, 0.999, "second-moment decay β₂", 0.0, 1.0, high_open=True)
_EPS = Hyperparameter("eps", float, 1e-8, "denominator term ε", 0.0)
_SGD = (
    _with_default(_LR, 1e-2),
    Hyperparameter("momentum", float, 0.0, "heavy-ball momentum", 0.0, 1.0, high_open=True),
    _WD,
    Hyperparameter("nesterov", bool, False, "Nesterov momentum (needs momentum > 0)"),
)
_ADAM = (_LR, _BETA1, _BETA2, _EPS, _WD)


def _torch_sgd(params: Any, hp: dict[str, Any], _: dict[str, Any]) -> Optimizer:
    if hp.get("nesterov") and hp.get("momentum", 0.0) == 0.0:
        raise ConfigError("nesterov", True, "needs momentum > 0")
    return torch.optim.SGD(params, **hp)


def _torch_adam(cls: type[Optimizer]) -> Callable[[Any, dict[str, Any], dict[str, Any]], Optimizer]:
    def build(params: Any, hp: dict[str, Any], _: dict[str, Any]) -> Optimizer:
        hp = dict(hp)
        betas = (hp.pop("beta1", 0.9), hp.pop("beta2", 0.999))
        return cls(params, betas=betas, **hp)

    return build


def _adahessian(params: Any, hp: dict[str, Any], section: dict[str, Any]) -> Optimizer:
    hp = dict(hp)
    betas = (hp.pop("beta1", 0.9), hp.pop("beta2", 0.999))
    return AdaHessian(params, betas=betas, **hp, **section)


def _sgd_family(base: Technique) -> bool:
    """AdaScale's bases: its gain rescales an SGD step (arXiv:2007.05105 §3); an adaptive step has its own scale."""
    return base.sgd_family


def _adascale_check(config: dict[str, Any]) -> None:
    if (config.get("anderson") or {}).get("safeguard"):
        allowed = "false under adascale (AdaScale.step takes no closure, the safeguard needs one)"
        raise ConfigError("anderson.safeguard", True, allowed)
    base = TECHNIQUES[config["base"]]
    if not _sgd_family(base):
        family = ", ".join(wrapped_bases(TECHNIQUES["adascale"]))
        reason = " (its Hessian-vector backward would fire AdaScale's hooks)" if base.name == "adahessian" else ""
        allowed = f"needs an SGD-family base ({family}), not {base.name!r}{reason}"
        raise ConfigError("adascale", config["adascale"], allowed)


def _adascale_scale(section: Mapping[str, Any], workers: int) -> float:
    """AdaScale's S: its ``scale`` when set, else workers × accumulated micro-batches (what AdaScale itself uses)."""
    if section.get("scale") is not None:
        return float(section["scale"])
    return float(workers * (section.get("num_gradients_to_accumulate") or 1))


_DEMON_STATISTICS = (Statistic("demon_beta", "the decayed momentum β_t of this step"),)


def _with_section(cls: type[Optimizer]) -> Callable[[Any, dict[str, Any], dict[str, Any]], Optimizer]:
    def build(params: Any, hp: dict[str, Any], section: dict[str, Any]) -> Optimizer:
        return cls(params, **hp, **section)

    return build


TECHNIQUES: dict[str, Technique] = {
    t.name: t
    for t in (
        Technique(
            "sgd",
            "base",
            "SGD with optional heavy-ball/Nesterov momentum (torch.optim.SGD)",
            "Robbins & Monro 1951",
            top_level=_SGD,
            build=_torch_sgd,
            sgd_family=True,
            heatmaps=(("lr", "momentum"),),
        ),
        Technique(
            "adam",
            "base",
            "Adam (torch.optim.Adam)",
            "Kingma & Ba, ICLR 2015",
            top_level=_ADAM,
            build=_torch_adam(torch.optim.Adam),
        ),
        Technique(
            "adamw",
            "base",
            "Adam with decoupled weight decay (torch.optim.AdamW)",
            "Loshchilov & Hutter, ICLR 2019",
            top_level=(*_ADAM[:-1], _with_default(_WD, 1e-2)),
            build=_torch_adam(torch.optim.AdamW),
        ),
        Technique(
            "demon_sgd",
            "base",
            "SGD momentum with Demon decay β/(1-β) → 0 over the run",
            "arXiv:1910.04952",
            top_level=(_with_default(_LR, 1e-2), *_pick(DEMON_SGD_HYPERPARAMETERS, "weight_decay", "nesterov")),
            section="demon",
            section_keys=_pick(DEMON_SGD_HYPERPARAMETERS, "beta_init", "total_steps"),
            build=_with_section(DemonSGD),
            sgd_family=True,
            baseline="sgd",
            statistics=_DEMON_STATISTICS,
            heatmaps=(("lr", "demon.beta_init"),),
            horizon="total_steps",
        ),
        Technique(
            "demon_adam",
            "base",
            "Adam with Demon-decayed first-moment momentum",
            "arXiv:1910.04952",
            top_level=_pick(DEMON_ADAM_HYPERPARAMETERS, "lr", "beta2", "eps", "weight_decay", "decoupled_weight_decay"),
            section="demon",
            section_keys=_pick(DEMON_ADAM_HYPERPARAMETERS, "beta_init", "total_steps", "variant"),
            build=_with_section(DemonAdam),
            baseline="adam",
            statistics=_DEMON_STATISTICS,
            heatmaps=(("lr", "demon.beta_init"),),
            horizon="total_steps",
        ),
        Technique(
            "adahessian",
            "base",
            "Adam-like step preconditioned by a Hutchinson Hessian diagonal",
            "arXiv:2006.00719",
            top_level=_pick(ADAHESSIAN_HYPERPARAMETERS, "lr", "beta1", "beta2", "eps", "weight_decay"),
            section="adahessian",
            section_keys=_pick(
                ADAHESSIAN_HYPERPARAMETERS, "hessian_power", "update_each", "n_samples", "spatial_averaging", "seed"
            ),
            build=_adahessian,
            baseline="adam",
        ),
        Technique(
            "lookahead",
            "wrapper",
            "k fast steps, then slow weights φ ← φ + α(θ − φ), θ ← φ",
            "arXiv:1907.08610",
            section="lookahead",
            section_keys=LOOKAHEAD_HYPERPARAMETERS,
            build=lambda inner, hp: Lookahead(inner, **hp),
            order=10,
            heatmaps=(("lookahead.k", "lookahead.alpha"),),
        ),
        Technique(
            "anderson",
            "wrapper",
            "type-II Anderson extrapolation of the iterates, with an RSD-switched moving average",
            "arXiv:2110.14813",
            section="anderson",
            section_keys=ANDERSON_HYPERPARAMETERS,
            build=lambda inner, hp: AndersonAcceleration(inner, **hp),
            order=20,
            statistics=(
                Statistic("aa_extrapolations", "extrapolations so far", on_progress_line=False),
                Statistic("aa_regularized_fraction", "share of extrapolations that needed more regularisation"),
                Statistic("aa_accepted_fraction", "share of extrapolations the safeguard accepted"),
                Statistic("aa_averaging_fraction", "share of steps that took the moving average", by_batch_size=True),
            ),
            heatmaps=(("anderson.history", "anderson.rsd_threshold"),),
        ),
        Technique(
            "adascale",
            "wrapper",
            "lr × gain r ∈ [1, S] from the gradient variance; scale-invariant progress τ",
            "arXiv:2007.05105",
            section="adascale",
            section_keys=ADASCALE_HYPERPARAMETERS,
            build=lambda inner, hp: AdaScale(inner, **hp),
            order=30,
            check=_adascale_check,
            statistics=(
                Statistic("adascale_gain", "gain r ∈ [1, S] of this step's learning rate"),
                Statistic("adascale_scale_invariant_steps", "scale-invariant iterations τ", on_progress_line=False),
            ),
            lr_gain="adascale_gain",
            scale=_adascale_scale,
            scale_invariant_budget=True,
            wraps=_sgd_family,
        ),
    )
}

_plugins_loaded = False


def register_technique(technique: Technique) -> Technique:
    """Add ``technique`` to :data:`TECHNIQUES` (this process); returns it. A wrapper's section is its name."""
    if not isinstance(technique, Technique):
        raise TypeError(f"register_technique expects a Technique, got {technique!r}")
    if technique.kind not in ("base", "wrapper"):
        raise ValueError(f"Technique {technique.name!r}: kind must be 'base' or 'wrapper', not {technique.kind!r}")
    if technique.kind == "wrapper" and technique.section != technique.name:
        raise ValueError(f"wrapper {technique.name!r}: its section must be its name, not {technique.section!r}")
    if technique.name in TECHNIQUES and TECHNIQUES[technique.name] is not technique:
        raise ValueError(f"a technique named {technique.name!r} exists already")
    TECHNIQUES[technique.name] = technique
    return technique


def techniques() -> dict[str, Technique]:
    """Every technique by name: built in, registered, and the entry points of group ``autoaccel.techniques`` (loaded
    at the first call, not at import: a plugin imports autoaccel.optim itself)."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for point in entry_points(group="autoaccel.techniques"):
            register_technique(point.load())
    return TECHNIQUES


def wrapped_bases(wrapper: Technique) -> list[str]:
    """The bases ``wrapper`` can wrap (its ``wraps``), by name."""
    return [n for n, t in techniques().items() if t.kind == "base" and (wrapper.wraps is None or wrapper.wraps(t))]


def _bases() -> list[str]:
    return [n for n, t in techniques().items() if t.kind == "base"]


def _wrappers() -> list[str]:
    """Wrapper names, innermost first."""
    return sorted((n for n, t in techniques().items() if t.kind == "wrapper"), key=lambda n: TECHNIQUES[n].order)


def _section_owners(section: str) -> list[str]:
    return [n for n, t in techniques().items() if t.kind == "base" and t.section == section]


def technique_label(config: Mapping[str, Any]) -> str:
    """The stack of an optimizer config as a name: wrappers outermost first, then the base (``anderson+adam``)."""
    wrappers = [name for name in reversed(_wrappers()) if config.get(name) is not None]
    return "+".join([*wrappers, str(config.get("base"))])


def techniques_in(label: str) -> list[Technique]:
    """The techniques of a stack named by :func:`technique_label` (``anderson+adam`` → Anderson, Adam); names no
    technique registered in this process has are left out."""
    known = techniques()
    return [known[name] for name in str(label).split("+") if name in known]


def trial_set_keys() -> frozenset[str]:
    """Config keys the trial sets from its step budget (``demon.total_steps``): never sampled, never perturbed."""
    return frozenset(f"{t.section}.{t.horizon}" for t in techniques().values() if t.horizon and t.section)


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a nested optimizer config without building anything; return it with values converted.

    Raises :class:`ConfigError` naming the key, the value and what is allowed.
    """
    if not isinstance(config, Mapping):
        raise ConfigError("optimizer", config, "a mapping with at least the key 'base'")
    base_name = config.get("base")
    bases = _bases()
    if base_name not in bases:
        raise ConfigError("base", base_name, "one of " + ", ".join(bases))
    base = TECHNIQUES[base_name]
    out: dict[str, Any] = {"base": base_name}
    top_names = {h.name for h in base.top_level}
    sections = {base.section} - {None} | set(_wrappers())
    allowed_keys = sorted({"base"} | top_names | sections)
    for key, value in config.items():
        if key == "base":
            continue
        if key in top_names:
            out.update(check_all(base.top_level, {key: value}))
        elif key in sections:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(key, value, "a mapping of its hyperparameters (or null to leave it out)")
            technique = base if key == base.section else TECHNIQUES[key]
            out[key] = check_all(technique.section_keys, dict(value), prefix=f"{key}.")
        elif _section_owners(key):
            raise ConfigError(key, value, f"only with base {' or '.join(_section_owners(key))}, not {base_name!r}")
        else:
            allowed = f"unknown key for base {base_name!r}; allowed keys: {', '.join(allowed_keys)}"
            raise ConfigError(key, value, allowed)
    if base.section:
        for h in base.section_keys:  # declared without a default and not nullable: the config must give it
            if h.default is None and not h.nullable and h.name not in out.get(base.section, {}):
                raise ConfigError(f"{base.section}.{h.name}", None, f"required: {h.help} ({h.allowed()})")
    for name in (base_name, *(n for n in _wrappers() if n in out)):
        if TECHNIQUES[name].check is not None:
            TECHNIQUES[name].check(out)
    return out


def build_optimizer(params: Iterable[Any], config: Mapping[str, Any]) -> Optimizer:
    """Build ``base`` (+ ``lookahead``, ``anderson``, ``adascale`` when present) from a nested config."""
    config = validate_config(config)
    base = TECHNIQUES[config["base"]]
    top = {h.name: config.get(h.name, h.default) for h in base.top_level if h.name in config or h.default is not None}
    optimizer = base.build(params, top, config.get(base.section, {}) if base.section else {})
    for name in _wrappers():
        if name in config:
            optimizer = TECHNIQUES[name].build(optimizer, config[name])
    return optimizer
