"""MLflow tracking behind :class:`churn.tracking.Tracker`, and the clean-up of runs a killed process left open."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

from churn.mlflow_store import mlflow_experiment_id, prepare_local_store
from churn.tracking import DEFAULT_EXPERIMENT, OWNER_TAG

logger = logging.getLogger(__name__)


class MLflowTracker:
    """Tracks to MLflow (a local SQLite store under ``mlruns/`` by default, what ``mlflow ui`` shows)."""

    def __init__(self, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment

    @contextlib.contextmanager
    def run(self, run_name: str, run_id: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        import mlflow

        from churn.runguard import owner_identity

        prepare_local_store(self.tracking_uri)
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
