"""Vertex AI pipeline jobs: submit a compiled pipeline, retrain on a drift decision, schedule nightly runs.

The nightly schedule is a Cloud Scheduler job that POSTs a PipelineJob create request to Vertex AI
(:func:`schedule_with_cloud_scheduler`, google-cloud-scheduler over REST), or alternatively a Vertex AI
Pipelines schedule (:func:`schedule_pipeline`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn.vertexai import TRANSPORT, init_sdk, label_value, vertex_base_url

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud import aiplatform

logger = logging.getLogger(__name__)

DRIFT_SCHEDULE_NAME = "churn-drift-nightly"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
SCHEDULER_TIME_ZONE = "Etc/UTC"
SCHEDULER_MAX_BODY = 900_000  # bytes; a Cloud Scheduler job is at most 1 MB in all
_SCHEDULER_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")


def _pipeline_job(template_path: str, *, project: str, region: str, pipeline_root: str,
                  parameter_values: Mapping[str, Any] | None, labels: Mapping[str, str] | None,
                  enable_caching: bool | None, display_name: str | None, job_id: str | None = None
                  ) -> aiplatform.PipelineJob:
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
