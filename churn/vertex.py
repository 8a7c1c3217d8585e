"""Vertex AI behind small functions: submit, register, roll back, deploy, schedule, track.

The nightly schedule is a Cloud Scheduler job that POSTs a PipelineJob create request to Vertex AI
(:func:`schedule_with_cloud_scheduler`, google-cloud-scheduler over REST), or alternatively a Vertex AI
Pipelines schedule (:func:`schedule_pipeline`).

Every call goes through the google-cloud-aiplatform SDK over its REST transport
(``api_transport="rest"``, plain HTTPS + JSON, which also works through HTTP proxies). ``api_endpoint``
is an ordinary option: ``None`` means the regional endpoint ``REGION-aiplatform.googleapis.com``; pass a
Private Service Connect host (``https://…p.googleapis.com``) or any other endpoint to use that instead.

The registry and the tracker are selected by URI (see :func:`parse_vertex_uri`)::

    vertex://PROJECT/REGION?serving_image=IMAGE&staging=gs://BUCKET/models&experiment=churn&api_endpoint=URL
        &prediction_log=gs://BUCKET/predictions

Model Registry mapping (the aliases of ``churn.registry``):

* one Vertex model per registered name, with the model ID equal to the name (``churn-model``), so its
  resource name is known without a search; each registration uploads a new version (``parent_model``);
* the ``champion`` version also carries Vertex's ``default`` alias (``is_default_version``), so
  ``models/churn-model`` with no version, and a deployment without an alias, resolve to the champion;
* ``challenger`` and ``archived`` are plain aliases; an alias is unique within a model, so setting it on
  one version takes it off any other;
* version tags become version labels (lowercased, characters outside ``[a-z0-9_-]`` replaced by ``_``,
  63 characters at most: ``validation_roc_auc=0_873456``); the gate's reason is the version description.

Nothing happens at import: the SDK is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from churn.registry import ARCHIVED, CHALLENGER, CHAMPION, ModelRegistry, ModelVersion

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud import aiplatform

logger = logging.getLogger(__name__)

SCHEME = "vertex"
TRANSPORT = "rest"
DEFAULT_ALIAS = "default"
SERVING_PREDICT_ROUTE = "/predict"
SERVING_HEALTH_ROUTE = "/health"
SERVING_PORT = 8080
PREDICTION_LOG_ENV = "SERVING_PREDICTION_LOG_URI"  # serving/settings.py: where the container logs predictions
DEFAULT_MACHINE_TYPE = "n1-standard-2"
DRIFT_SCHEDULE_NAME = "churn-drift-nightly"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SCHEDULER_TIME_ZONE = "Etc/UTC"
SCHEDULER_MAX_BODY = 900_000  # bytes; a Cloud Scheduler job is at most 1 MB in all
_SCHEDULER_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
STAGE_LABEL = "stage"
_MODEL_ID = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_BAD = re.compile(r"[^a-z0-9_-]")


# ------------------------------------------------------------------------------------------------
# URIs, labels and the SDK session
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VertexTarget:
    """Where and how to reach Vertex AI, parsed from a ``vertex://`` URI.

    Attributes:
        project: Google Cloud project ID.
        region: Vertex AI region, e.g. ``europe-west4``.
        api_endpoint: Endpoint override (regional or private); None for the default regional one.
        experiment: Vertex Experiments experiment name (tracking).
        serving_image: Serving container image URI, required to register models.
        staging: ``gs://`` prefix receiving registered model folders (and tracked artifacts).
        prediction_log: ``gs://`` prefix the registered versions' serving containers log predictions to
            (their ``SERVING_PREDICTION_LOG_URI``; the nightly drift check's ``--current``); empty: not set.
    """

    project: str
    region: str
    api_endpoint: str | None = None
    experiment: str = "churn"
    serving_image: str = ""
    staging: str = ""
    prediction_log: str = ""

    def uri(self) -> str:
        """The ``vertex://`` URI naming this target (inverse of :func:`parse_vertex_uri`)."""
        query = {k: v for k, v in (("serving_image", self.serving_image), ("staging", self.staging),
                                   ("experiment", self.experiment if self.experiment != "churn" else ""),
                                   ("api_endpoint", self.api_endpoint or ""),
                                   ("prediction_log", self.prediction_log)) if v}
        return f"{SCHEME}://{self.project}/{self.region}" + (f"?{urlencode(query)}" if query else "")


def is_vertex_uri(uri: str) -> bool:
    """Whether ``uri`` selects the Vertex AI backend (``vertex://…``)."""
    return str(uri).startswith(f"{SCHEME}://")


def parse_vertex_uri(uri: str) -> VertexTarget:
    """Parses ``vertex://PROJECT/REGION[?serving_image=…&staging=gs://…&experiment=…&api_endpoint=…]``.

    Raises:
        ValueError: Not a ``vertex://`` URI, no project or region, or an unknown query key.
    """
    parts = urlsplit(uri)
    region = parts.path.strip("/")
    if parts.scheme != SCHEME or not parts.netloc or not region or "/" in region:
        raise ValueError(f"{uri!r} is not a Vertex URI; write vertex://PROJECT/REGION, e.g. "
                         f"vertex://my-project/europe-west4?serving_image=…&staging=gs://my-bucket/models")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    known = {"serving_image", "staging", "experiment", "api_endpoint", "prediction_log"}
    if set(query) - known:
        raise ValueError(f"{uri!r}: unknown keys {sorted(set(query) - known)}; the query may hold {sorted(known)}")
    return VertexTarget(project=parts.netloc, region=region, api_endpoint=query.get("api_endpoint") or None,
                        experiment=query.get("experiment") or "churn", serving_image=query.get("serving_image", ""),
                        staging=query.get("staging", "").rstrip("/"),
                        prediction_log=query.get("prediction_log", "").rstrip("/"))


def label_value(value: object) -> str:
    """A Vertex label value: lowercase, ``[a-z0-9_-]`` (others become ``_``), at most 63 characters."""
    return _LABEL_BAD.sub("_", str(value).lower())[:63]


def labels_from_tags(tags: Mapping[str, object]) -> dict[str, str]:
    """Version tags as Vertex labels; keys must start with a letter (others get a ``t_`` prefix)."""
    out = {}
    for key, value in tags.items():
        k = label_value(key)
        out[k if k[:1].isalpha() else f"t_{k}"[:63]] = label_value(value)
    return out


def model_id(name: str) -> str:
    """The Vertex model ID for a registered model name (the name itself, validated).

    Raises:
        ValueError: The name is not a valid Vertex model ID.
    """
    if not _MODEL_ID.fullmatch(name):
        raise ValueError(f"model name {name!r} cannot be a Vertex model ID: use up to 63 characters of "
                         f"[a-z0-9_-] starting with a letter, e.g. 'churn-model'")
    return name


def init_sdk(project: str, region: str, api_endpoint: str | None = None, **kwargs: Any) -> None:
    """Points the aiplatform SDK at ``project``/``region`` over REST (``api_endpoint`` overrides the host).

    Args:
        project: Google Cloud project ID.
        region: Vertex AI region.
        api_endpoint: Regional/private endpoint override; None keeps ``REGION-aiplatform.googleapis.com``.
        **kwargs: More ``aiplatform.init`` settings (e.g. ``experiment``, ``staging_bucket``).
    """
    from google.cloud import aiplatform

    aiplatform.init(project=project, location=region, api_endpoint=api_endpoint, api_transport=TRANSPORT, **kwargs)


def console_url(resource_name: str) -> str:
    """The Cloud console page of a pipeline job, model or endpoint resource name."""
    m = re.match(r"projects/([^/]+)/locations/([^/]+)/(\w+)/([^/@]+)", resource_name)
    if not m:
        return ""
    project, region, kind, rid = m.groups()
    page = {"pipelineJobs": f"pipelines/runs/{rid}", "models": f"models/{rid}",
            "endpoints": f"endpoints/{rid}", "schedules": f"pipelines/schedules/{rid}",
            "batchPredictionJobs": f"batch-predictions/{rid}"}.get(kind, "")
    return f"https://console.cloud.google.com/vertex-ai/locations/{region}/{page}?project={project}" if page else ""


# ------------------------------------------------------------------------------------------------
# Pipelines: submit and schedule
# ------------------------------------------------------------------------------------------------

def _pipeline_job(template_path: str, *, project: str, region: str, pipeline_root: str,
                  parameter_values: Mapping[str, Any] | None, labels: Mapping[str, str] | None,
                  enable_caching: bool | None, display_name: str | None, job_id: str | None = None
                  ) -> "aiplatform.PipelineJob":
    from google.cloud import aiplatform

    if not str(pipeline_root).startswith("gs://"):
        raise ValueError(f"pipeline root {pipeline_root!r} must be a gs:// folder, e.g. gs://my-bucket/pipeline-root")
    return aiplatform.PipelineJob(display_name=display_name or "", template_path=str(template_path), job_id=job_id,
                                  pipeline_root=pipeline_root, parameter_values=dict(parameter_values or {}),
                                  enable_caching=enable_caching, labels=dict(labels or {}) or None,
                                  project=project, location=region)


def submit_pipeline_job(template_path: str | Path, *, project: str, region: str, pipeline_root: str,
                        parameter_values: Mapping[str, Any] | None = None, service_account: str | None = None,
                        experiment: str | None = None, labels: Mapping[str, str] | None = None,
                        enable_caching: bool | None = None, display_name: str | None = None,
                        job_id: str | None = None, api_endpoint: str | None = None) -> str:
    """Submits a compiled pipeline as a Vertex AI PipelineJob (returns without waiting for it).

    Args:
        template_path: Compiled pipeline: a local YAML, a ``gs://`` object or an Artifact Registry URL
            (``https://REGION-kfp.pkg.dev/PROJECT/REPO/NAME/TAG``).
        project: Google Cloud project ID.
        region: Vertex AI region.
        pipeline_root: ``gs://`` folder for the run's artifacts.
        parameter_values: Pipeline parameters (names as in the pipeline function).
        service_account: Service account the steps run as (default: the Compute Engine default one).
        experiment: Vertex Experiments experiment to associate the run with (created when missing).
        labels: Labels of the PipelineJob (billing, search).
        enable_caching: True/False forces step caching on/off; None keeps the compiled setting.
        display_name: Display name (default: the pipeline's name).
        job_id: Job ID (default: ``<pipeline-name>-<timestamp>``).
        api_endpoint: Vertex AI endpoint override.

    Returns:
        The PipelineJob resource name (``projects/…/locations/…/pipelineJobs/…``).
    """
    init_sdk(project, region, api_endpoint)
    job = _pipeline_job(str(template_path), project=project, region=region, pipeline_root=pipeline_root,
                        parameter_values=parameter_values, labels=labels, enable_caching=enable_caching,
                        display_name=display_name, job_id=job_id)
    job.submit(service_account=service_account, experiment=experiment)
    logger.info("submitted %s", job.resource_name)
    return job.resource_name


def retrain_on_drift(decision_uri: str, retrain: Mapping[str, Any]) -> str | None:
    """Submits the training pipeline when the drift check's decision says so (the Vertex retraining trigger).

    Args:
        decision_uri: The drift check's ``drift_decision.json`` (``gs://`` or local), with ``retrain``,
            ``reason``, ``date`` and ``drifted_features``.
        retrain: The training run to start: ``template``, ``project``, ``region``, ``pipeline_root``,
            ``parameter_values`` and optionally ``service_account``, ``experiment``, ``api_endpoint``.
            Empty: never retrain (the decision is only logged).

    Returns:
        The submitted PipelineJob's resource name, or None when nothing was started.

    Raises:
        ValueError: ``retrain`` lacks a required key.
    """
    import json

    decision = json.loads(_read_text(decision_uri))
    if not decision.get("retrain"):
        logger.info("no retraining: %s", decision.get("reason", "the decision does not ask for it"))
        return None
    if not retrain:
        logger.warning("the drift check asks for retraining (%s) but no training run is configured",
                       decision.get("reason"))
        return None
    return submit_retraining(retrain, date=str(decision.get("date", "")))


RETRAIN_REQUIRED = ("template", "project", "region", "pipeline_root")


def submit_retraining(retrain: Mapping[str, Any], *, date: str = "") -> str:
    """Submits the training pipeline a drift decision asked for, labelled ``trigger=drift``.

    The run carries ``raw_digest`` of the raw objects as they are now (see :func:`with_raw_digest`), so
    a retraining on new files never shares data_prep's cache key with an earlier run.

    Args:
        retrain: ``template``, ``project``, ``region``, ``pipeline_root`` and optionally ``parameter_values``,
            ``service_account``, ``experiment``, ``api_endpoint`` (the drift pipeline's ``retrain``
            parameter, as ``pipeline.py schedule`` builds it).
        date: The drift check's date, recorded as the ``drift_date`` label.

    Returns:
        The PipelineJob resource name.

    Raises:
        ValueError: ``retrain`` lacks a required key, or its ``raw_dir`` holds no objects.
    """
    missing = [k for k in RETRAIN_REQUIRED if not retrain.get(k)]
    if missing:
        raise ValueError(f"the retraining spec lacks {missing}; give the schedule --retrain-template, --raw-dir "
                         f"and --serving-image (see python pipeline.py schedule --help)")
    labels = {"trigger": "drift", "drift_date": label_value(date) or "unknown"}
    init_sdk(retrain["project"], retrain["region"], retrain.get("api_endpoint") or None)
    parameter_values = with_raw_digest(retrain["template"], retrain.get("parameter_values") or {})
    return submit_pipeline_job(retrain["template"], project=retrain["project"], region=retrain["region"],
                               pipeline_root=retrain["pipeline_root"], parameter_values=parameter_values,
                               service_account=retrain.get("service_account") or None,
                               experiment=retrain.get("experiment") or None, labels=labels,
                               api_endpoint=retrain.get("api_endpoint") or None)


RAW_DIGEST_PARAM = "raw_digest"


def raw_objects(raw_dir: str) -> list[dict[str, Any]]:
    """What identifies each raw object's contents, without reading them, sorted by name.

    ``gs://`` prefix: name (relative to the prefix), generation, size, md5 and crc32c (every new upload
    of an object gets a new generation). Local folder: name, size and mtime in nanoseconds.

    Raises:
        FileNotFoundError: Nothing under ``raw_dir``.
    """
    if str(raw_dir).startswith("gs://"):
        from google.cloud import storage

        from churn.storage import split_gcs

        bucket, prefix = split_gcs(str(raw_dir))
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        found = [{"name": b.name[len(prefix):], "generation": str(b.generation), "size": b.size,
                  "md5": b.md5_hash or "", "crc32c": b.crc32c or ""}
                 for b in storage.Client().list_blobs(bucket, prefix=prefix) if not b.name.endswith("/")]
    else:
        root = Path(raw_dir)
        found = [{"name": p.relative_to(root).as_posix(), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
                 for p in (root.rglob("*") if root.is_dir() else ()) if p.is_file()]
    if not found:
        raise FileNotFoundError(f"{raw_dir}: no raw objects found; upload customers.csv and transactions.json "
                                f"there first (see README, 'Raw data contract')")
    return sorted(found, key=lambda o: o["name"])


def raw_digest(raw_dir: str) -> str:
    """A digest that changes whenever an object under ``raw_dir`` is added, removed or rewritten.

    It is the training pipeline's ``raw_digest`` parameter: a task's cache key includes its parameters,
    so a run on new raw data never reuses data_prep's cached outputs, even with caching forced on.

    Args:
        raw_dir: ``gs://`` prefix or local folder (see :func:`raw_objects`).

    Returns:
        ``sha256:`` followed by 32 hex digits.

    Raises:
        FileNotFoundError: Nothing under ``raw_dir``.
    """
    import hashlib
    import json

    listing = json.dumps(raw_objects(raw_dir), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()[:32]


def template_parameters(template_path: str | Path) -> set[str]:
    """The parameter names a compiled pipeline declares (local, ``gs://`` or Artifact Registry template)."""
    from google.cloud.aiplatform.utils import yaml_utils

    spec = yaml_utils.load_yaml(str(template_path))
    spec = spec.get("pipelineSpec", spec)  # a PipelineJob JSON wraps the spec
    return set(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))


def with_raw_digest(template_path: str | Path, parameter_values: Mapping[str, Any]) -> dict[str, Any]:
    """``parameter_values`` plus ``raw_digest`` of their ``raw_dir``, when the template takes it.

    A ``raw_digest`` already given is kept. A template compiled before the parameter existed gets none
    (with a warning: recompile it, or its data_prep may reuse cached outputs under ``--caching``).

    Raises:
        FileNotFoundError: ``raw_dir`` holds no objects.
    """
    params = dict(parameter_values)
    if RAW_DIGEST_PARAM in params or not params.get("raw_dir"):
        return params
    if RAW_DIGEST_PARAM not in template_parameters(template_path):
        logger.warning("%s has no %s parameter (compiled before it existed): the run cannot tell new raw data "
                       "from old; recompile the template", template_path, RAW_DIGEST_PARAM)
        return params
    params[RAW_DIGEST_PARAM] = raw_digest(str(params["raw_dir"]))
    logger.info("raw data %s: %s", params["raw_dir"], params[RAW_DIGEST_PARAM])
    return params


def _read_text(uri: str) -> str:
    if not str(uri).startswith("gs://"):
        return Path(uri).read_text()
    from google.cloud import storage

    from churn.storage import split_gcs

    bucket, name = split_gcs(uri)
    return storage.Client().bucket(bucket).blob(name).download_as_text()


def schedule_pipeline(template_path: str | Path, *, project: str, region: str, pipeline_root: str, cron: str,
                      display_name: str = DRIFT_SCHEDULE_NAME, parameter_values: Mapping[str, Any] | None = None,
                      service_account: str | None = None, labels: Mapping[str, str] | None = None,
                      max_concurrent_runs: int = 1, api_endpoint: str | None = None) -> tuple[str, bool]:
    """Creates or updates (idempotently, by display name) a Vertex AI Pipelines schedule.

    The schedule starts a PipelineJob from ``template_path`` on ``cron``. When a schedule with this display
    name exists it is updated in place (cron, the whole PipelineJob request, concurrency) rather than
    duplicated; run history stays with it.

    Args:
        template_path: Compiled pipeline (local YAML, ``gs://`` or Artifact Registry URL).
        project: Google Cloud project ID.
        region: Vertex AI region.
        pipeline_root: ``gs://`` folder for the runs' artifacts.
        cron: Cron expression, optionally prefixed ``TZ=Area/City `` (default time zone UTC).
        display_name: The schedule's display name: its identity for "create or update".
        parameter_values: Pipeline parameters of every run.
        service_account: Service account the runs execute as.
        labels: Labels of every PipelineJob.
        max_concurrent_runs: Runs allowed at once (1: a slow night never overlaps the next).
        api_endpoint: Vertex AI endpoint override.

    Returns:
        ``(schedule resource name, created)``; created is False when an existing schedule was updated.

    Raises:
        RuntimeError: More than one schedule has this display name (delete the extra ones).
    """
    from google.cloud import aiplatform
    from google.protobuf import field_mask_pb2

    init_sdk(project, region, api_endpoint)
    job = _pipeline_job(str(template_path), project=project, region=region, pipeline_root=pipeline_root,
                        parameter_values=parameter_values, labels=labels, enable_caching=None,
                        display_name=display_name)
    existing = aiplatform.PipelineJobSchedule.list(filter=f'display_name="{display_name}"', project=project,
                                                   location=region)
    if len(existing) > 1:
        raise RuntimeError(f"{len(existing)} schedules are named {display_name!r} in {project}/{region}: "
                           f"delete all but one ({', '.join(s.resource_name for s in existing)})")
    fresh = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=display_name)
    if not existing:
        fresh.create(cron=cron, max_concurrent_run_count=max_concurrent_runs, service_account=service_account)
        logger.info("created schedule %s (%s)", fresh.resource_name, cron)
        return fresh.resource_name, True
    current = existing[0]
    schedule = type(current.gca_resource)(current.gca_resource)
    pipeline_job = {"runtime_config": job.runtime_config, "pipeline_spec": job.pipeline_spec,
                    "labels": dict(labels or {}), "service_account": service_account or ""}
    if str(template_path).startswith("https://"):
        pipeline_job["template_uri"] = str(template_path)
    request = type(schedule.create_pipeline_job_request)(parent=f"projects/{project}/locations/{region}",
                                                         pipeline_job=pipeline_job)
    schedule.cron = cron
    schedule.max_concurrent_run_count = max_concurrent_runs
    schedule.create_pipeline_job_request = request
    mask = field_mask_pb2.FieldMask(paths=["cron", "max_concurrent_run_count", "create_pipeline_job_request"])
    current.api_client.update_schedule(schedule=schedule, update_mask=mask)
    logger.info("updated schedule %s (%s)", current.resource_name, cron)
    return current.resource_name, False


def vertex_base_url(region: str, api_endpoint: str | None = None) -> str:
    """The Vertex AI REST base URL: ``https://REGION-aiplatform.googleapis.com`` or the endpoint override."""
    host = (api_endpoint or f"{region}-aiplatform.googleapis.com").rstrip("/")
    return host if "://" in host else f"https://{host}"


def pipeline_job_request(template_path: str | Path, *, project: str, region: str, pipeline_root: str,
                         display_name: str, parameter_values: Mapping[str, Any] | None = None,
                         service_account: str | None = None, labels: Mapping[str, str] | None = None
                         ) -> dict[str, Any]:
    """The JSON body of a Vertex AI ``pipelineJobs.create`` REST request, as the SDK would build it.

    ``displayName``, ``pipelineSpec`` (the compiled template), ``runtimeConfig`` (``gcsOutputDirectory``,
    ``parameterValues``), ``serviceAccount``, ``labels`` and, for an Artifact Registry template,
    ``templateUri``. Call :func:`init_sdk` first (the template may be read from ``gs://``).
    """
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    job = _pipeline_job(str(template_path), project=project, region=region, pipeline_root=pipeline_root,
                        parameter_values=parameter_values, labels=labels, enable_caching=None,
                        display_name=display_name)
    resource = aiplatform_v1.PipelineJob(
        display_name=display_name, pipeline_spec=job.pipeline_spec, runtime_config=job.runtime_config,
        labels=dict(labels or {}), service_account=service_account or "",
        template_uri=str(template_path) if str(template_path).startswith("https://") else "")
    return json_format.MessageToDict(aiplatform_v1.PipelineJob.pb(resource))


def _scheduler_job_changes(current: Any, wanted: Any) -> list[str]:
    """The managed fields (update-mask paths) in which the existing Cloud Scheduler job differs."""
    have, want = current.http_target, wanted.http_target
    same = {
        "description": current.description == wanted.description,
        "schedule": current.schedule == wanted.schedule,
        "time_zone": current.time_zone == wanted.time_zone,
        # Cloud Scheduler adds headers of its own (User-Agent): only ours must be there and equal.
        "http_target": (have.uri, have.http_method, have.body, have.oauth_token) ==
                       (want.uri, want.http_method, want.body, want.oauth_token)
                       and all(have.headers.get(k) == v for k, v in want.headers.items()),
        "retry_config": all(getattr(current.retry_config, f) == getattr(wanted.retry_config, f)
                            for f in ("retry_count", "min_backoff_duration", "max_backoff_duration",
                                      "max_doublings")),
        "attempt_deadline": current.attempt_deadline == wanted.attempt_deadline,
    }
    return [field for field, ok in same.items() if not ok]


def schedule_with_cloud_scheduler(template_path: str | Path, *, project: str, region: str, pipeline_root: str,
                                  cron: str, time_zone: str | None = None, job_name: str = DRIFT_SCHEDULE_NAME,
                                  parameter_values: Mapping[str, Any] | None = None,
                                  service_account: str | None = None, scheduler_service_account: str | None = None,
                                  labels: Mapping[str, str] | None = None, scheduler_location: str | None = None,
                                  retry_count: int = 3, attempt_deadline_seconds: int = 300,
                                  api_endpoint: str | None = None, scheduler_endpoint: str | None = None
                                  ) -> dict[str, Any]:
    """Creates or updates (idempotently, by job name) the Cloud Scheduler job that starts the pipeline on ``cron``.

    The job ``projects/P/locations/L/jobs/JOB`` POSTs a PipelineJob create request (see
    :func:`pipeline_job_request`; the compiled template travels inside it) to
    ``{Vertex REST base}/v1/projects/P/locations/REGION/pipelineJobs`` with an OAuth token of
    ``scheduler_service_account`` (scope cloud-platform). That account needs ``roles/aiplatform.user`` and,
    to start runs as ``service_account``, ``roles/iam.serviceAccountUser`` on it. A failed attempt is retried
    ``retry_count`` times with backoff from 1 to 10 minutes.

    The job is read first: missing → created; different in any field set here → updated with an update
    mask naming just those fields; otherwise left alone (a paused job stays paused).

    Args:
        template_path: Compiled pipeline (local YAML, ``gs://`` or Artifact Registry URL).
        project: Google Cloud project ID.
        region: Vertex AI region the runs start in.
        pipeline_root: ``gs://`` folder for the runs' artifacts.
        cron: Unix cron expression (``0 2 * * *``).
        time_zone: IANA time zone of ``cron`` (default ``Etc/UTC``).
        job_name: The Cloud Scheduler job ID: its identity for "create or update".
        parameter_values: Pipeline parameters of every run.
        service_account: Service account the runs execute as.
        scheduler_service_account: Service account whose OAuth token calls Vertex AI (default:
            ``service_account``).
        labels: Labels of every PipelineJob.
        scheduler_location: Cloud Scheduler location (default: ``region``).
        retry_count: Retries of a failed attempt (0-5).
        attempt_deadline_seconds: How long one attempt may take (15-1800 s).
        api_endpoint: Vertex AI endpoint override (also the target the job calls).
        scheduler_endpoint: Cloud Scheduler API endpoint override (default ``cloudscheduler.googleapis.com``).

    Returns:
        ``job`` (resource name), ``status`` (``created``, ``updated`` or ``unchanged``), ``changed`` (the
        updated fields), ``state`` (``ENABLED``, ``PAUSED``…) and ``uri`` (what the job POSTs to).

    Raises:
        ValueError: No service account for the OAuth token, a bad job name, or a request too large.
    """
    import json

    from google.api_core import exceptions
    from google.cloud import scheduler_v1
    from google.protobuf import duration_pb2, field_mask_pb2

    caller = scheduler_service_account or service_account
    if not caller:
        raise ValueError("Cloud Scheduler calls Vertex AI with a service account's OAuth token: give "
                         "--service-account (the pipeline's) or --scheduler-service-account")
    if not _SCHEDULER_JOB_ID.fullmatch(job_name):
        raise ValueError(f"Cloud Scheduler job name {job_name!r} may only hold letters, digits, '-' and '_'")
    init_sdk(project, region, api_endpoint)
    request = pipeline_job_request(template_path, project=project, region=region, pipeline_root=pipeline_root,
                                   display_name=job_name, parameter_values=parameter_values,
                                   service_account=service_account, labels=labels)
    body = json.dumps(request, sort_keys=True, separators=(",", ":")).encode()
    if len(body) > SCHEDULER_MAX_BODY:
        raise ValueError(f"the PipelineJob request is {len(body)} bytes, over Cloud Scheduler's job size limit; "
                         f"use --backend vertex-schedule")
    uri = f"{vertex_base_url(region, api_endpoint)}/v1/projects/{project}/locations/{region}/pipelineJobs"
    parent = f"projects/{project}/locations/{scheduler_location or region}"
    wanted = scheduler_v1.Job(
        name=f"{parent}/jobs/{job_name}", schedule=cron, time_zone=time_zone or SCHEDULER_TIME_ZONE,
        description=f"Starts the {request['pipelineSpec']['pipelineInfo']['name']} pipeline on Vertex AI "
                    f"(python pipeline.py schedule)",
        http_target=scheduler_v1.HttpTarget(
            uri=uri, http_method=scheduler_v1.HttpMethod.POST, headers={"Content-Type": "application/json"},
            body=body, oauth_token=scheduler_v1.OAuthToken(service_account_email=caller,
                                                           scope=CLOUD_PLATFORM_SCOPE)),
        retry_config=scheduler_v1.RetryConfig(retry_count=retry_count,
                                              min_backoff_duration=duration_pb2.Duration(seconds=60),
                                              max_backoff_duration=duration_pb2.Duration(seconds=600),
                                              max_doublings=2),
        attempt_deadline=duration_pb2.Duration(seconds=attempt_deadline_seconds))
    client = scheduler_v1.CloudSchedulerClient(
        transport=TRANSPORT, client_options={"api_endpoint": scheduler_endpoint} if scheduler_endpoint else None)
    try:
        current = client.get_job(name=wanted.name)
    except exceptions.NotFound:
        job = client.create_job(parent=parent, job=wanted)
        logger.info("created Cloud Scheduler job %s (%s %s)", job.name, cron, wanted.time_zone)
        return {"job": job.name, "status": "created", "changed": [], "state": job.state.name, "uri": uri}
    changed = _scheduler_job_changes(current, wanted)
    if not changed:
        logger.info("Cloud Scheduler job %s is up to date", current.name)
        return {"job": current.name, "status": "unchanged", "changed": [], "state": current.state.name, "uri": uri}
    job = client.update_job(job=wanted, update_mask=field_mask_pb2.FieldMask(paths=changed))
    logger.info("updated Cloud Scheduler job %s: %s", job.name, ", ".join(changed))
    return {"job": job.name, "status": "updated", "changed": changed, "state": job.state.name, "uri": uri}


# ------------------------------------------------------------------------------------------------
# Model Registry
# ------------------------------------------------------------------------------------------------

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
        return f"projects/{self.target.project}/locations/{self.target.region}/models/{model_id(name)}"

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
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
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


def rollback(registry: ModelRegistry, name: str, to_version: str | None = None) -> dict[str, str | None]:
    """Moves the champion alias back: to ``to_version``, or to the version last replaced (``archived``).

    The replaced champion becomes ``archived`` (tag ``stage=archived``), the restored one is tagged
    ``stage=production``. On Vertex the default version moves with the champion, so deployments by
    model name follow. Works with any :class:`~churn.registry.ModelRegistry`.

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


# ------------------------------------------------------------------------------------------------
# Endpoints
# ------------------------------------------------------------------------------------------------

def deploy(*, project: str, region: str, model_name: str, alias: str = CHAMPION, endpoint_name: str | None = None,
           machine_type: str = DEFAULT_MACHINE_TYPE, min_replicas: int = 1, max_replicas: int = 1,
           traffic_percentage: int = 100, service_account: str | None = None, log_table: str | None = None,
           log_sampling_rate: float = 1.0, labels: Mapping[str, str] | None = None,
           api_endpoint: str | None = None) -> dict[str, Any]:
    """Deploys the model version behind ``alias`` to an Endpoint (reused by display name, else created).

    Args:
        project: Google Cloud project ID.
        region: Vertex AI region.
        model_name: Registered model name (the Vertex model ID).
        alias: Version alias to deploy (``champion``, ``challenger``, a version number…).
        endpoint_name: Endpoint display name (default ``<model_name>-endpoint``).
        machine_type: Serving machine type.
        min_replicas: Minimum replica count.
        max_replicas: Maximum replica count (autoscaling above the minimum).
        traffic_percentage: Share of the endpoint's traffic for the new deployment (0–100); the models
            already deployed share the rest in proportion.
        service_account: Service account the serving container runs as.
        log_table: ``bq://PROJECT.DATASET.TABLE`` enables request-response logging to BigQuery.
        log_sampling_rate: Fraction of requests logged (0–1] when ``log_table`` is set.
        labels: Labels of a newly created Endpoint.
        api_endpoint: Vertex AI endpoint override.

    Returns:
        ``endpoint`` resource name, ``deployed_model_id``, ``model`` (versioned resource name),
        ``version``, ``traffic_split`` and ``created`` (whether the Endpoint was new).

    Raises:
        ValueError: Bad traffic percentage, sampling rate or BigQuery table URI.
        LookupError: No version behind ``alias``.
    """
    from google.api_core import exceptions
    from google.cloud import aiplatform
    from google.protobuf import field_mask_pb2

    if not 0 <= traffic_percentage <= 100:
        raise ValueError(f"--traffic must be 0–100 (percent for the new deployment), got {traffic_percentage}")
    if log_table and not re.fullmatch(r"bq://[\w-]+\.\w+\.\w+", log_table):
        raise ValueError(f"request-response log table {log_table!r} must look like bq://PROJECT.DATASET.TABLE")
    if not 0 < log_sampling_rate <= 1:
        raise ValueError(f"log sampling rate must be in (0, 1], got {log_sampling_rate}")
    init_sdk(project, region, api_endpoint)
    resource = f"projects/{project}/locations/{region}/models/{model_id(model_name)}"
    try:
        model = aiplatform.Model(resource, version=alias)
    except exceptions.NotFound as exc:
        raise LookupError(f"{model_name}: no version behind alias {alias!r} in {project}/{region}; register one "
                          f"first (pipeline run with a vertex:// registry URI) or pick another --alias") from exc
    endpoint_name = endpoint_name or f"{model_name}-endpoint"
    found = aiplatform.Endpoint.list(filter=f'display_name="{endpoint_name}"', project=project, location=region)
    created = not found
    if created:
        endpoint = aiplatform.Endpoint.create(
            display_name=endpoint_name, labels=dict(labels or {}) or None, project=project, location=region,
            enable_request_response_logging=bool(log_table),
            request_response_logging_sampling_rate=log_sampling_rate if log_table else None,
            request_response_logging_bq_destination_table=log_table)
    else:
        endpoint = found[0]
        if log_table:
            _enable_request_logging(endpoint, log_table, log_sampling_rate, field_mask_pb2)
    endpoint.deploy(model=model, deployed_model_display_name=f"{model_name}-v{model.version_id}",
                    traffic_percentage=traffic_percentage, machine_type=machine_type,
                    min_replica_count=min_replicas, max_replica_count=max_replicas, service_account=service_account)
    deployed = [d for d in endpoint.list_models() if d.model_version_id == str(model.version_id)
                and d.model.split("@")[0].endswith(f"/models/{model_id(model_name)}")]
    logger.info("deployed %s v%s to %s", model_name, model.version_id, endpoint.resource_name)
    return {"endpoint": endpoint.resource_name, "deployed_model_id": deployed[-1].id if deployed else None,
            "model": model.versioned_resource_name, "version": str(model.version_id),
            "traffic_split": dict(endpoint.traffic_split), "created": created}


def _enable_request_logging(endpoint: Any, log_table: str, rate: float, field_mask_pb2: Any) -> None:
    """Turns on request-response logging of an existing Endpoint when it is off or points elsewhere."""
    current = endpoint.gca_resource.predict_request_response_logging_config
    if current.enabled and current.bigquery_destination.output_uri == log_table and current.sampling_rate == rate:
        return
    resource = type(endpoint.gca_resource)(endpoint.gca_resource)
    config = resource.predict_request_response_logging_config
    config.enabled = True
    config.sampling_rate = rate
    config.bigquery_destination.output_uri = log_table
    endpoint.api_client.update_endpoint(
        endpoint=resource, update_mask=field_mask_pb2.FieldMask(paths=["predict_request_response_logging_config"]))


# ------------------------------------------------------------------------------------------------
# Batch prediction
# ------------------------------------------------------------------------------------------------

INSTANCE_TYPES = ("object", "array")
BATCH_TERMINAL_STATES = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
                         "JOB_STATE_PARTIALLY_SUCCEEDED")
_BQ_TABLE = re.compile(r"bq://[\w-]+\.\w+\.[\w-]+")
_BQ_DESTINATION = re.compile(r"bq://[\w-]+(\.\w+)?")
_GCS_JSONL = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/\S*\.jsonl")
_GCS_PREFIX = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/\S*)?")


def _batch_io(bigquery_source: str | None, gcs_source: str | None, bigquery_destination: str | None,
              gcs_destination: str | None, instance_type: str | None, included_fields: list[str],
              excluded_fields: list[str]) -> None:
    """Checks sources, destinations and the instance config before anything is sent."""
    if bool(bigquery_source) == bool(gcs_source):
        raise ValueError("give one source: --bigquery-source bq://PROJECT.DATASET.TABLE or --gcs-source "
                         "gs://BUCKET/PATH.jsonl")
    if bool(bigquery_destination) == bool(gcs_destination):
        raise ValueError("give one destination: --bigquery-destination bq://PROJECT[.DATASET] or "
                         "--gcs-destination gs://BUCKET/PREFIX")
    if bigquery_source and not _BQ_TABLE.fullmatch(bigquery_source):
        raise ValueError(f"--bigquery-source {bigquery_source!r} must look like bq://PROJECT.DATASET.TABLE")
    if gcs_source and not _GCS_JSONL.fullmatch(gcs_source):
        raise ValueError(f"--gcs-source {gcs_source!r} must be JSONL in Cloud Storage, one instance per line: "
                         f"gs://BUCKET/PATH.jsonl (wildcards allowed: gs://BUCKET/rows/*.jsonl)")
    if bigquery_destination and not _BQ_DESTINATION.fullmatch(bigquery_destination):
        raise ValueError(f"--bigquery-destination {bigquery_destination!r} must look like bq://PROJECT or "
                         f"bq://PROJECT.DATASET (Vertex creates the predictions table)")
    if gcs_destination and not _GCS_PREFIX.fullmatch(gcs_destination):
        raise ValueError(f"--gcs-destination {gcs_destination!r} must look like gs://BUCKET/PREFIX")
    if instance_type not in (None, *INSTANCE_TYPES):
        raise ValueError(f"instance type {instance_type!r}: use one of {INSTANCE_TYPES}")
    if included_fields and excluded_fields:
        raise ValueError("give --included-fields or --excluded-fields, not both (Vertex accepts one)")
    if instance_type == "array" and gcs_source and not included_fields:
        raise ValueError("--instance-type array with JSONL objects needs --included-fields: their order is the "
                         "order of the array (the feature order of GET /schema)")


def batch_predict(*, project: str, region: str, model_name: str, version: str = CHAMPION,
                  bigquery_source: str | None = None, gcs_source: str | None = None,
                  bigquery_destination: str | None = None, gcs_destination: str | None = None,
                  instance_type: str | None = None, key_field: str | None = None,
                  included_fields: list[str] | None = None, excluded_fields: list[str] | None = None,
                  machine_type: str = DEFAULT_MACHINE_TYPE, starting_replicas: int = 1, max_replicas: int = 1,
                  batch_size: int | None = None, service_account: str | None = None,
                  labels: Mapping[str, str] | None = None, display_name: str | None = None, sync: bool = False,
                  poll_seconds: float = 30.0, api_endpoint: str | None = None) -> dict[str, Any]:
    """Starts a Vertex AI BatchPredictionJob on a registered model version, on its serving container.

    The request is what ``Model.batch_predict`` builds (model version, input/output config, dedicated
    machines, labels), plus the ``instanceConfig`` the SDK has no argument for, sent with the SDK's own
    JobService client (REST transport, ``api_endpoint``). ``instanceConfig``: ``instance_type`` ``object``
    or ``array`` (Vertex sends BigQuery rows as arrays in column order unless told ``object``);
    ``key_field`` is taken out of each instance and written next to its prediction;
    ``included_fields``/``excluded_fields`` pick the columns sent (and, for arrays, their order).

    Args:
        project: Google Cloud project ID.
        region: Vertex AI region.
        model_name: Registered model name (the Vertex model ID).
        version: Version number or alias (``champion``, ``challenger``…).
        bigquery_source: ``bq://PROJECT.DATASET.TABLE`` of feature rows.
        gcs_source: ``gs://…jsonl`` feature rows, one JSON instance per line.
        bigquery_destination: ``bq://PROJECT`` or ``bq://PROJECT.DATASET`` for the predictions table.
        gcs_destination: ``gs://BUCKET/PREFIX`` for the prediction files.
        instance_type: ``object``, ``array`` or None (Vertex's default for the source).
        key_field: Field paired with each output and removed from the instance.
        included_fields: Fields sent to the model (and the array order).
        excluded_fields: Fields not sent to the model.
        machine_type: Machine type of the replicas.
        starting_replicas: Replicas at the start.
        max_replicas: Replicas the job may scale to.
        batch_size: Instances per request to a replica (Vertex's default 64 when None).
        service_account: Service account the job runs as.
        labels: Labels of the job.
        display_name: Job display name (default ``<model>-v<version>-batch-<UTC stamp>``).
        sync: Wait until the job ends.
        poll_seconds: Seconds between state checks when ``sync``.
        api_endpoint: Vertex AI endpoint override.

    Returns:
        ``job`` (resource name), ``model`` (versioned resource name), ``version``, ``state`` and, when
        the job has finished, ``output`` (the GCS folder or BigQuery dataset) and ``error``.

    Raises:
        ValueError: A bad source, destination, instance config or replica count.
        LookupError: No such model, or no version behind ``version``.
    """
    import time

    from google.api_core import exceptions
    from google.cloud import aiplatform, aiplatform_v1

    included, excluded = list(included_fields or []), list(excluded_fields or [])
    _batch_io(bigquery_source, gcs_source, bigquery_destination, gcs_destination, instance_type, included, excluded)
    if not 1 <= starting_replicas <= max_replicas:
        raise ValueError(f"replicas: need 1 <= --starting-replicas ({starting_replicas}) <= --max-replicas "
                         f"({max_replicas})")
    init_sdk(project, region, api_endpoint)
    resource = f"projects/{project}/locations/{region}/models/{model_id(model_name)}"
    try:
        model = aiplatform.Model(resource, version=version)
    except exceptions.NotFound as exc:
        raise LookupError(f"{model_name}: no model or no version behind {version!r} in {project}/{region}; "
                          f"give a registered version number or alias (champion, challenger)") from exc
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    job = aiplatform_v1.BatchPredictionJob(
        display_name=display_name or f"{model_name}-v{model.version_id}-batch-{stamp}",
        model=model.versioned_resource_name,
        input_config=aiplatform_v1.BatchPredictionJob.InputConfig(
            instances_format="bigquery", bigquery_source=aiplatform_v1.BigQuerySource(input_uri=bigquery_source))
        if bigquery_source else aiplatform_v1.BatchPredictionJob.InputConfig(
            instances_format="jsonl", gcs_source=aiplatform_v1.GcsSource(uris=[gcs_source])),
        output_config=aiplatform_v1.BatchPredictionJob.OutputConfig(
            predictions_format="bigquery",
            bigquery_destination=aiplatform_v1.BigQueryDestination(output_uri=bigquery_destination))
        if bigquery_destination else aiplatform_v1.BatchPredictionJob.OutputConfig(
            predictions_format="jsonl",
            gcs_destination=aiplatform_v1.GcsDestination(output_uri_prefix=gcs_destination)),
        dedicated_resources=aiplatform_v1.BatchDedicatedResources(
            machine_spec=aiplatform_v1.MachineSpec(machine_type=machine_type),
            starting_replica_count=starting_replicas, max_replica_count=max_replicas),
        labels={"model": label_value(model_name), "model_version": str(model.version_id), **dict(labels or {})},
        service_account=service_account or "")
    if instance_type or key_field or included or excluded:
        job.instance_config = aiplatform_v1.BatchPredictionJob.InstanceConfig(
            instance_type=instance_type or "", key_field=key_field or "", included_fields=included,
            excluded_fields=excluded)
    if batch_size:
        job.manual_batch_tuning_parameters = aiplatform_v1.ManualBatchTuningParameters(batch_size=batch_size)
    client = aiplatform.initializer.global_config.create_client(
        client_class=aiplatform.utils.JobClientWithOverride, location_override=region)
    created = client.create_batch_prediction_job(parent=f"projects/{project}/locations/{region}",
                                                 batch_prediction_job=job)
    logger.info("submitted %s (%s v%s)", created.name, model_name, model.version_id)
    result = {"job": created.name, "model": model.versioned_resource_name, "version": str(model.version_id),
              "state": created.state.name}
    if not sync:
        return result
    handle = aiplatform.BatchPredictionJob(created.name)
    while handle.state.name not in BATCH_TERMINAL_STATES:
        time.sleep(poll_seconds)
    resource = handle.gca_resource
    info = resource.output_info
    return {**result, "state": resource.state.name,
            "output": info.gcs_output_directory or info.bigquery_output_dataset,
            "error": resource.error.message if resource.error.code or resource.error.message else ""}


# ------------------------------------------------------------------------------------------------
# Vertex Experiments
# ------------------------------------------------------------------------------------------------

def _run_name(prefix: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
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
