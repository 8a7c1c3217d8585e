"""MLflow's model registry behind :class:`churn.registry.ModelRegistry` (local SQLite store by default)."""

from __future__ import annotations

from pathlib import Path

from churn.mlflow_store import mlflow_experiment_id, prepare_local_store
from churn.registry import ModelVersion


class MLflowRegistry:
    """MLflow's model registry (a local SQLite store under ``mlruns/`` by default)."""

    def __init__(self, tracking_uri: str, experiment: str = "churn") -> None:
        from mlflow import MlflowClient

        prepare_local_store(tracking_uri)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _wrap(self, mv) -> ModelVersion:
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
