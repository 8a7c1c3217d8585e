"""``model.json`` beside the prediction log in Cloud Storage: which model folder served a version.

With ``SERVING_PREDICTION_LOG_URI=gs://BUCKET/PREFIX`` the server writes, once per model version it serves,
``PREFIX/<model_version>/model.json``::

    {"model_version": "v3", "model_name": "churn-model", "model_uri": "gs://…/churn-model/20261202T…",
     "schema_version": "…", "written": "2026-12-02T15:40:00.000+00:00"}

``model_uri`` is where the model was loaded from (``AIP_STORAGE_URI`` on Vertex AI: the registered
folder, which holds ``baseline/train.csv`` and ``evaluation/validation_predictions.csv``), so the nightly
drift check finds the served model's baseline with no registry call. The object is written with
``ifGenerationMatch=0``: the first worker's record stays, the others find it there. A failed write never
touches a request: it is retried in a background thread with backoff until it succeeds or
``give_up_seconds`` pass, and each failure is logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from serving.model import ServedModel

logger = logging.getLogger(__name__)

RECORD_FILE = "model.json"
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
GIVE_UP_SECONDS = 3600.0
UPLOAD_TIMEOUT_SECONDS = 30.0


def record_name(prefix: str, version: str) -> str:
    """``<prefix>/<model_version>/model.json``, the version made name-safe as the log's part names do."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", version)
    return f"{prefix.strip('/')}/{safe}/{RECORD_FILE}" if prefix.strip("/") else f"{safe}/{RECORD_FILE}"


def model_record(model: ServedModel) -> dict[str, Any]:
    """What ``model.json`` says about ``model``."""
    return {"model_version": model.version, "model_name": model.name, "model_uri": model.source,
            "schema_version": model.schema.version,
            "written": datetime.now(UTC).isoformat(timespec="milliseconds")}


def write_model_record(log_uri: str, model: ServedModel) -> str:
    """Writes ``model.json`` for ``model`` under the log prefix ``log_uri`` unless it is there already.

    Returns:
        The object's ``gs://`` URI.

    Raises:
        Exception: Whatever google-cloud-storage raises when the object cannot be written.
    """
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud import storage

    from churn.storage import split_gcs

    bucket, prefix = split_gcs(log_uri.rstrip("/"))
    name = record_name(prefix, model.version)
    blob = storage.Client().bucket(bucket).blob(name)
    with contextlib.suppress(PreconditionFailed):  # another worker (or an earlier start) wrote it
        blob.upload_from_string(json.dumps(model_record(model), indent=2) + "\n", content_type="application/json",
                                if_generation_match=0, retry=None, timeout=UPLOAD_TIMEOUT_SECONDS)
    return f"gs://{bucket}/{name}"


def record_in_background(log_uri: str, model: ServedModel, *, first_retry: float = RETRY_FIRST_SECONDS,
                         give_up_seconds: float = GIVE_UP_SECONDS) -> threading.Thread:
    """Writes ``model.json`` from a daemon thread, retrying with backoff (``first_retry`` doubling up to
    :data:`RETRY_MAX_SECONDS`) for up to ``give_up_seconds``; returns the thread."""

    def attempt() -> None:
        deadline = time.monotonic() + give_up_seconds
        wait = first_retry
        while True:
            try:
                uri = write_model_record(log_uri, model)
            except Exception as exc:  # noqa: BLE001 - any failure (network, HTTP, credentials) is retried
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.error("model record: gave up writing %s for %s (%s: %s); the drift check needs "
                                 "--baseline for this version", RECORD_FILE, model.version, type(exc).__name__, exc)
                    return
                logger.warning("model record: cannot write %s for %s under %s (%s: %s); retrying in %g s",
                               RECORD_FILE, model.version, log_uri, type(exc).__name__, exc, wait)
                time.sleep(min(wait, left))
                wait = min(2 * wait, RETRY_MAX_SECONDS)
                continue
            logger.info("model record: %s → %s", uri, model.source)
            return

    thread = threading.Thread(target=attempt, name="model-record", daemon=True)
    thread.start()
    return thread
