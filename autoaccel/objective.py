"""The direction of a metric (``mode``: ``min`` or ``max``), in one place: which value is better, the best of many,
whether a target is reached, the worst possible value a failed run counts as, and the one order in which trials
rank (:func:`best_order`: its tie-break is the same in the CLI's best list, ``--output-json``, a comparison's final
runs and its verdict).

Every comparison goes through :func:`loss`, the value turned into "lower is better" (``sign · value``), so the rest of
the code never branches on the mode. Works on Python floats and on NumPy arrays alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["MODES", "best", "best_order", "check_mode", "is_better", "loss", "ranked", "reached", "sign", "worst"]

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


def best_order(
    items: Iterable[T],
    metric: Callable[[T], float | None],
    mode: str,
    *,
    second: Callable[[T], float | None] | None = None,
    second_mode: str = "min",
    started: Callable[[T], Any] | None = None,
) -> list[T]:
    """``items`` (trials) best first, by one documented rule:

    1. the better ``metric(item)`` in ``mode``; a missing or non-finite value (a failed trial) ranks last;
    2. at a tie, the better ``second(item)`` in ``second_mode`` (missing or non-finite last): a comparison passes
       the trial's final training loss (``train_loss``, lower better), so of two configurations that validate
       alike the one that fits its data better wins;
    3. at a tie again, the earlier ``started(item)`` (a start time or trial number; missing last);
    4. then the order ``items`` came in (the sort is stable).
    """
    check_mode(mode)
    check_mode(second_mode)

    def value(get: Callable[[T], float | None] | None, item: T, direction: str) -> float:
        raw = get(item) if get is not None else None
        number = math.nan if raw is None else float(raw)
        return loss(number, direction) if math.isfinite(number) else math.inf

    def key(item: T) -> tuple[float, float, bool, Any]:
        start = started(item) if started is not None else None
        missing = start is None or start != start  # None, NaN or NaT
        return value(metric, item, mode), value(second, item, second_mode), missing, 0 if missing else start

    return sorted(items, key=key)
