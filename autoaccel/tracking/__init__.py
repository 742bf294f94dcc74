"""Tracking: the MLflow layout a sweep writes and its analysis reads (``_schema``: tag names, the child-run reader,
param encoding, the declared search space) and the one writer (``_store``: ``Tracker``, batched epochs, URIs,
finding a sweep's parent run). Shared by ``run`` (``autoaccel train``), ``sweep`` and ``analysis``; MLflow is
imported only when a store is opened."""

from ._schema import (
    LEGACY_SWEEP_ID,
    SPACE_TAG,
    SWEEP_ROLE,
    Tags,
    children,
    decode_param,
    decode_space,
    encode_param,
    encode_space,
    search,
)
from ._store import (
    STATUSES,
    EpochWriter,
    Tracker,
    check_tracking_uri,
    default_tracking_uri,
    find_sweep_parent,
    flatten,
    resolve_tracking_uri,
    sweep_tracking_uri,
)

__all__ = [
    "LEGACY_SWEEP_ID",
    "SPACE_TAG",
    "STATUSES",
    "SWEEP_ROLE",
    "EpochWriter",
    "Tags",
    "Tracker",
    "check_tracking_uri",
    "children",
    "decode_param",
    "decode_space",
    "default_tracking_uri",
    "encode_param",
    "encode_space",
    "find_sweep_parent",
    "flatten",
    "resolve_tracking_uri",
    "search",
    "sweep_tracking_uri",
]
