"""The configuration schema every layer shares: declared hyperparameters (one table per technique, workload option,
budget and spec section drives validation, the CLI listing and error messages), list checks, and ``key=value``
overrides from the command line applied to nested mappings by dotted keys."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from autoaccel.errors import ConfigError

__all__ = ["Hyperparameter", "apply_overrides", "check_all", "check_int_list", "differences", "parse_value"]


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: its type, default and valid range (or choices), with a one-line description.

    Ranges are closed unless ``low_open``/``high_open`` say otherwise; ``None`` means unbounded. ``nullable`` allows
    ``None`` (meaning "derive it", as documented in ``help``).
    """

    name: str
    kind: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False

    def allowed(self) -> str:
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind is bool:
            text = "true or false"
        else:
            noun = {int: "an integer", float: "a number", str: "a string"}.get(self.kind, self.kind.__name__)
            lo = None if self.low is None else ("(" if self.low_open else "[") + _fmt(self.low)
            hi = None if self.high is None else _fmt(self.high) + (")" if self.high_open else "]")
            if lo and hi:
                text = f"{noun} in {lo}, {hi}"
            elif lo:
                text = f"{noun} {'>' if self.low_open else '≥'} {_fmt(self.low)}"
            elif hi:
                text = f"{noun} {'<' if self.high_open else '≤'} {_fmt(self.high)}"
            else:
                text = noun
        return text + (" or null" if self.nullable else "")

    def check(self, value: Any, key: str | None = None) -> Any:
        """Return ``value`` converted to this hyperparameter's type, or raise :class:`ConfigError`."""
        key = key or self.name
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(key, value, self.allowed())
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError(key, value, self.allowed())
            return value
        if self.kind in (bool, str):
            if not isinstance(value, self.kind):
                raise ConfigError(key, value, self.allowed())
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, value, self.allowed())
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(key, value, self.allowed())
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(key, value, self.allowed())
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ConfigError(key, value, self.allowed())
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise ConfigError(key, value, self.allowed())
        return value


def _fmt(x: float) -> str:
    return f"{x:g}"


def check_all(table: tuple[Hyperparameter, ...], values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Validate ``values`` (a subset of the table's names) and return them converted."""
    by_name = {h.name: h for h in table}
    out = {}
    for name, value in values.items():
        if name not in by_name:
            raise ConfigError(prefix + name, value, "unknown key; allowed keys: " + ", ".join(sorted(by_name)))
        out[name] = by_name[name].check(value, prefix + name)
    return out


def check_int_list(value: Any, key: str, low: int) -> list[int]:
    """A non-empty list of distinct integers ≥ ``low`` (seeds, batch sizes); a single integer is a list of one."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value)
        and len(set(value)) == len(value)
    ):
        raise ConfigError(key, value, f"a non-empty list of distinct integers ≥ {low}")
    return value


# YAML 1.1 reads these as booleans; on the command line they are words (``anderson.averaging=off``).
_WORDS = {"on", "off", "yes", "no", "y", "n"}


def parse_value(text: str) -> Any:
    """YAML scalar semantics (only true/false are booleans), plus numbers YAML 1.1 reads as strings (``1e-3``)."""
    if text.strip().lower() in _WORDS:
        return text.strip()
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(mapping: Mapping[str, Any], assignments: Sequence[str], flag: str = "--set") -> dict[str, Any]:
    """A deep copy of ``mapping`` with each ``a.b.c=value`` assigned (``value`` parsed by :func:`parse_value`)."""
    out = copy.deepcopy(dict(mapping))
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(flag, assignment, "KEY=VALUE with a dotted key, e.g. anderson.history=5")
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = parse_value(text)
    return out


_ABSENT = object()


def differences(before: Mapping[str, Any], after: Mapping[str, Any], shown: int = 5) -> str:
    """Where two nested configs differ, in words: ``budget.epochs 4 → 6; seeds [0] → [0, 1]`` (dotted keys, in the
    order they are written; a key one side lacks is ``(none)`` there); the first ``shown`` and how many more."""
    found: list[str] = []

    def walk(old: Any, new: Any, key: str) -> None:
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            for sub in dict.fromkeys([*old, *new]):
                walk(old.get(sub, _ABSENT), new.get(sub, _ABSENT), f"{key}.{sub}" if key else str(sub))
        elif old != new:
            found.append(f"{key} {_said(old)} → {_said(new)}")

    walk(before, after, "")
    more = f"; and {len(found) - shown} more" if len(found) > shown else ""
    return "; ".join(found[:shown]) + more


def _said(value: Any) -> str:
    return "(none)" if value is _ABSENT else json.dumps(value, default=str)
