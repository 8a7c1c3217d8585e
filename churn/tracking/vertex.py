"""Vertex AI Experiments behind :class:`churn.tracking.Tracker` (``vertex://…?experiment=NAME`` tracking URIs)."""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from churn.vertexai import VertexTarget, init_sdk

logger = logging.getLogger(__name__)


def _run_name(prefix: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-") or "run"
    return f"{base}-{stamp}-{uuid.uuid4().hex[:6]}"[:128]


class VertexTracker:
    """Vertex AI Experiments behind :class:`churn.tracking.Tracker`.

    A run is an experiment run of ``target.experiment``; its id is the run name, so a later stage
    (evaluate) resumes the run train started. Parameters and metrics are logged with
    ``aiplatform.log_params`` / ``log_metrics``; folders go to ``<staging>/experiments/<experiment>/<run>/``
    and their ``gs://`` URI is logged as a parameter (nothing is uploaded without a staging prefix).

    Args:
        target: Project, region, endpoint, experiment and staging prefix.
    """

    def __init__(self, target: VertexTarget) -> None:
        self.target = target
        self._run: str | None = None

    @contextlib.contextmanager
    def run(self, run_name: str, run_id: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        from google.cloud import aiplatform

        init_sdk(self.target.project, self.target.region, self.target.api_endpoint,
                 experiment=self.target.experiment, experiment_tensorboard=False)
        name = run_id or _run_name(run_name)
        with aiplatform.start_run(name, resume=bool(run_id)):
            self._run = name
            if tags:
                aiplatform.log_params({f"tag.{k}": str(v) for k, v in tags.items()})
            try:
                yield name
            finally:
                self._run = None

    def log_params(self, params: Mapping[str, object]) -> None:
        from google.cloud import aiplatform

        aiplatform.log_params({k: v if isinstance(v, (int, float)) else str(v)[:500] for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        from google.cloud import aiplatform

        aiplatform.log_metrics({k: float(v) for k, v in metrics.items()})

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        from google.cloud import aiplatform

        from churn.storage import upload_dir

        if not self.target.staging or self._run is None:
            logger.info("no staging prefix in the tracking URI: %s is not copied to Vertex Experiments", folder)
            return
        uri = f"{self.target.staging}/experiments/{self.target.experiment}/{self._run}"
        uri = f"{uri}/{artifact_path}" if artifact_path else uri
        upload_dir(Path(folder), uri)
        aiplatform.log_params({f"artifacts.{artifact_path or 'root'}": uri})
