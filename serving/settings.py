"""Serving settings from the environment: Vertex AI's ``AIP_*`` variables and our ``SERVING_*`` ones."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VERTEX_MAX_BODY_BYTES = 1_572_864  # Vertex AI online prediction request limit: 1.5 MB
MiB = 1 << 20


class Settings(BaseSettings):
    """What the server reads at start.

    Vertex AI sets ``AIP_HTTP_PORT``, ``AIP_PREDICT_ROUTE``, ``AIP_HEALTH_ROUTE`` and ``AIP_STORAGE_URI``;
    everything else is ``SERVING_<NAME>`` (e.g. ``SERVING_MAX_INSTANCES=500``).

    Attributes:
        http_port: Port to listen on (``AIP_HTTP_PORT``).
        predict_route: Prediction route, used as given (``AIP_PREDICT_ROUTE``), e.g.
            ``/v1/endpoints/123/deployedModels/456:predict``.
        health_route: Health route (``AIP_HEALTH_ROUTE``).
        storage_uri: Model folder, ``gs://`` or local (``AIP_STORAGE_URI``). Empty: the registry's champion.
        registry_uri: Registry to follow when ``storage_uri`` is empty (default: the local MLflow store,
            ``mlruns/mlflow.db`` under the working directory).
        model_name: Registered model name.
        model_alias: Registry alias to serve.
        model_version: Version label to report and log under, overriding the one found (docs/serving.md).
        poll_seconds: How often the registry alias is checked (and a failed load retried).
        max_instances: Most instances in one request (more → 413).
        max_body_bytes: Largest request body (more → 413); Vertex's own limit is 1.5 MB.
        max_drain_bytes: After answering before the body arrived (413, 503, ...), read and discard up to
            this many more bytes before closing, so clients that send the whole body first (urllib,
            requests) get the answer, not a reset connection. A larger declared body is not read.
        drain_seconds: Longest time spent discarding such a body.
        header_timeout_seconds: The request line and headers must arrive within this time from the
            connection opening (or the first byte of the next request on a keep-alive connection), else
            408 and close (``python -m serving`` only).
        body_timeout_seconds: The whole body must arrive within this time after the headers, else 408 and
            close.
        extra_fields: ``forbid`` (default): an object instance with a field the model does not take is refused
            (422); ``ignore``: such fields are dropped (not scored, not logged), e.g. the other columns of
            BigQuery rows Vertex AI Batch Prediction sends with ``instanceType=object``.
        prediction_log: Log every prediction (to ``prediction_log_uri`` if set, else ``prediction_log_dir``).
        prediction_log_uri: ``gs://BUCKET/PREFIX``: write the log as immutable part objects under it
            (:class:`serving.prediction_log.GcsPredictionLog`), e.g. on Vertex AI, where the container's
            disk is lost with it.
        prediction_log_dir: Folder of the local log, ``<model_version>_outputs.csv``.
        log_flush_seconds: How often buffered predictions are written (default: 2 s to a local file, 60 s to
            ``gs://``, where each flush makes an object).
        log_max_pending_rows: Buffered rows beyond which the oldest are dropped (and counted) if the disk or
            Cloud Storage cannot keep up.
        cache_dir: Where downloaded model folders go (default: a temporary folder).
        host: Interface to bind (``python -m serving``).
        workers: Worker processes for ``python -m serving`` (0 = one per available CPU).
    """

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore", validate_by_name=True,
                                      validate_by_alias=True)

    http_port: int = Field(8080, ge=1, le=65535, validation_alias=AliasChoices("AIP_HTTP_PORT", "SERVING_HTTP_PORT"))
    predict_route: str = Field("/predict", validation_alias=AliasChoices("AIP_PREDICT_ROUTE", "SERVING_PREDICT_ROUTE"))
    health_route: str = Field("/health", validation_alias=AliasChoices("AIP_HEALTH_ROUTE", "SERVING_HEALTH_ROUTE"))
    storage_uri: str = Field("", validation_alias=AliasChoices("AIP_STORAGE_URI", "SERVING_STORAGE_URI"))
    registry_uri: str = ""
    model_name: str = "churn-model"
    model_alias: str = "champion"
    model_version: str = ""
    poll_seconds: float = Field(30.0, gt=0)
    max_instances: int = Field(2000, ge=1)
    max_body_bytes: int = Field(VERTEX_MAX_BODY_BYTES, ge=1024)
    max_drain_bytes: int = Field(32 * MiB, ge=0)
    drain_seconds: float = Field(10.0, ge=0)
    header_timeout_seconds: float = Field(10.0, gt=0)
    body_timeout_seconds: float = Field(30.0, gt=0)
    extra_fields: Literal["forbid", "ignore"] = "forbid"
    prediction_log: bool = True
    prediction_log_uri: str = ""
    prediction_log_dir: Path = Path("data/predictions")
    log_flush_seconds: float | None = Field(None, gt=0)
    log_max_pending_rows: int = Field(1_000_000, ge=1000)
    cache_dir: Path | None = None
    host: str = "0.0.0.0"
    workers: int = Field(0, ge=0)

    @field_validator("prediction_log_uri")
    @classmethod
    def _log_uri(cls, value: str) -> str:
        if value and not (value.startswith("gs://") and len(value.rstrip("/")) > len("gs://")):
            raise ValueError(f"SERVING_PREDICTION_LOG_URI {value!r} must be gs://BUCKET or gs://BUCKET/PREFIX "
                             "(for a local folder use SERVING_PREDICTION_LOG_DIR)")
        return value

    @field_validator("predict_route", "health_route")
    @classmethod
    def _route(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"route {value!r} must start with '/'")
        return value

    def resolved_registry_uri(self) -> str:
        """``registry_uri``, or the local MLflow store under the working directory."""
        if self.registry_uri:
            return self.registry_uri
        from churn.layout import DataLayout

        return DataLayout().tracking_uri()

    def resolved_log_flush_seconds(self) -> float:
        """``log_flush_seconds``, or 60 s for a ``gs://`` log and 2 s for a local one."""
        if self.log_flush_seconds is not None:
            return self.log_flush_seconds
        return 60.0 if self.prediction_log_uri else 2.0

    def resolved_workers(self) -> int:
        """``workers``, or one per CPU this process may run on."""
        return self.workers or len(os.sched_getaffinity(0))


@lru_cache
def get_settings() -> Settings:
    """The settings, read from the environment once per process."""
    return Settings()
