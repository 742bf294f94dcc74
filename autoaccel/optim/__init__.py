"""Optimizer accelerations as composable, exactly resumable ``torch.optim`` optimizers.

Bases: :class:`DemonSGD`, :class:`DemonAdam`, :class:`AdaHessian` (and torch's SGD/Adam/AdamW through the
registry). Wrappers over any optimizer: :class:`Lookahead`, :class:`AndersonAcceleration`, :class:`AdaScale`.
:func:`build_optimizer` builds a stack from a nested config; :data:`TECHNIQUES` lists what exists.
"""

from ._hyper import ConfigError, Hyperparameter
from ._registry import TECHNIQUES, Technique, build_optimizer, validate_config
from ._wrapper import OptimizerWrapper, iter_stack, optimizer_statistics
from .adahessian import AdaHessian
from .adascale import AdaScale
from .anderson import AndersonAcceleration
from .demon import DemonAdam, DemonSGD, demon_momentum
from .lookahead import Lookahead

__all__ = [
    "TECHNIQUES",
    "AdaHessian",
    "AdaScale",
    "AndersonAcceleration",
    "ConfigError",
    "DemonAdam",
    "DemonSGD",
    "Hyperparameter",
    "Lookahead",
    "OptimizerWrapper",
    "Technique",
    "build_optimizer",
    "demon_momentum",
    "iter_stack",
    "optimizer_statistics",
    "validate_config",
]
