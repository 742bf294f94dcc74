"""``key=value`` overrides from the command line, applied to nested mappings by dotted keys."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from autoaccel.optim._hyper import ConfigError

__all__ = ["apply_overrides", "parse_value"]


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
