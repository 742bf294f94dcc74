"""Comparisons: every technique family tuned with the same budget, then its best configuration re-run on paired
seeds beside its baseline's, so that the analysis can say whether the technique helps (``docs/compare.md``).

A spec with a ``compare`` section (its ``space`` must have ``families``)::

    compare:
      tuning: {trials_per_family: 8, replicates: 3}   # each family: 3 independent studies of 8 trials each
      final: {top: 1, seeds: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], batch_sizes: [40]}  # a space's fixed batch stays
      baselines: {anderson_sgd: sgd}          # inferred when left out
      equivalence_margin: 0.02                # within ±2% of the baseline counts as equivalent

Tuning gives every family ``replicates`` independent Optuna studies (each its own sampler stream, seeded by a hash
of the spec's seed, the setting, the family and the replicate: :func:`sampler_seed`) of ``trials_per_family`` trials
each, so that which configuration a small search happens to find is measured, not assumed: the final phase re-runs
every study's choice and the verdict's interval spans studies × seeds. Without a ``scheduler`` in the spec a
comparison's trials all train their whole budget (FIFO): successive halving from early epochs discards slow starters
(``docs/compare.md``). With ASHA each study has rungs of its own, so a family is never stopped for learning slower in
its first epochs than another family. The studies take turns for the trial slots, in one Ray Tune run. The final
phase re-runs each study's ``top`` best tuning configurations on every seed and batch size, one trial each, never
stopped early. Seed ``s`` of a technique and seed ``s`` of its baseline see the same initialisation and data order.
The final seeds default to ten seeds the tuning did not use, so no final number is the run its configuration was
selected on.

Baselines: a family's baseline is the family that trains the same base optimizer with no wrapper (Anderson over SGD
→ SGD); a base that modifies another one (Demon SGD, Demon Adam, AdaHessian) is measured against the base it
modifies (the registry's ``Technique.baseline``: SGD, Adam, Adam). A family that is its own reference (plain SGD)
is a baseline, not a row of the verdict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoaccel.config import Hyperparameter, check_all, check_int_list
from autoaccel.errors import ConfigError

from .space import TAG, SearchSpace, sample

__all__ = [
    "COMPARE",
    "FINAL",
    "FINAL_PHASE",
    "STUDY_KEY",
    "TUNING",
    "TUNING_PHASE",
    "Compare",
    "TuningStudy",
    "check_compare",
    "protocol_notes",
    "sampler_seed",
]

TUNING = (
    Hyperparameter("trials_per_family", int, 16, "tuning trials of each of a family's studies (the equal budget)", 1),
    Hyperparameter("replicates", int, 3, "independent tuning studies of each family (tuning luck in the interval)", 1),
)
FINAL = (Hyperparameter("top", int, 1, "best tuning configurations of each family re-run", 1),)
TUNING_PHASE, FINAL_PHASE = "tuning", "final"
# In a tuning trial's config: the key of the study that drew it. A helper key (leading _): never passed on to the
# optimizer, read by the per-study scheduler and the tracking.
STUDY_KEY = "_study"
COMPARE = (
    Hyperparameter(
        "equivalence_margin",
        float,
        0.02,
        "relative difference within which two families are equivalent",
        0.0,
        1.0,
        low_open=True,
        high_open=True,
    ),
)
_KEYS = ("tuning", "final", "baselines", *(h.name for h in COMPARE))
_STACK_SAMPLES = 10  # draws per family to read which stack (base + wrappers) it trains, and whether it is fixed


@dataclass(frozen=True)
class TuningStudy:
    """One of a family's independent tuning studies: its own Optuna study, sampler stream and (with ASHA) rungs."""

    family: str
    replicate: int  # 0 … replicates − 1
    sampler_seed: int

    @property
    def key(self) -> str:
        """The study's name inside its sweep: Optuna's study name and the scheduler's file use it."""
        return f"{self.family}:{self.replicate}"


