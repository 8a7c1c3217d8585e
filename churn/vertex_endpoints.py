"""Vertex AI endpoints and batch prediction for a registered model version.

:func:`deploy` puts the version behind an alias on an Endpoint; :func:`batch_predict` runs a
BatchPredictionJob on a version. Both find the version with :func:`model_version`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from churn.registry import CHAMPION
from churn.vertexai import init_sdk, label_value, model_id, model_resource

logger = logging.getLogger(__name__)

DEFAULT_MACHINE_TYPE = "n1-standard-2"


def model_version(project: str, region: str, model_name: str, version: str, *, missing: str, fix: str) -> Any:
    """The ``aiplatform.Model`` of a registered version (a number or an alias such as ``champion``).

    Args:
        project: Google Cloud project ID.
        region: Vertex AI region.
        model_name: Registered model name (the Vertex model ID).
        version: Version number or alias.
        missing: What was not found, for the error (``no version behind alias 'x'``).
        fix: What to do about it, for the error.

    Raises:
        LookupError: No such model, or no version behind ``version``.
    """
    from google.api_core import exceptions
    from google.cloud import aiplatform

    try:
        return aiplatform.Model(model_resource(project, region, model_name), version=version)
    except exceptions.NotFound as exc:
        raise LookupError(f"{model_name}: {missing} in {project}/{region}; {fix}") from exc


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
    from google.cloud import aiplatform
    from google.protobuf import field_mask_pb2

    if not 0 <= traffic_percentage <= 100:
        raise ValueError(f"--traffic must be 0–100 (percent for the new deployment), got {traffic_percentage}")
    if log_table and not re.fullmatch(r"bq://[\w-]+\.\w+\.\w+", log_table):
        raise ValueError(f"request-response log table {log_table!r} must look like bq://PROJECT.DATASET.TABLE")
    if not 0 < log_sampling_rate <= 1:
        raise ValueError(f"log sampling rate must be in (0, 1], got {log_sampling_rate}")
    init_sdk(project, region, api_endpoint)
    model = model_version(project, region, model_name, alias, missing=f"no version behind alias {alias!r}",
                          fix="register one first (pipeline run with a vertex:// registry URI) or pick another --alias")
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

    from google.cloud import aiplatform, aiplatform_v1

    included, excluded = list(included_fields or []), list(excluded_fields or [])
    _batch_io(bigquery_source, gcs_source, bigquery_destination, gcs_destination, instance_type, included, excluded)
    if not 1 <= starting_replicas <= max_replicas:
        raise ValueError(f"replicas: need 1 <= --starting-replicas ({starting_replicas}) <= --max-replicas "
                         f"({max_replicas})")
    init_sdk(project, region, api_endpoint)
    model = model_version(project, region, model_name, version, missing=f"no model or no version behind {version!r}",
                          fix="give a registered version number or alias (champion, challenger)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
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
