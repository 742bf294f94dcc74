"""Workloads: what a trial trains. ``get_workload(name, **options)``; ``WORKLOADS`` lists what exists.

Built in: ``admissions_mlp`` (graduate-admissions regression), ``burgers_pinn`` (Burgers' equation, 1+1-d and
100-d), ``image_classification`` (CIFAR-style and torchvision ResNets), ``quadratic`` (noisy ill-conditioned least
squares). Bring your own by subclassing :class:`Workload` (see the README).
"""

from ._base import InMemoryBatches, Workload, options_table
from ._registry import WORKLOADS, get_workload, register_workload, workload_class

__all__ = [
    "WORKLOADS",
    "InMemoryBatches",
    "Workload",
    "get_workload",
    "options_table",
    "register_workload",
    "workload_class",
]
