"""autoaccel: tune optimizer accelerations and report, with evidence, which of them help.

The public API, each name from one place and imported on first use (PEP 562, as Optuna does for its heavy parts),
so ``import autoaccel`` costs nothing until a name is used::

    autoaccel.build_optimizer(params, {"base": "sgd", "lr": 0.05, "anderson": {"history": 5}})
    autoaccel.run_trial({"workload": {"name": "admissions_mlp"}, "optimizer": {...}, "budget": {"epochs": 30}})
    autoaccel.run_sweep("trials/quickstart.yaml")
    autoaccel.build_report(["admissions-quickstart"], tracking_uri, "reports/quickstart")
    autoaccel.compare("trials/quickstart.yaml").verdicts     # a comparison's verdict table (pandas)

The packages, in the direction data flows (``docs/architecture.md``): ``config`` and ``errors`` (the schema) →
``optim`` and ``workloads`` → ``run`` (one trial) → ``sweep`` (spec → space → Ray Tune + Optuna) → ``tracking``
(MLflow) → ``analysis`` (export, statistics, report) → ``comparison`` (sweep and report as one call); ``cluster``
and ``cli`` sit on top.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name → the module that defines it
_LAZY = {
    **dict.fromkeys(("ConfigError", "DataError"), "autoaccel.errors"),
    **dict.fromkeys(("Hyperparameter", "apply_overrides"), "autoaccel.config"),
    **dict.fromkeys(
        ("Technique", "build_optimizer", "register_technique", "techniques", "validate_config"), "autoaccel.optim"
    ),
    **dict.fromkeys(("Workload", "get_workload", "register_workload"), "autoaccel.workloads"),
    **dict.fromkeys(("Trial", "run_trial"), "autoaccel.run"),
    **dict.fromkeys(("load_space", "load_spec", "run_sweep"), "autoaccel.sweep"),
    **dict.fromkeys(("build_report", "export"), "autoaccel.analysis"),
    **dict.fromkeys(("Comparison", "compare"), "autoaccel.comparison"),
    "validate_cluster": "autoaccel.cluster",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
