"""Experiment tracking behind one small interface.

``get_tracker(uri)`` picks the backend from the URI: an MLflow store (``sqlite:///…/mlflow.db``,
``file:…``, ``http(s)://`` tracking server; ``churn/tracking/mlflow.py``), Vertex AI Experiments
(``vertex://PROJECT/REGION?experiment=NAME``; ``churn/tracking/vertex.py``) or ``""`` for none. Each
backend is one module, imported only when chosen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

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


def get_tracker(tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT) -> Tracker:
    """Returns the tracker for ``tracking_uri`` (``""`` = no tracking).

    Raises:
        ValueError: A scheme no backend handles.
    """
    if not tracking_uri:
        return NullTracker()
    if tracking_uri.startswith(("sqlite:", "file:", "http:", "https:", "postgresql:", "mysql:", "databricks")):
        from churn.tracking.mlflow import MLflowTracker

        return MLflowTracker(tracking_uri, experiment)
    if "://" not in tracking_uri:
        from churn.tracking.mlflow import MLflowTracker

        return MLflowTracker(Path(tracking_uri).resolve().as_uri(), experiment)
    if tracking_uri.startswith("vertex://"):  # Vertex AI Experiments; the experiment is in the URI
        from churn.tracking.vertex import VertexTracker
        from churn.vertexai import parse_vertex_uri

        return VertexTracker(parse_vertex_uri(tracking_uri))
    raise ValueError(
        f"tracking URI {tracking_uri!r}: no tracking backend for this scheme; use an MLflow URI "
        f"(sqlite:///path/mlflow.db, http://host:5000), vertex://PROJECT/REGION?experiment=NAME "
        f"or '' to disable tracking."
    )
