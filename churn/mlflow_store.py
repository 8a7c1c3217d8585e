"""The MLflow store both MLflow backends (registry and tracking) open: experiment lookup and local folders."""

from __future__ import annotations

from pathlib import Path


def mlflow_experiment_id(tracking_uri: str, experiment: str) -> str:
    """Returns the experiment id, creating it with artifacts beside a local store when needed."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        db_path = Path(tracking_uri.removeprefix("sqlite:///"))
        artifact_location = (db_path.parent / "artifacts").resolve().as_uri()
    return client.create_experiment(experiment, artifact_location=artifact_location)


def prepare_local_store(tracking_uri: str) -> None:
    """Creates the folder of a local SQLite store (``sqlite:///path/mlflow.db``); other URIs need nothing."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
