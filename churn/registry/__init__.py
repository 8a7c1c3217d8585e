"""The model registry behind one small interface.

Stages map onto aliases (the seed's ``--stage`` names in brackets):

* ``champion`` (Production) — the version serving traffic; at most one.
* ``challenger`` (Staging) — the newest version that did not pass the promotion gate.
* ``archived`` (Archived) — the champion most recently replaced; every retired champion also
  carries the tag ``stage=archived``.

``get_registry(uri)`` picks the backend from the URI: an MLflow store locally (``churn/registry/mlflow.py``);
the Vertex AI Model Registry for ``vertex://PROJECT/REGION?serving_image=…&staging=gs://…``
(``churn/registry/vertex.py``), with the same aliases. Each backend is one module, imported only when chosen.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

CHAMPION, CHALLENGER, ARCHIVED = "champion", "challenger", "archived"
STAGE_TO_ALIAS = {"Production": CHAMPION, "Staging": CHALLENGER, "Archived": ARCHIVED}
STAGE_LABEL = "stage"


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


def get_registry(uri: str) -> ModelRegistry:
    """Returns the registry for ``uri`` (an MLflow tracking/registry URI, a local folder or ``vertex://…``).

    Raises:
        ValueError: Empty URI or a scheme no backend handles.
    """
    if not uri:
        raise ValueError("registry URI is empty; use sqlite:///path/mlruns/mlflow.db (local MLflow registry)")
    if uri.startswith(("sqlite:", "file:", "http:", "https:", "postgresql:", "mysql:", "databricks")):
        from churn.registry.mlflow import MLflowRegistry

        return MLflowRegistry(uri)
    if "://" not in uri:
        from churn.registry.mlflow import MLflowRegistry

        return MLflowRegistry(Path(uri).resolve().as_uri())
    if uri.startswith("vertex://"):  # the Vertex AI Model Registry (see churn/vertexai.py for the URI)
        from churn.registry.vertex import VertexRegistry
        from churn.vertexai import parse_vertex_uri

        return VertexRegistry(parse_vertex_uri(uri))
    raise ValueError(f"registry URI {uri!r}: no registry backend for this scheme; use an MLflow URI or "
                     f"vertex://PROJECT/REGION?serving_image=IMAGE&staging=gs://BUCKET/models.")


def download_to_temp(registry: ModelRegistry, version: ModelVersion) -> tuple[tempfile.TemporaryDirectory, Path]:
    """Downloads a version into a new temporary folder; the caller cleans it up."""
    tmp = tempfile.TemporaryDirectory(prefix="churn-model-")
    return tmp, registry.download(version, Path(tmp.name))


def rollback(registry: ModelRegistry, name: str, to_version: str | None = None) -> dict[str, str | None]:
    """Moves the champion alias back: to ``to_version``, or to the version last replaced (``archived``).

    The replaced champion becomes ``archived`` (tag ``stage=archived``), the restored one is tagged
    ``stage=production``. On Vertex the default version moves with the champion, so deployments by
    model name follow. Works with any :class:`ModelRegistry`.

    Args:
        registry: The registry backend.
        name: Registered model name.
        to_version: Version to restore; None for the one behind the ``archived`` alias.

    Returns:
        ``{"model": name, "champion": restored version, "archived": replaced version or None}``.

    Raises:
        ValueError: Nothing to roll back to, or the target already is the champion.
    """
    current = registry.get_by_alias(name, CHAMPION)
    if to_version is None:
        archived = registry.get_by_alias(name, ARCHIVED)
        if archived is None:
            raise ValueError(f"{name}: no 'archived' version to roll back to; name one with --to-version N "
                             f"(versions: {[v.version for v in registry.list_versions(name)]})")
        to_version = archived.version
    if current is not None and current.version == str(to_version):
        raise ValueError(f"{name} v{to_version} already is the champion; nothing to roll back")
    registry.set_alias(name, CHAMPION, str(to_version))
    registry.set_tag(name, str(to_version), STAGE_LABEL, "production")
    if current is not None:
        registry.set_alias(name, ARCHIVED, current.version)
        registry.set_tag(name, current.version, STAGE_LABEL, "archived")
    logger.info("%s: champion v%s → v%s", name, current.version if current else "-", to_version)
    return {"model": name, "champion": str(to_version), "archived": current.version if current else None}
