"""A torch optimizer whose state dict carries one extra namespaced entry (global counters, random generators)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["NamespacedStateOptimizer"]


class NamespacedStateOptimizer(Optimizer):
    """``state_dict()`` = torch's (per-parameter state keyed by position, param groups) + ``{state_key: extra}``."""

    state_key = "extra"
    # Not copied or pickled: hooks and a scheduler's instance-level ``step`` (bound to the original object), and each
    # subclass's scratch buffers.
    _transient: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        """Everything a copy needs: torch's own ``__getstate__`` keeps only defaults, state and param groups, so a
        copy of a Demon or AdaHessian optimizer lost its schedule, step count and probe generators."""
        skip = {
            "step",
            *self._transient,
            *(k for k in self.__dict__ if k.startswith("_optimizer_") and k.endswith("hooks")),
        }
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    @staticmethod
    def _closure_loss(closure: Callable[[], Any] | None) -> Any:
        """torch's optional closure, evaluated with gradients enabled (``step`` itself runs under no_grad)."""
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    def _extra_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state[self.state_key] = self._extra_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        if self.state_key not in state_dict:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: no {self.state_key!r} entry: "
                f"this state dict was not saved by a {type(self).__name__}"
            )
        extra = state_dict.pop(self.state_key)
        super().load_state_dict(state_dict)
        self._load_extra_state(extra)
