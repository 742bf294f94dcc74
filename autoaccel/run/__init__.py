"""One run: a workload trained with one optimizer config for a budget (a *trial*), resumable, honest about
divergence. Every trial — ``autoaccel train``, a sweep's trial on any node — is :func:`run_trial` or :class:`Trial`.
"""

from .budget import BUDGET, check_budget
from .checkpoint import CHECKPOINT
from .device import resolve_device
from .trial import Report, Trial, run_trial, validate_trial_config

__all__ = [
    "BUDGET",
    "CHECKPOINT",
    "Report",
    "Trial",
    "check_budget",
    "resolve_device",
    "run_trial",
    "validate_trial_config",
]
