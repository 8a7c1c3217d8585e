"""Experiment tracking behind one small interface.

``get_tracker(uri)`` picks the backend from the URI: an MLflow store (``sqlite:///…/mlflow.db``,
``file:…``, ``http(s)://`` tracking server), Vertex AI Experiments (``vertex://PROJECT/REGION?experiment=NAME``,
``churn/vertex.py``) or ``""`` for none.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "churn"
# Tag on every MLflow run this project starts: the owning process ("pid:start:host", churn.runguard.Owner),
# so a run left RUNNING by a killed process can be found and ended (end_abandoned_runs).
OWNER_TAG = "churn.owner"


class Tracker(Protocol):
    """What the stages need from a tracking backend."""

    def run(self, run_name: str, run_id: str | None = None, tags: Mapping[str, str] | None = None
            ) -> contextlib.AbstractContextManager[str]:
        """Starts (or resumes, with ``run_id``) a run; yields its id."""

    def log_params(self, params: Mapping[str, object]) -> None:
        """Logs parameters of the active run."""

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Logs scalar metrics of the active run."""

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        """Uploads a folder's files to the active run."""


class NullTracker:
    """Tracks nothing (``tracking_uri=""``); run ids are empty."""

    @contextlib.contextmanager
    def run(self, run_name: str, run_id: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        yield run_id or ""

    def log_params(self, params: Mapping[str, object]) -> None:
        return None

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        return None

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        return None


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


def _prepare_local_store(tracking_uri: str) -> None:
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


class MLflowTracker:
    """Tracks to MLflow (a local SQLite store under ``mlruns/`` by default, what ``mlflow ui`` shows)."""

    def __init__(self, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment

    @contextlib.contextmanager
    def run(self, run_name: str, run_id: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        import mlflow

        from churn.runguard import owner_identity

        _prepare_local_store(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        if run_id:
            ctx = mlflow.start_run(run_id=run_id)
        else:
            experiment_id = mlflow_experiment_id(self.tracking_uri, self.experiment)
            ctx = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                                   tags={**dict(tags or {}), OWNER_TAG: owner_identity().env_value()})
        with ctx as active:
            if tags and run_id:
                mlflow.set_tags(dict(tags))
            yield active.info.run_id

    def log_params(self, params: Mapping[str, object]) -> None:
        import mlflow

        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifacts(str(folder), artifact_path=artifact_path)


def end_abandoned_runs(tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT) -> list[str]:
    """Ends, as KILLED with a note, the MLflow runs left RUNNING by a process of this host that is gone.

    A run killed mid-stage never ends its MLflow run; ``pipeline.py run`` calls this at start (holding the
    project's lock). Only runs carrying :data:`OWNER_TAG` are touched, and only when their owner no longer
    runs; a local SQLite store that does not exist yet is not created.

    Args:
        tracking_uri: An MLflow tracking URI (other backends: nothing to do).
        experiment: The experiment searched.

    Returns:
        The ids of the runs ended.
    """
    import socket
    import time

    from churn.runguard import Owner, is_alive

    if not tracking_uri.startswith(("sqlite:", "file:", "http:", "https:", "postgresql:", "mysql:")):
        return []
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        return []
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    ended = []
    for run in client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                  max_results=1000):
        owner = Owner.parse(run.data.tags.get(OWNER_TAG, ""))
        if owner is None or is_alive(owner):
            continue
        note = (f"Ended as KILLED by a later pipeline run on {socket.gethostname()} at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}: the process that ran it (pid {owner.pid} on "
                f"{owner.host or 'this host'}) exited without ending it (killed or crashed), so its results "
                f"are incomplete.")
        client.set_tag(run.info.run_id, "mlflow.note.content", note)
        client.set_terminated(run.info.run_id, status="KILLED")
        logger.warning("MLflow run %s (%s): %s", run.info.run_id, run.info.run_name, note)
        ended.append(run.info.run_id)
    return ended


def get_tracker(tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT) -> Tracker:
    """Returns the tracker for ``tracking_uri`` (``""`` = no tracking).

    Raises:
        ValueError: A scheme no backend handles.
    """
    if not tracking_uri:
        return NullTracker()
    if tracking_uri.startswith(("sqlite:", "file:", "http:", "https:", "postgresql:", "mysql:", "databricks")):
        return MLflowTracker(tracking_uri, experiment)
    if "://" not in tracking_uri:
        return MLflowTracker(Path(tracking_uri).resolve().as_uri(), experiment)
    if tracking_uri.startswith("vertex://"):  # Vertex AI Experiments; the experiment is in the URI
        from churn.vertex import VertexTracker, parse_vertex_uri

        return VertexTracker(parse_vertex_uri(tracking_uri))
    raise ValueError(
        f"tracking URI {tracking_uri!r}: no tracking backend for this scheme; use an MLflow URI "
        f"(sqlite:///path/mlflow.db, http://host:5000), vertex://PROJECT/REGION?experiment=NAME "
        f"or '' to disable tracking."
    )
