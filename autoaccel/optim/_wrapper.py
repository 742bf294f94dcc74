"""The protocol every autoaccel wrapper follows, so that any wrapper composes with any optimizer.

A wrapper *is* a :class:`torch.optim.Optimizer` (LR schedulers and step hooks accept it) whose ``param_groups`` are
the inner optimizer's very list: a scheduler that changes ``lr`` on the wrapper changes it for the inner optimizer.
``step(closure)`` calls the inner ``step`` exactly once. The wrapper's own per-parameter tensors live in
``self.state`` (keyed by parameter, like torch's); ``state_dict()`` keys them by parameter *position* and nests the
inner optimizer's state dict, so a checkpoint loads into freshly built objects and through
``torch.load(weights_only=True)``.

``evaluation_weights()`` puts the weights the stack outputs into the parameters for an evaluation and the training
weights back on exit (see :meth:`OptimizerWrapper.evaluation_weights` for how layers compose).
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.optim import Optimizer

from . import _protocol

__all__ = ["OptimizerWrapper", "iter_stack", "optimizer_statistics"]

_HOOK_DICTS = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)


class OptimizerWrapper(Optimizer):
    """Base class of the wrappers (Lookahead, AndersonAcceleration, AdaScale).

    Subclasses set ``state_key`` (their namespace in the state dict), implement ``step`` and, for state beyond the
    per-parameter tensors in ``self.state``, ``_extra_state``/``_load_extra_state``. ``_init_group`` prepares the
    wrapper's state for a param group (at construction and on ``add_param_group``).
    """

    state_key = "wrapper"
    # while this layer's output is swapped in (inside evaluation_weights): the training weights it put aside
    _training_weights: dict[torch.Tensor, torch.Tensor] | None = None

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        # Deliberately not Optimizer.__init__: that would copy the param groups instead of sharing them.
        self.optimizer = optimizer
        self.state: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
        for name in _HOOK_DICTS:
            setattr(self, name, OrderedDict())
        self._patch_step_function()

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)
        self._init_group(self.param_groups[-1])

    def _init_group(self, group: dict[str, Any]) -> None:
        """Create this wrapper's state for a new param group; nothing by default."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    # -- what the training loop asks (autoaccel.optim._protocol): the wrapped optimizer's answer by default -------
    @property
    def needs_closure(self) -> bool:
        return _protocol.needs_closure(self.optimizer)

    @property
    def micro_batches(self) -> int:
        return _protocol.micro_batches(self.optimizer)

    @property
    def needs_create_graph(self) -> bool:
        return _protocol.needs_create_graph(self.optimizer)

    @property
    def averages_gradients(self) -> bool:
        return _protocol.averages_gradients(self.optimizer)

    def set_horizon(self, total_steps: int) -> None:
        _protocol.set_horizon(self.optimizer, total_steps)

    @property
    def budget_progress(self) -> float | None:
        return _protocol.budget_progress(self.optimizer)

    @property
    def lr_gain(self) -> float:
        return _protocol.lr_gain(self.optimizer)

    # -- the weights the algorithm outputs, which a run is evaluated on ---------------------------------------
    def _output_weights(self) -> dict[torch.Tensor, torch.Tensor]:
        """This layer's own output for each parameter where it is not the parameter itself (Lookahead: φ). Empty by
        default: a wrapper that writes its result into the parameters passes on the output of what it wraps."""
        return {}

    @contextmanager
    def evaluation_weights(self) -> Iterator[None]:
        """``with opt.evaluation_weights(): evaluate(model)``: inside, the parameters hold the weights this stack
        outputs; on exit the training weights θ are back, bit for bit.

        Composition: the wrapped optimizer's output goes in first, then this layer's own over it, so for each
        parameter the outermost layer with an output of its own decides and a layer without one passes the inner
        one on: Anderson(Lookahead(SGD)) is evaluated on Lookahead's φ, Lookahead(Lookahead(SGD)) on the outer φ.
        Inside, ``step`` and ``load_state_dict`` refuse (a step would train weights that the exit overwrites), and
        ``state_dict`` also carries the training weights put aside: a checkpoint taken inside holds the evaluation
        weights as the model's, and loading the model first, then the optimizer, puts θ back, so it resumes exactly.
        """
        with _protocol.evaluation_weights(self.optimizer):
            own = self._output_weights() if self._training_weights is None else {}  # re-entered: in place already
            if not own:
                yield
                return
            params = list(own)
            with torch.no_grad():
                saved = [p.detach().clone(memory_format=torch.preserve_format) for p in params]
                torch._foreach_copy_(params, [own[p] for p in params])
            self._training_weights = dict(zip(params, saved, strict=True))
            try:
                yield
            finally:
                with torch.no_grad():
                    torch._foreach_copy_(params, saved)
                self._training_weights = None

    def _refuse_while_evaluating(self, action: str) -> None:
        """A clear error for ``action`` inside :meth:`evaluation_weights` of this stack."""
        if any(getattr(layer, "_training_weights", None) is not None for layer in iter_stack(self)):
            raise RuntimeError(
                f"{type(self).__name__}.{action}() inside evaluation_weights(): the parameters hold the evaluation "
                "weights there, and the training weights are put back on exit; call it outside"
            )

    # -- checkpointing ------------------------------------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _extra_state(self) -> dict[str, Any]:
        """Counters and hyperparameters to checkpoint (plain Python values or tensors)."""
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        inner = self.optimizer.state_dict()
        position = {p: i for i, p in enumerate(self._params())}
        own = {position[p]: dict(s) for p, s in self.state.items() if p in position and s}
        extra = self._extra_state()
        state = {"state": own, "param_groups": inner["param_groups"], self.state_key: extra, "inner": inner}
        if self._training_weights is not None:  # taken inside evaluation_weights(): the weights training goes on from
            state["training_weights"] = {position[p]: t for p, t in self._training_weights.items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.state_key not in state_dict or "inner" not in state_dict:
            found = sorted(k for k in state_dict if k not in ("state", "param_groups", "inner"))
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: this state dict was not saved by a {type(self).__name__} "
                f"(expected the key {self.state_key!r}, found {found or 'a plain optimizer state dict'})"
            )
        self._refuse_while_evaluating("load_state_dict")
        params = self._params()
        # Saved inside evaluation_weights(): the model's state holds the evaluation weights, this the training ones.
        # Written before the inner layers load theirs, so that the innermost record (the true θ) is the last word.
        with torch.no_grad():
            for index, weights in state_dict.get("training_weights", {}).items():
                p = self._param_at(params, index, "training weights")
                p.copy_(weights)
        self.optimizer.load_state_dict(state_dict["inner"])
        self.state = defaultdict(dict)
        for index, saved in state_dict["state"].items():
            p = self._param_at(params, index, "state")
            self.state[p] = {k: _to_param(v, p) for k, v in saved.items()}
        self._load_extra_state(state_dict[self.state_key])

    def _param_at(self, params: list[torch.Tensor], index: Any, what: str) -> torch.Tensor:
        if int(index) >= len(params):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: {what} for parameter #{int(index)}, "
                f"but the optimizer has {len(params)} parameters"
            )
        return params[int(index)]

    # Not copied or pickled: a scheduler's instance-level ``step`` (bound to the original object), hooks (callables
    # of the original), and each subclass's ``_transient`` attributes (scratch buffers, autograd hook handles).
    _transient: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        skip = {"step", *_HOOK_DICTS, *self._transient}
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in _HOOK_DICTS:
            setattr(self, name, OrderedDict())
        self._reset_transient()
        self._patch_step_function()

    def _reset_transient(self) -> None:
        """Recreate the ``_transient`` attributes on a copy (nothing by default)."""

    # -- reporting ----------------------------------------------------------------------------------------------
    def statistics(self) -> dict[str, float]:
        """This wrapper's counters for reports (e.g. ``aa_accepted_fraction``); empty by default."""
        return {}

    def _hyperparameters(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyperparameters().items())
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        return f"{type(self).__name__}({hyper},\n  optimizer=\n{inner})"


def _to_param(value: Any, param: torch.Tensor) -> Any:
    """A loaded state tensor, on the parameter's device (floating tensors also in its dtype), never aliased."""
    if not isinstance(value, torch.Tensor):
        return value
    dtype = param.dtype if value.is_floating_point() else value.dtype
    return value.to(device=param.device, dtype=dtype, copy=True)


def iter_stack(optimizer: Optimizer) -> Iterator[Optimizer]:
    """The optimizer and every optimizer it wraps, outermost first."""
    while True:
        yield optimizer
        if not isinstance(optimizer, OptimizerWrapper):
            return
        optimizer = optimizer.optimizer


def optimizer_statistics(optimizer: Optimizer) -> dict[str, float]:
    """The merged ``statistics()`` of every layer of a stack (``demon_beta``, ``adascale_gain``, ``aa_*``...)."""
    stats: dict[str, float] = {}
    for layer in iter_stack(optimizer):
        report = getattr(layer, "statistics", None)
        if callable(report):
            stats.update(report())
    return stats
