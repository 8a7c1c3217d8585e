"""The Vertex AI Model Registry behind :class:`churn.registry.ModelRegistry` (``vertex://`` registry URIs).

* one Vertex model per registered name, with the model ID equal to the name (``churn-model``), so its
  resource name is known without a search; each registration uploads a new version (``parent_model``);
* the ``champion`` version also carries Vertex's ``default`` alias (``is_default_version``), so
  ``models/churn-model`` with no version, and a deployment without an alias, resolve to the champion;
* ``challenger`` and ``archived`` are plain aliases; an alias is unique within a model, so setting it on
  one version takes it off any other;
* version tags become version labels (lowercased, characters outside ``[a-z0-9_-]`` replaced by ``_``,
  63 characters at most: ``validation_roc_auc=0_873456``); the gate's reason is the version description.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from churn.registry import CHAMPION, ModelVersion
from churn.vertexai import VertexTarget, init_sdk, labels_from_tags, model_id, model_resource

logger = logging.getLogger(__name__)

DEFAULT_ALIAS = "default"
SERVING_PREDICT_ROUTE = "/predict"
SERVING_HEALTH_ROUTE = "/health"
SERVING_PORT = 8080
PREDICTION_LOG_ENV = "SERVING_PREDICTION_LOG_URI"  # serving/settings.py: where the container logs predictions


class VertexRegistry:
    """The Vertex AI Model Registry behind :class:`churn.registry.ModelRegistry`.

    Args:
        target: Project, region, endpoint, serving image and staging prefix.
    """

    def __init__(self, target: VertexTarget) -> None:
        self.target = target

    def _sdk(self) -> Any:
        from google.cloud import aiplatform

        init_sdk(self.target.project, self.target.region, self.target.api_endpoint)
        return aiplatform

    def _resource(self, name: str) -> str:
        return model_resource(self.target.project, self.target.region, name)

    def _wrap(self, model: Any, name: str) -> ModelVersion:
        return ModelVersion(name=name, version=str(model.version_id), aliases=tuple(model.version_aliases),
                            source=model.uri or "", tags=dict(model.labels or {}))

    def _model(self, name: str, version: str) -> Any | None:
        from google.api_core import exceptions

        aiplatform = self._sdk()
        try:
            return aiplatform.Model(self._resource(name), version=version)
        except exceptions.NotFound:
            return None

    def get_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        model = self._model(name, alias)
        return self._wrap(model, name) if model is not None else None

    def register(self, name: str, model_dir: Path, *, run_id: str | None = None,
                 tags: dict[str, str] | None = None, description: str = "") -> ModelVersion:
        """Uploads ``model_dir`` to the staging prefix and registers it as a new version.

        The version is uploaded without aliases (Vertex gives a model's first version ``default``):
        register_model sets them with :meth:`set_alias` when it applies the gate's decision, so a
        version is never the champion before that, and the gate sees the champion it compared against.
        With a ``prediction_log`` prefix in the URI the serving container gets
        ``SERVING_PREDICTION_LOG_URI`` (container environment is set on the model, not the deployment).

        Raises:
            ValueError: No serving image or staging prefix in the registry URI, or a prediction log that is
                not ``gs://``.
        """
        from churn.storage import upload_dir

        if not self.target.serving_image or not str(self.target.staging).startswith("gs://"):
            raise ValueError(f"registering on Vertex needs the serving image and a gs:// staging prefix in the "
                             f"registry URI: {self.target.uri()}?serving_image=REGION-docker.pkg.dev/PROJECT/churn/"
                             f"serving:TAG&staging=gs://BUCKET/models")
        if self.target.prediction_log and not self.target.prediction_log.startswith("gs://"):
            raise ValueError(f"prediction_log={self.target.prediction_log!r} in the registry URI must be a gs:// "
                             f"prefix (the container's disk is lost with it), e.g. gs://BUCKET/predictions")
        tags = {k: v for k, v in (tags or {}).items() if k != "gate_reason"}  # the reason is the description
        if run_id:
            tags.setdefault("tracking_run", run_id)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        artifact_uri = f"{self.target.staging}/{model_id(name)}/{stamp}-{uuid.uuid4().hex[:8]}"
        upload_dir(Path(model_dir), artifact_uri)
        exists = self._model(name, DEFAULT_ALIAS) is not None
        aiplatform = self._sdk()
        model = aiplatform.Model.upload(
            display_name=name, model_id=None if exists else model_id(name),
            parent_model=self._resource(name) if exists else None,
            artifact_uri=artifact_uri, serving_container_image_uri=self.target.serving_image,
            serving_container_predict_route=SERVING_PREDICT_ROUTE, serving_container_health_route=SERVING_HEALTH_ROUTE,
            serving_container_ports=[SERVING_PORT], is_default_version=not exists,
            serving_container_environment_variables={PREDICTION_LOG_ENV: self.target.prediction_log}
            if self.target.prediction_log else None,
            version_description=description[:1000], description="Customer churn classifier",
            labels=labels_from_tags(tags))
        logger.info("registered %s version %s from %s", name, model.version_id, artifact_uri)
        return self._wrap(model, name)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Points ``alias`` at ``version``; ``champion`` also moves Vertex's ``default`` alias."""
        aiplatform = self._sdk()
        aliases = [alias, DEFAULT_ALIAS] if alias == CHAMPION else [alias]
        aiplatform.models.ModelRegistry(self._resource(name)).add_version_aliases(aliases, version)

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Sets a version label (UpdateModel on ``models/ID@VERSION``, so the version's labels change)."""
        from google.protobuf import field_mask_pb2

        aiplatform = self._sdk()
        model = aiplatform.Model(self._resource(name), version=version)
        resource = type(model.gca_resource)(model.gca_resource)
        resource.name = f"{self._resource(name)}@{version}"
        resource.labels.update(labels_from_tags({key: value}))
        model.api_client.update_model(model=resource, update_mask=field_mask_pb2.FieldMask(paths=["labels"]))

    def download(self, version: ModelVersion, dest: Path) -> Path:
        from churn.storage import download_prefix

        dest.mkdir(parents=True, exist_ok=True)
        download_prefix(version.source, dest)
        return dest

    def list_versions(self, name: str) -> list[ModelVersion]:
        from google.api_core import exceptions

        aiplatform = self._sdk()
        registry = aiplatform.models.ModelRegistry(self._resource(name))
        try:
            infos = registry.list_versions()
        except exceptions.NotFound:
            return []
        return sorted((self._wrap(registry.get_model(i.version_id), name) for i in infos), key=lambda v: int(v.version))
