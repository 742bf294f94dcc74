"""The one place autoaccel reaches into Ray's private surface. Each use names the version it was checked against
(``pyproject.toml`` bounds Ray below the next minor release for that reason); a new Ray release is checked here first:
the test named with each function exercises it against the installed version."""

from __future__ import annotations

from typing import Any

__all__ = ["prepare_cluster_config", "validate_cluster_config"]


def prepare_cluster_config(config: dict[str, Any]) -> dict[str, Any]:
    """A cluster-launcher config with the provider's defaults filled in (checked: Ray 2.60.0,
    ``ray.autoscaler._private.util.prepare_config``; what ``ray up`` runs first, without its cloud calls). Tested by
    ``tests/test_cluster.py``."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(config)


def validate_cluster_config(config: dict[str, Any]) -> None:
    """Ray's schema and semantic checks of a cluster-launcher config, raising ``jsonschema.ValidationError`` or
    ``ValueError`` (checked: Ray 2.60.0, ``ray.autoscaler._private.util.validate_config``). Tested by
    ``tests/test_cluster.py``."""
    from ray.autoscaler._private.util import validate_config

    validate_config(config)