def sampler_seed(seed: int, setting: Mapping[str, Any], family: str, replicate: int) -> int:
    """A study's sampler seed: a hash of the spec's seed, the setting (workload and budget), the family and the
    replicate, so that no two studies of a comparison, nor of a series of comparisons over settings, draw the same
    first configurations (a seed of spec seed + position made every setting's first draws identical)."""
    text = json.dumps([seed, setting, family, replicate], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1  # < 2**31: any sampler takes it


@dataclass(frozen=True)
class Compare:
    """A validated ``compare`` section."""

    families: tuple[str, ...]
    trials_per_family: int  # per study
    replicates: int  # studies per family (one for a family whose space fixes its configuration)
    studies: tuple[TuningStudy, ...]
    equivalence_margin: float
    top: int
    seeds: tuple[int, ...]  # of the final runs
    batch_sizes: tuple[int, ...]  # of the final runs
    baselines: dict[str, str]  # family → its baseline family (techniques only; baselines are not keys)
    stacks: dict[str, str]  # family → the stack it trains, e.g. "anderson+sgd"
    fixed_batches: dict[str, int]  # family → the batch size its space fixes (it keeps it in its final runs)

    def final_batch_sizes(self, family: str) -> tuple[int, ...]:
        """The batch sizes of a family's final runs: the one its space fixes, else ``final.batch_sizes``."""
        fixed = self.fixed_batches.get(family)
        return self.batch_sizes if fixed is None else (fixed,)

    @property
    def tuning_trials(self) -> int:
        return len(self.studies) * self.trials_per_family

    @property
    def final_trials(self) -> int:
        """Each study's ``top`` choices, on every seed and batch size."""
        per_study = self.top * len(self.seeds)
        return sum(per_study * len(self.final_batch_sizes(s.family)) for s in self.studies)


TPE_STARTUP = 10  # optuna.samplers.TPESampler's n_startup_trials (Optuna 5.0): random draws before it models


def protocol_notes(compare: Compare, sampler: str, scheduler: Mapping[str, Any], epochs: int | None) -> list[str]:
    """What the tuning protocol a spec asks for can cost the verdict, in words (the sweep's log and the report)."""
    notes = []
    if sampler == "tpe" and compare.trials_per_family <= TPE_STARTUP:
        notes.append(
            f"TPE draws a study's first {TPE_STARTUP} trials at random: with {compare.trials_per_family} trials per "
            "study the tuning is random search"
        )
    if scheduler["type"] == "asha":
        grace = scheduler["grace_period"]
        short = epochs is not None and 3 * grace < epochs
        notes.append(
            f"ASHA ranks trials from epoch {grace}"
            + (f", under a third of the {epochs}-epoch budget" if short else "")
            + ": a family whose advantage shows late can lose its best configurations at the first rungs, and a "
            "study keeps few completed trials to choose from (docs/compare.md; FIFO, the default, trains every "
            "trial its whole budget)"
        )
    return notes


def _mapping(raw: Any, key: str, allowed: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, allowed)
    return raw


def check_compare(
    raw: Any, space: SearchSpace, tuning_seeds: Sequence[int], batch_size: int, seed: int, setting: Mapping[str, Any]
) -> Compare:
    """Validate a ``compare`` section against its space; infer the baselines; give each family's studies their
    sampler seeds (from the spec's ``seed`` and the ``setting``). Raises :class:`ConfigError`."""
    section = _mapping(raw, "compare", "a mapping with tuning, final and baselines")
    for key in section:
        if key not in _KEYS:
            raise ConfigError(f"compare.{key}", section[key], "unknown key; allowed keys: " + ", ".join(_KEYS))
    if len(space.families) < 2:
        allowed = "a space with families (at least a technique and its baseline) to compare"
        raise ConfigError("space", str(space.path), allowed)
    tuning = check_all(TUNING, dict(_mapping(section.get("tuning"), "compare.tuning", "a mapping")), "compare.tuning.")
    final_raw = dict(_mapping(section.get("final"), "compare.final", "a mapping with top, seeds, batch_sizes"))
    lists = {k: final_raw.pop(k) for k in ("seeds", "batch_sizes") if k in final_raw}
    final = check_all(FINAL, final_raw, "compare.final.")
    options = check_all(COMPARE, {h.name: section[h.name] for h in COMPARE if h.name in section}, "compare.")
    seeds = check_int_list(lists.get("seeds", _unused_seeds(tuning_seeds)), "compare.final.seeds", 0)
    batch_sizes = check_int_list(lists.get("batch_sizes", [batch_size]), "compare.final.batch_sizes", 1)
    draws = {family: _draws(space, family) for family in space.families}
    stacks = {family: _stack(draws[family], family) for family in space.families}
    given = _mapping(section.get("baselines"), "compare.baselines", "a mapping of family → its baseline family")
    for family, baseline in given.items():
        for value, where in ((family, f"compare.baselines.{family}"), (baseline, f"compare.baselines.{family}")):
            if value not in space.families:
                raise ConfigError(where, value, "a family of the space: " + ", ".join(space.families))
        if family == baseline:
            raise ConfigError(f"compare.baselines.{family}", baseline, "another family (a family is not its own)")
    baselines = {**_inferred(stacks, space, skip=set(given)), **dict(given)}
    fixed = {f: b for f in space.families if (b := _fixed_batch(space, f)) is not None}
    for family, batch in fixed.items():
        baseline = baselines.get(family)
        theirs = (fixed[baseline],) if baseline in fixed else tuple(batch_sizes)
        if baseline is not None and batch not in theirs and len(theirs) > 1:
            allowed = (
                f"one batch size for {baseline}: {family} runs at its own batch {batch} and is measured against "
                f"{baseline} at {baseline}'s batch, which must be one (fix it in {baseline}'s space)"
            )
            raise ConfigError("compare.final.batch_sizes", list(batch_sizes), allowed)
    tuning = {**{h.name: h.default for h in TUNING}, **tuning}  # the section may leave them out
    replicates = tuning["replicates"]
    studies = tuple(
        TuningStudy(family, r, sampler_seed(seed, setting, family, r))
        for family in space.families
        for r in range(1 if _is_fixed(draws[family]) else replicates)
    )
    return Compare(
        families=tuple(space.families),
        trials_per_family=tuning["trials_per_family"],
        replicates=replicates,
        studies=studies,
        equivalence_margin=options.get("equivalence_margin", COMPARE[0].default),
        top=final.get("top", FINAL[0].default),
        seeds=tuple(seeds),
        batch_sizes=tuple(batch_sizes),
        baselines=baselines,
        stacks={f: "+".join(s) for f, s in stacks.items()},
        fixed_batches=fixed,
    )


def _fixed_batch(space: SearchSpace, family: str) -> int | None:
    """The batch size a family's own parameters fix (``budget.batch_size: {value: 320}``), if they do: such a family
    is a scale (AdaScale at S × the base batch, the linear scaling rule) and keeps its batch in its final runs,
    measured against a baseline at the baseline's own batch."""
    for param in space.params:
        if param.name == f"budget.batch_size{TAG}{family}" and param.kind == "value" and len(param.when) == 1:
            return int(param.value)  # its one condition is the family's own
    return None


def _unused_seeds(tuning_seeds: Sequence[int], n: int = 10) -> list[int]:
    """The first ``n`` seeds the tuning did not train on."""
    seeds, candidate = [], 0
    while len(seeds) < n:
        if candidate not in tuning_seeds:
            seeds.append(candidate)
        candidate += 1
    return seeds


def _draws(space: SearchSpace, family: str) -> list[Any]:
    return sample(space, _STACK_SAMPLES, seed=0, family=family)


def _stack(draws: Sequence[Any], family: str) -> tuple[str, ...]:
    """(wrappers outermost first..., base) a family trains, read from a few draws; the same in every draw."""
    from autoaccel.optim import technique_label

    seen = {technique_label(drawn.optimizer) for drawn in draws}
    if len(seen) > 1:
        allowed = f"one stack per family to infer its baseline (draws give {', '.join(sorted(seen))}); name it"
        raise ConfigError(f"compare.baselines.{family}", None, allowed)
    return tuple(next(iter(seen)).split("+"))


def _is_fixed(draws: Sequence[Any]) -> bool:
    """Whether a family's space fixes its whole configuration: its studies would all find the same one, so it gets
    one (a replicate of it would repeat the same runs, not measure tuning luck)."""
    first = draws[0]
    return all(d.optimizer == first.optimizer and d.budget == first.budget for d in draws)


def _inferred(stacks: dict[str, tuple[str, ...]], space: SearchSpace, skip: set[str]) -> dict[str, str]:
    """family → the family that trains its reference base with no wrapper, for every family that is not one (and
    is not in ``skip``: its baseline is given)."""
    from autoaccel.optim import techniques

    plain: dict[str, list[str]] = {}
    for family, stack in stacks.items():
        if len(stack) == 1:
            plain.setdefault(stack[0], []).append(family)
    out = {}
    for family, stack in stacks.items():
        base = stack[-1]
        reference = techniques()[base].baseline or base
        if family in skip or (len(stack) == 1 and reference == base):
            continue  # given, or a plain base optimizer: a baseline itself
        candidates = [f for f in plain.get(reference, []) if f != family]
        if len(candidates) != 1:
            found = f"families {', '.join(candidates)} all train" if candidates else "no family trains"
            allowed = (
                f"a baseline named in compare.baselines: {family} trains {'+'.join(stack)}, and {found} plain "
                f"{reference!r}"
            )
            raise ConfigError(f"compare.baselines.{family}", None, allowed, str(space.path))
        out[family] = candidates[0]
    return out
