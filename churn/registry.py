"""The model registry behind one small interface.

Stages map onto aliases (the seed's ``--stage`` names in brackets):

* ``champion`` (Production) — the version serving traffic; at most one.
* ``challenger`` (Staging) — the newest version that did not pass the promotion gate.
* ``archived`` (Archived) — the champion most recently replaced; every retired champion also
  carries the tag ``stage=archived``.

``get_registry(uri)`` picks the backend from the URI: an MLflow store locally; the Vertex AI Model
Registry for ``vertex://PROJECT/REGION?serving_image=…&staging=gs://…`` (``churn/vertex.py``), with the
same aliases.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from churn.tracking import _prepare_local_store, mlflow_experiment_id

logger = logging.getLogger(__name__)

CHAMPION, CHALLENGER, ARCHIVED = "champion", "challenger", "archived"
STAGE_TO_ALIAS = {"Production": CHAMPION, "Staging": CHALLENGER, "Archived": ARCHIVED}


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version.

    Attributes:
        name: Registered model name.
        version: Version number as text.
        aliases: Aliases pointing at this version.
        source: Where its files are.
        tags: Version tags (metrics at registration, pipeline run, stage).
    """

    name: str
    version: str
    aliases: tuple[str, ...] = ()
    source: str = ""
    tags: dict[str, str] = field(default_factory=dict)


class ModelRegistry(Protocol):
    """What register_model and serving need from a registry."""

    def get_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version behind ``alias``, or None."""

    def register(self, name: str, model_dir: Path, *, run_id: str | None = None,
                 tags: dict[str, str] | None = None, description: str = "") -> ModelVersion:
        """Stores ``model_dir`` as a new version."""

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Points ``alias`` at ``version`` (moving it from any other version)."""

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Sets a version tag."""

    def download(self, version: ModelVersion, dest: Path) -> Path:
        """Copies the version's files into ``dest``; returns the model folder."""

    def list_versions(self, name: str) -> list[ModelVersion]:
        """All versions, oldest first."""


class MLflowRegistry:
    """MLflow's model registry (a local SQLite store under ``mlruns/`` by default)."""

    def __init__(self, tracking_uri: str, experiment: str = "churn") -> None:
        from mlflow import MlflowClient

        _prepare_local_store(tracking_uri)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _wrap(self, mv) -> ModelVersion:  # noqa: ANN001 - mlflow entity
        return ModelVersion(name=mv.name, version=str(mv.version), aliases=tuple(mv.aliases or ()),
                            source=mv.source, tags=dict(mv.tags or {}))

    def get_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._wrap(self.client.get_model_version_by_alias(name, alias))
        except MlflowException:
            return None

    def register(self, name: str, model_dir: Path, *, run_id: str | None = None,
                 tags: dict[str, str] | None = None, description: str = "") -> ModelVersion:
        from mlflow.exceptions import MlflowException

        if not run_id:
            experiment_id = mlflow_experiment_id(self.tracking_uri, self.experiment)
            run_id = self.client.create_run(experiment_id, run_name=f"register-{name}").info.run_id
            self.client.set_terminated(run_id)
        self.client.log_artifacts(run_id, str(model_dir), artifact_path="model")
        source = f"{self.client.get_run(run_id).info.artifact_uri}/model"
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description="Customer churn classifier")
        mv = self.client.create_model_version(name, source=source, run_id=run_id,
                                              tags={k: str(v) for k, v in (tags or {}).items()},
                                              description=description)
        return self._wrap(self.client.get_model_version(name, mv.version))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(name, version, key, value)

    def download(self, version: ModelVersion, dest: Path) -> Path:
        import mlflow.artifacts

        dest.mkdir(parents=True, exist_ok=True)
        path = mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(dest),
                                                   tracking_uri=self.tracking_uri)
        return Path(path)

    def list_versions(self, name: str) -> list[ModelVersion]:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            return []
        return sorted((self._wrap(mv) for mv in found), key=lambda v: int(v.version))


def get_registry(uri: str) -> ModelRegistry:
    """Returns the registry for ``uri`` (an MLflow tracking/registry URI, a local folder or ``vertex://…``).

    Raises:
        ValueError: Empty URI or a scheme no backend handles.
    """
    if not uri:
        raise ValueError("registry URI is empty; use sqlite:///path/mlruns/mlflow.db (local MLflow registry)")
    if uri.startswith(("sqlite:", "file:", "http:", "https:", "postgresql:", "mysql:", "databricks")):
        return MLflowRegistry(uri)
    if "://" not in uri:
        return MLflowRegistry(Path(uri).resolve().as_uri())
    if uri.startswith("vertex://"):  # the Vertex AI Model Registry (see churn/vertex.py for the URI)
        from churn.vertex import VertexRegistry, parse_vertex_uri

        return VertexRegistry(parse_vertex_uri(uri))
    raise ValueError(f"registry URI {uri!r}: no registry backend for this scheme; use an MLflow URI or "
                     f"vertex://PROJECT/REGION?serving_image=IMAGE&staging=gs://BUCKET/models.")


def download_to_temp(registry: ModelRegistry, version: ModelVersion) -> tuple[tempfile.TemporaryDirectory, Path]:
    """Downloads a version into a new temporary folder; the caller cleans it up."""
    tmp = tempfile.TemporaryDirectory(prefix="churn-model-")
    return tmp, registry.download(version, Path(tmp.name))
