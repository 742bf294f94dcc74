"""Optimizer accelerations as composable, exactly resumable ``torch.optim`` optimizers.

Bases: :class:`DemonSGD`, :class:`DemonAdam`, :class:`AdaHessian` (and torch's SGD/Adam/AdamW through the
registry). Wrappers over any optimizer: :class:`Lookahead`, :class:`AndersonAcceleration`, :class:`AdaScale`.
:func:`build_optimizer` builds a stack from a nested config; :func:`techniques` lists what exists and
:func:`register_technique` adds one. A training loop asks a stack what it needs through :func:`needs_closure`,
:func:`micro_batches`, :func:`needs_create_graph`, :func:`averages_gradients`, :func:`set_horizon`,
:func:`budget_progress` and :func:`lr_gain`, and evaluates inside :func:`evaluation_weights` (the weights the
stack outputs: Lookahead's slow weights), never through its classes; :func:`average_` is the mean over
data-parallel workers that the loop and AdaHessian share (:func:`worker_count`, :func:`worker_rank`: the process
group's). What the rest of autoaccel may know of a technique is on its :class:`Technique` (its statistics, scale,
learning-rate gain, heat-map pairs, horizon), so that nothing outside this package recognises one by its name.
"""

from ._data_parallel import average_, planned_workers, worker_count, worker_rank
from ._protocol import (
    averages_gradients,
    budget_progress,
    evaluation_weights,
    lr_gain,
    micro_batches,
    needs_closure,
    needs_create_graph,
    set_horizon,
)
from ._registry import (
    DEFAULT_BASE,
    TECHNIQUES,
    Statistic,
    Technique,
    build_optimizer,
    register_technique,
    technique_label,
    techniques,
    techniques_in,
    trial_set_keys,
    validate_config,
    wrapped_bases,
)
from ._wrapper import OptimizerWrapper, iter_stack, optimizer_statistics
from .adahessian import AdaHessian
from .adascale import AdaScale
from .anderson import AndersonAcceleration
from .demon import DemonAdam, DemonSGD, demon_momentum
from .lookahead import Lookahead

__all__ = [
    "DEFAULT_BASE",
    "TECHNIQUES",
    "AdaHessian",
    "AdaScale",
    "AndersonAcceleration",
    "DemonAdam",
    "DemonSGD",
    "Lookahead",
    "OptimizerWrapper",
    "Statistic",
    "Technique",
    "average_",
    "averages_gradients",
    "budget_progress",
    "build_optimizer",
    "demon_momentum",
    "evaluation_weights",
    "iter_stack",
    "lr_gain",
    "micro_batches",
    "needs_closure",
    "needs_create_graph",
    "optimizer_statistics",
    "planned_workers",
    "register_technique",
    "set_horizon",
    "technique_label",
    "techniques",
    "techniques_in",
    "trial_set_keys",
    "validate_config",
    "worker_count",
    "worker_rank",
    "wrapped_bases",
]
