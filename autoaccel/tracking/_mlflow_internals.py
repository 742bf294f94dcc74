"""The one place autoaccel reaches into MLflow's private surface. Each use names the version it was checked against
(``pyproject.toml`` bounds MLflow below the next minor release for that reason); a new MLflow release is checked here
first: ``tests/test_tracking.py`` exercises every function below against the installed version."""

from __future__ import annotations

from typing import Any

__all__ = ["sqlalchemy_engine"]


def sqlalchemy_engine(client: Any) -> Any:
    """The SQLAlchemy engine of a ``MlflowClient`` on a SQL store (checked: MLflow 3.17.2, where
    ``MlflowClient._tracking_client.store`` is the ``SqlAlchemyStore`` whose ``engine`` it opened). There is no public
    way to set SQLite pragmas on the store MLflow opens."""
    return client._tracking_client.store.engine
