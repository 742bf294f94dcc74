"""Sweeps on a Ray cluster: offline validation of cluster-launcher configs (:mod:`~autoaccel.cluster.validate`) and
the launch wrappers over Ray's CLI and the MLflow tracking server (:mod:`~autoaccel.cluster.launch`)."""

from .launch import submit_command, tracking_serve_command
from .validate import validate_cluster

__all__ = ["submit_command", "tracking_serve_command", "validate_cluster"]
