"""Robustness studies: the best configurations of a finished sweep, re-run over seeds and batch sizes as a sweep.

A spec with a ``study`` section instead of a ``space``::

    study:
      from: admissions-quickstart     # the source sweep's MLflow experiment
      tracking_uri: null              # where it is (default: the source sweep's own store, <storage>/<from>/mlflow.db)
      top: 3                          # its best completed configurations by its ranked metric ...
      per: family                     # ... per technique family (family), or overall (all)
      seeds: [0, 1, 2, 3, 4]          # every configuration on every seed: one trial each
      batch_sizes: [8, 40, 200]       # optional: and on every batch size (default: the configuration's own)
      perturb: 2.0                    # optional, instead of batch_sizes: also each configuration with one
                                      # hyperparameter at a time × or ÷ this factor (perturbation_configs)

Each (configuration, perturbation, seed, batch size) is one trial with its own MLflow child run (params
``study.source_run`` and ``study.perturbation``: ``base`` or ``<key>:up|down``), so the analysis sees seeds, batch
sizes and perturbations as plain columns. Studies never stop trials early: a
robustness number from a truncated run is not one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoaccel import objective
from autoaccel.config import Hyperparameter, check_all, check_int_list
from autoaccel.errors import ConfigError
from autoaccel.optim import trial_set_keys, validate_config
from autoaccel.redaction import redact_uri
from autoaccel.run.budget import check_budget
from autoaccel.tracking import Tags, children, decode_param, find_sweep_parent, flatten

from .space import to_config

if TYPE_CHECKING:
    from .compare import Compare

__all__ = [
    "PROBABILITY_KEYS",
    "STUDY",
    "Point",
    "best_runs",
    "final_points",
    "perturbation_configs",
    "study_points",
    "top_configurations",
    "trial_params",
]

# Hyperparameters in (0, 1) whose natural scale is 1 − x (an averaging horizon 1/(1 − x)); see perturbation_configs.
PROBABILITY_KEYS = frozenset({"momentum", "beta", "beta1", "beta2", "beta_init", "alpha", "dampening"})

STUDY = (
    Hyperparameter("top", int, 3, "best configurations to re-run", 1),
    Hyperparameter("per", str, "family", "rank per technique family or over all", choices=("family", "all")),
    Hyperparameter(
        "perturb", float, None, "also move each hyperparameter × and ÷ this factor", 1.0, low_open=True, nullable=True
    ),
)


@dataclass(frozen=True)
class Point:
    """One study trial: a configuration (flat optimizer keys, ``budget.batch_size``), its family and a seed."""

    params: dict[str, Any]
    family: str
    seed: int
    source_run: str
    perturbation: str = "base"
    replicate: int = 0  # a comparison's final run: the tuning study whose choice it re-runs

    @classmethod
    def from_config(cls, point: Mapping[str, Any]) -> Point:
        """The inverse of ``as_config()["point"]``."""
        keys = ("params", "family", "seed", "source", "perturbation")
        return cls(*(point[k] for k in keys), replicate=point.get("replicate", 0))  # saved before replicates: 0

    def as_config(self) -> dict[str, Any]:
        return {
            "point": {
                "params": self.params,
                "family": self.family,
                "seed": self.seed,
                "source": self.source_run,
                "perturbation": self.perturbation,
                "replicate": self.replicate,
            }
        }


def trial_params(run: Any, budget: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A trial's configuration from its MLflow params, typed back from MLflow's strings: flat optimizer keys
    (``lr``, ``anderson.history``) and ``budget.batch_size``; with the spec's ``budget``, every ``budget.<key>``
    the trial ran with another value (what its space sampled: a schedule, warm-up steps)."""
    params = {
        k.removeprefix("optimizer."): decode_param(v) for k, v in run.data.params.items() if k.startswith("optimizer.")
    }
    for key, text in run.data.params.items():
        name = key.removeprefix("budget.")
        if key.startswith("budget.") and (
            name == "batch_size" or (budget is not None and decode_param(text) != budget.get(name))
        ):
            params[key] = decode_param(text)
    return params


def final_points(
    client: Any,
    experiment_id: str,
    parent_id: str,
    compare: Compare,
    metric: str,
    mode: str,
    budget: Mapping[str, Any],
) -> list[Point]:
    """A comparison's final runs: each tuning study's ``top`` best configurations × seeds × batch sizes (every family
    has ``replicates`` independent studies: each one's choice is re-run, so the verdict sees tuning luck).

    Completed tuning trials rank by their final ``metric`` (the sweep's; a mean over the tuning seeds), ties broken
    by the final training loss, then the earlier trial (:func:`best_runs`); a study none of whose
    trials completed (all diverged or errored) re-runs its first trials, so that its failure shows in the verdict
    instead of the study vanishing from it."""
    runs = list(children(client, experiment_id, parent_id, **{Tags.PHASE: "tuning"}))
    runs.sort(key=lambda r: (r.info.start_time, r.info.run_id))
    points = []
    for study in compare.studies:
        own = [r for r in runs if r.data.tags.get(Tags.FAMILY) == study.family and _replicate(r) == study.replicate]
        done = [r for r in own if r.data.tags.get(Tags.STATUS) == "completed" and metric in r.data.metrics]
        chosen = best_runs(done, metric, mode)[: compare.top] or own[: compare.top]
        for run in chosen:
            params = trial_params(run, budget)
            for batch in compare.final_batch_sizes(study.family):
                for seed in compare.seeds:
                    config = {**params, "budget.batch_size": batch}
                    points.append(Point(config, study.family, seed, run.info.run_id, replicate=study.replicate))
    return points


