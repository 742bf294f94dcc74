"""Sweeps: a spec (``trials/*.yaml``) → a search space (``search_spaces/*.yaml``) → Ray Tune trials sampled by
Optuna, stopped early by ASHA and recorded in MLflow by the driver alone; reruns of a finished sweep's best
configurations over seeds and batch sizes.

Modules, in the direction data flows: ``spec`` (validation), ``space`` (YAML → Optuna define-by-run), ``reruns``
(a ``study`` section's points), ``trainable`` (what runs in a trial), ``driver`` (:func:`run_sweep`), and the
adapters it plugs into Ray Tune: ``_optuna`` (searcher), ``_asha`` (scheduler), ``_mlflow_callback`` (tracking).
"""

from .driver import run_sweep
from .space import SearchSpace, load_space
from .spec import SweepSpec, load_spec

__all__ = ["SearchSpace", "SweepSpec", "load_space", "load_spec", "run_sweep"]
