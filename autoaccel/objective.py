"""The direction of a metric (``mode``: ``min`` or ``max``), in one place: which value is better, the best of many,
whether a target is reached, and the worst possible value a failed run counts as.

Every comparison goes through :func:`loss`, the value turned into "lower is better" (``sign · value``), so the rest of
the code never branches on the mode. Works on Python floats and on NumPy arrays alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["MODES", "best", "check_mode", "is_better", "loss", "ranked", "reached", "sign", "worst"]

MODES = ("min", "max")
T = TypeVar("T")


def check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    return mode


def sign(mode: str) -> float:
    """+1 for ``min``, −1 for ``max``: ``sign(mode) · value`` is lower when better."""
    return 1.0 if check_mode(mode) == "min" else -1.0


def loss(value: Any, mode: str) -> Any:
    """``value`` as a loss: lower is better whatever the mode (a float or an array)."""
    return sign(mode) * value


def worst(mode: str) -> float:
    """The worst value there is (+∞ for ``min``, −∞ for ``max``): what a failed run ranks as."""
    return sign(mode) * math.inf


def is_better(value: float, than: float | None, mode: str) -> bool:
    """``value`` strictly better than ``than`` (anything beats None)."""
    return than is None or loss(value, mode) < loss(than, mode)


def reached(value: float, target: float, mode: str) -> bool:
    """``value`` at or beyond ``target`` in the metric's direction."""
    return loss(value, mode) <= loss(target, mode)


def best(values: Iterable[float], mode: str) -> float:
    """The best of ``values`` (at least one)."""
    return (min if check_mode(mode) == "min" else max)(values)


def ranked(items: Iterable[T], key: Any, mode: str) -> list[T]:
    """``items`` sorted best first by ``key(item)``."""
    return sorted(items, key=key, reverse=check_mode(mode) == "max")