def best_runs(runs: Sequence[Any], metric: str, mode: str) -> list[Any]:
    """MLflow trial runs best first by the one documented rule (:func:`autoaccel.objective.best_order`): the better
    ``metric``, then the lower final training loss, then the earlier start. The CLI's best list, ``--output-json``
    and a comparison's final runs all rank by it, as the verdict does."""
    return objective.best_order(
        runs,
        lambda r: r.data.metrics.get(metric),
        mode,
        second=lambda r: r.data.metrics.get("train_loss"),
        started=lambda r: r.info.start_time,
    )


def _replicate(run: Any) -> int:
    return int(run.data.tags.get(Tags.REPLICATE, 0))


def top_configurations(tracking_uri: str, experiment: str, top: int, per: str) -> list[tuple[str, dict, float, str]]:
    """(family, flat optimizer params + budget.batch_size, metric value, run id) of the best completed trials."""
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        # MLflow would create an empty store: validation must not write anything
        raise ConfigError("study.tracking_uri", tracking_uri, "the MLflow store of the source sweep (no file there)")
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError("study.from", experiment, f"the name of a sweep experiment in {redact_uri(tracking_uri)}")
    parent = find_sweep_parent(client, found.experiment_id)
    if parent is None:
        raise ConfigError("study.from", experiment, "an experiment written by `autoaccel sweep` (no sweep run in it)")
    # the direction of the workload's metric, which `metric` holds (the sweep may have ranked by another one)
    tags = parent.data.tags
    mode = tags.get(Tags.WORKLOAD_MODE, tags.get(Tags.MODE, "min"))
    completed = children(client, found.experiment_id, parent.info.run_id, **{Tags.STATUS: "completed"})
    # the source spec's budget, completed: what a trial ran with beyond it is what its space sampled (a schedule),
    # part of the configuration the study re-runs
    given = {
        k.removeprefix("budget."): decode_param(v) for k, v in parent.data.params.items() if k.startswith("budget.")
    }
    try:
        budget: dict[str, Any] | None = check_budget(given)
    except ConfigError:  # a parent from before budgets were logged whole: batch size only, as before
        budget = None
    rows = []
    for run in completed:
        value = run.data.metrics.get("metric")
        if value is None or not math.isfinite(value):
            continue
        rows.append((run.data.tags.get(Tags.FAMILY, "all"), trial_params(run, budget), value, run.info.run_id))
    if not rows:
        raise ConfigError("study.from", experiment, "a sweep with at least one completed trial (none yet)")
    rows = objective.ranked(rows, lambda row: row[2], mode)
    kept: list[tuple[str, dict, float, str]] = []
    taken: dict[str, int] = {}
    for row in rows:
        group = row[0] if per == "family" else "all"
        if taken.get(group, 0) < top:
            kept.append(row)
            taken[group] = taken.get(group, 0) + 1
    return kept


def _variants(params: dict[str, Any], factor: float) -> list[tuple[str, dict[str, Any]]]:
    """(``key:up|down``, flat params) for every valid one-at-a-time perturbation of a configuration."""
    budget = {k: v for k, v in params.items() if k.startswith("budget.")}
    nested = to_config({k: v for k, v in params.items() if not k.startswith("budget.")}).optimizer
    out = []
    for key, direction, config in perturbation_configs(nested, factor):
        try:
            validate_config(config)
        except ConfigError:  # moved out of its range (e.g. hessian_power × 2): not a configuration anyone can run
            continue
        out.append((f"{key}:{direction}", {**flatten(config), **budget}))
    return out


