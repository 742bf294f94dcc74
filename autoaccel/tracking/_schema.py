"""The MLflow layout as one schema: the names of every tag and param a sweep writes, one paginated reader of a
sweep's child runs, one encoding of param values, and the search space a sweep declared.

Layout: experiment = sweep name; a parent run per sweep (tag ``autoaccel.role = sweep``), one child run per trial
(tag ``mlflow.parentRunId``). Writers (``sweep``, ``autoaccel train``) and readers (``sweep`` on resume,
``analysis``) name tags through :class:`Tags`, read children through :func:`children` and params through
:func:`decode_param`, so that the layout is written down once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "LEGACY_SWEEP_ID",
    "SPACE_TAG",
    "SWEEP_ROLE",
    "Tags",
    "children",
    "decode_param",
    "decode_space",
    "encode_param",
    "encode_space",
    "search",
]


class Tags:
    """Tag names. On a sweep's parent run: ``ROLE`` (= :data:`SWEEP_ROLE`), ``SWEEP``, ``SWEEP_ID``, ``FOLDER``,
    ``WORKLOAD``, what trials are ranked by (``METRIC``, ``MODE``) and timed to (``WORKLOAD_METRIC``,
    ``WORKLOAD_MODE``, ``TARGET``), ``STUDY_OF``, ``BASELINES`` (a comparison's, JSON) and the declared search space
    (:data:`SPACE_TAG`). On a trial's child run: ``PARENT`` and the rest."""

    PARENT = "mlflow.parentRunId"
    ROLE = "autoaccel.role"
    SWEEP = "autoaccel.sweep"
    SWEEP_ID = "autoaccel.sweep_id"  # the sweep's unique id (its folder's sweep_id file), on its parent run
    FOLDER = "folder"
    WORKLOAD = "workload"
    METRIC = "metric"
    MODE = "mode"
    WORKLOAD_METRIC = "workload_metric"
    WORKLOAD_MODE = "workload_mode"
    TARGET = "target"
    STUDY_OF = "study_of"
    BASELINES = "baselines"
    PROTOCOL = "autoaccel.protocol"  # a comparison's tuning protocol and what it can cost, JSON
    # a trial's
    TRIAL_ID = "trial_id"
    EARLIER_TRIAL_IDS = "earlier_trial_ids"  # the Ray trials of killed drivers whose ask this trial re-ran
    PHASE = "phase"  # tuning | final, in a comparison
    FAMILY = "family"
    TECHNIQUE = "technique"
    SEED = "seed"
    SOURCE_RUN = "source_run"  # the tuning trial a final run or a study re-runs
    REPLICATE = "tuning_replicate"  # a comparison's trial: which of its family's independent tuning studies
    SAMPLER_SEED = "sampler_seed"  # a comparison's tuning trial: its study's sampler seed
    COST_PER_STEP = "cost_per_step_s"  # a comparison's final run: its configuration's seconds per step, timed alone
    STATUS = "status"
    EPOCHS = "epochs"
    CRASHES = "crashes"
    ERROR = "error"
    NODE = "node"
    WORLD_SIZE = "world_size"
    BEST_METRIC = "best_metric"


SWEEP_ROLE = "sweep"  # the value of Tags.ROLE on a sweep's parent run
LEGACY_SWEEP_ID = "legacy"  # the id of a sweep started before ids: its parent is found by its folder
SPACE_TAG = "autoaccel.space"  # + "." + family ("" without families): that family's declared distributions, JSON

_PAGE = 1000  # runs per request of children(): MLflow's search API pages, whatever the store
_NULLS = {"None", "null"}
_BOOLS = {"True": True, "False": False, "true": True, "false": False}
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf|infinity)", re.IGNORECASE)


def children(client: Any, experiment_id: str, parent_id: str, **tags: str) -> Iterator[Any]:
    """Every child run of ``parent_id`` (with each ``tag=value`` given, e.g. ``phase="tuning"``), page by page:
    no cap on a sweep's size. Deleted runs are left out, as MLflow's searches leave them out."""
    query = " and ".join(
        [f"tags.`{Tags.PARENT}` = '{parent_id}'", *(f"tags.`{key}` = '{value}'" for key, value in tags.items())]
    )
    return search(client, experiment_id, query)


def search(
    client: Any, experiments: str | Sequence[str], query: str = "", order_by: list[str] | None = None
) -> Iterator[Any]:
    """Every active run of the experiment(s) that ``query`` (MLflow's search syntax) finds, page by page: the one
    place autoaccel calls ``search_runs``, so that no read of a sweep is capped at a page."""
    ids = [experiments] if isinstance(experiments, str) else list(experiments)
    token = None
    while True:
        page = client.search_runs(ids, query, max_results=_PAGE, order_by=order_by, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def encode_param(value: Any) -> str:
    """A param as MLflow stores it: ``str`` of the value (MLflow params are strings)."""
    return str(value)


def decode_param(text: str | None) -> Any:
    """A param's value back from its string: None for ``None``/``null``, a bool, an int, a float (``1e-3``, ``nan``,
    ``inf`` too), a list or mapping written as one, else the string itself."""
    if text is None or text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text[:1] in "[{":  # str() of a list or mapping (a fixed value of a space)
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    return text


def encode_space(declared: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, str]:
    """The tags that record a search space's declared distributions: ``declared`` is family ("" without families) →
    column (``optimizer.lr``, ``budget.batch_size``) → ``{"kind": float | int | choice, "low", "high", "log",
    "step"}`` or ``{"kind": "choice", "choices": [...]}``; one tag per family (a tag holds 8,000 characters)."""
    return {
        f"{SPACE_TAG}.{family}": json.dumps(columns, sort_keys=True, separators=(",", ":"))
        for family, columns in declared.items()
    }


def decode_space(tags: Mapping[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """What :func:`encode_space` wrote, from a parent run's tags (empty for a sweep from before it was recorded)."""
    prefix = SPACE_TAG + "."
    return {key.removeprefix(prefix): json.loads(value) for key, value in tags.items() if key.startswith(prefix)}