def study_points(section: Mapping[str, Any], default_uri: str) -> tuple[list[Point], dict[str, Any]]:
    """Validate a ``study`` section and expand it into trials; also return the checked section."""
    if not isinstance(section, Mapping):
        raise ConfigError("study", section, "a mapping with from, seeds and optionally top, per, batch_sizes")
    allowed = {"from", "tracking_uri", "seeds", "batch_sizes", *(h.name for h in STUDY)}
    for key in section:
        if key not in allowed:
            raise ConfigError(f"study.{key}", section[key], "unknown key; allowed keys: " + ", ".join(sorted(allowed)))
    source = section.get("from")
    if not isinstance(source, str) or not source:
        raise ConfigError("study.from", source, "the name of the source sweep (its MLflow experiment)")
    checked = {h.name: h.default for h in STUDY}
    checked.update(
        check_all(STUDY, {k: v for k, v in section.items() if k in ("top", "per", "perturb")}, prefix="study.")
    )
    seeds = check_int_list(section.get("seeds", [0]), "study.seeds", 0)
    batch_sizes = section.get("batch_sizes")
    if batch_sizes is not None:
        batch_sizes = check_int_list(batch_sizes, "study.batch_sizes", 1)
        if checked["perturb"] is not None:
            raise ConfigError("study.batch_sizes", batch_sizes, "left out with study.perturb (one study, one question)")
    uri = section.get("tracking_uri") or default_uri
    configs = top_configurations(uri, source, checked["top"], checked["per"])
    points = []
    for fam, params, _, run_id in configs:
        variants = [("base", params), *(_variants(params, checked["perturb"]) if checked["perturb"] else [])]
        for label, variant in variants:
            for batch in batch_sizes or [variant.get("budget.batch_size")]:
                for seed in seeds:
                    flat = {**variant, **({"budget.batch_size": batch} if batch is not None else {})}
                    points.append(Point(flat, fam, seed, run_id, label))
    return points, {**checked, "from": source, "tracking_uri": uri, "seeds": seeds, "batch_sizes": batch_sizes}


# -- perturbations of one configuration ------------------------------------------------------------------------
def _numeric_leaves(config: Mapping[str, Any], prefix: str = "") -> dict[str, int | float]:
    """Dotted keys of the int and float leaves of a nested config (bools are switches, not magnitudes)."""
    out: dict[str, int | float] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_numeric_leaves(value, name + "."))
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            out[name] = value
    return out


def _with_value(config: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(dict(config))
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node[part] = dict(node[part])
        node = node[part]
    node[leaf] = value
    return out


def _scaled(key: str, value: int | float, factor: float, probability_keys: frozenset[str]) -> dict[str, Any]:
    """{"up": larger value, "down": smaller value}, without directions that leave the value unchanged."""
    if isinstance(value, (int, np.integer)):
        if value < 1:
            return {}  # no multiplicative scale for counts below 1
        # Half-up rounding (Python's round() would send 2.5 to 2), kept ≥ 1.
        candidates = {
            "up": max(1, math.floor(value * factor + 0.5)),
            "down": max(1, math.floor(value / factor + 0.5)),
        }
    elif key.rsplit(".", 1)[-1] in probability_keys and 0 < value < 1:
        # Momentum-like: perturb 1 − x (the horizon 1/(1 − x) scales by the factor); up = closer to 1.
        down = 1 - (1 - value) * factor
        candidates = {"up": 1 - (1 - value) / factor, "down": down if down > 0 else value / factor}
    elif value == 0:
        return {}
    else:
        candidates = {"up": float(value) * factor, "down": float(value) / factor}
    return {direction: v for direction, v in candidates.items() if v != value}


def perturbation_configs(
    config: Mapping[str, Any],
    factor: float = 2.0,
    params: Sequence[str] | None = None,
    *,
    exclude: Sequence[str] | None = None,
    probability_keys: frozenset[str] = PROBABILITY_KEYS,
) -> list[tuple[str, str, dict[str, Any]]]:
    """One-at-a-time perturbations of a nested optimizer config: ``[(dotted key, "up" | "down", config), ...]``.

    For each numeric hyperparameter (dotted keys of the flattened config, e.g. ``anderson.history``; ``params``
    restricts them; ``exclude`` drops keys that are not tuned, by default those the trial sets from its step budget,
    :func:`~autoaccel.optim.trial_set_keys`, such as ``demon.total_steps``):

    - floats: ``x · factor`` (up) and ``x / factor`` (down); zero is skipped (scaling it changes nothing);
    - ints: the same, rounded half up and kept ≥ 1; ints below 1 are skipped;
    - probability-like keys (last part in ``probability_keys``: momentum, beta1, beta2, beta_init, alpha, ...) with a
      value in (0, 1): perturbed on the scale of ``1 − x``, the averaging horizon ``1/(1 − x)`` being what a factor
      should scale: up ``1 − (1 − x)/factor``, down ``1 − (1 − x)·factor``; the latter is kept inside (0, 1) by
      using ``x/factor`` instead when it would be ≤ 0.

    A direction that leaves the value unchanged (e.g. an int 1 divided) is left out. Bools, strings and None are not
    perturbed. The configs are not validated: check them (``autoaccel.optim.validate_config``) before running.
    """
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    leaves = _numeric_leaves(config)
    if params is not None:
        unknown = [p for p in params if p not in leaves]
        if unknown:
            raise ValueError(f"not numeric hyperparameters of the config: {unknown}; numeric ones: {sorted(leaves)}")
        leaves = {p: leaves[p] for p in params}
    excluded = trial_set_keys() if exclude is None else frozenset(exclude)
    out = []
    for key, value in leaves.items():
        if key in excluded:
            continue
        for direction, new in _scaled(key, value, factor, probability_keys).items():
            out.append((key, direction, _with_value(config, key, new)))
    return out
