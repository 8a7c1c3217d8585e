"""The Vertex AI commands of ``pipeline.py``: submit, schedule, deploy, rollback, batch-predict.

Each turns its parsed flags into one call of the ``churn.vertex_*`` modules and prints what happened
and its console URL. A refused or invalid request is one logged line and exit code 2.
"""

import argparse
import logging
from pathlib import Path
from typing import Any

from pipelines.drift import compile_drift_pipeline
from pipelines.scoring import compile_scoring_pipeline
from pipelines.training import compile_pipeline

logger = logging.getLogger("pipeline")  # the CLI's logger: its name prefixes the messages users see

COMMANDS = ("submit", "deploy", "rollback", "schedule", "batch-predict")
SCORING_SCHEDULE_NAME = "churn-scoring-weekly"


def run_cloud_command(args: argparse.Namespace) -> int:
    """Runs submit / deploy / rollback / schedule / batch-predict; errors are reported as one line (exit 2)."""
    import tempfile

    from google.api_core.exceptions import GoogleAPICallError

    target = {"project": args.project, "region": args.region, "api_endpoint": args.api_endpoint}
    try:
        if args.command in ("submit", "schedule"):
            with tempfile.TemporaryDirectory(prefix="churn-compile-") as tmp:
                run = _submit if args.command == "submit" else _schedule
                return run(args, target, Path(tmp))
        return {"batch-predict": _batch_predict, "deploy": _deploy, "rollback": _rollback}[args.command](args, target)
    except (ValueError, LookupError, RuntimeError, FileNotFoundError) as exc:
        logger.error("%s: %s", args.command, exc)
        return 2
    except GoogleAPICallError as exc:
        logger.error("%s: Vertex AI refused the request: %s", args.command, exc)
        return 2


def _submit(args: argparse.Namespace, target: dict, tmp: Path) -> int:
    from churn import vertex_jobs, vertexai

    params = dict(args.param)
    if args.pipeline == "scoring":  # no raw_digest: the scoring step never caches, and its template takes none
        template = _template(args, (args.image,), compile_scoring_pipeline, tmp)
        params = _scoring_parameters(args, target, params)
    else:
        template = _template(args, (args.image,), compile_pipeline, tmp)
        params = vertex_jobs.with_raw_digest(template, _training_parameters(args, target, params))
    name = vertex_jobs.submit_pipeline_job(template, **target, pipeline_root=args.pipeline_root,
                                           parameter_values=params, service_account=args.service_account,
                                           experiment=args.experiment, labels=dict(args.label),
                                           enable_caching=args.caching, display_name=args.display_name,
                                           job_id=args.job_id)
    print(f"submitted {name}\n{vertexai.console_url(name)}")
    return 0


def _schedule(args: argparse.Namespace, target: dict, tmp: Path) -> int:
    from churn import vertex_jobs, vertexai

    params = dict(args.param)
    labels = dict(args.label)
    scoring = args.pipeline == "scoring"
    if scoring:
        template = _template(args, (args.image,), compile_scoring_pipeline, tmp)
        params = _scoring_parameters(args, target, params)
    else:
        template = _template(args, (args.monitoring_image, args.image), compile_drift_pipeline, tmp)
        if args.window_days < 1:
            raise ValueError(f"--window-days {args.window_days}: give 1 or more days of log parts to check")
        for key in ("current", "output_dir", "window_days"):
            if getattr(args, key):
                params[key] = getattr(args, key)
        params.setdefault("baseline", args.baseline or "")  # "": the drift check finds the model's own
    display_name = args.display_name or (SCORING_SCHEDULE_NAME if scoring else vertex_jobs.DRIFT_SCHEDULE_NAME)
    if args.retrain_template and not scoring:
        if not args.raw_dir:
            raise ValueError("--retrain-template needs --raw-dir (the gs:// raw data to retrain on)")
        params["retrain"] = {**target, "template": args.retrain_template,
                             "pipeline_root": args.pipeline_root, "service_account": args.service_account,
                             "experiment": args.experiment,
                             "parameter_values": _training_parameters(args, target, {})}
    if args.backend == "cloud-scheduler":
        result = vertex_jobs.schedule_with_cloud_scheduler(
            template, **target, pipeline_root=args.pipeline_root, cron=args.cron, time_zone=args.time_zone,
            job_name=display_name, parameter_values=params, service_account=args.service_account,
            scheduler_service_account=args.scheduler_service_account, labels=labels,
            scheduler_location=args.scheduler_location, scheduler_endpoint=args.scheduler_endpoint)
        changed = f": {', '.join(result['changed'])}" if result["changed"] else ""
        print(f"{result['status']} Cloud Scheduler job {result['job']}{changed} "
              f"({args.cron}, {args.time_zone or vertex_jobs.SCHEDULER_TIME_ZONE}; {result['state']}) "
              f"→ POST {result['uri']}")
        print(f"https://console.cloud.google.com/cloudscheduler?project={args.project}")
        return 0
    cron = f"TZ={args.time_zone} {args.cron}" if args.time_zone else args.cron
    name, created = vertex_jobs.schedule_pipeline(template, **target, pipeline_root=args.pipeline_root, cron=cron,
                                                  display_name=display_name, parameter_values=params,
                                                  service_account=args.service_account, labels=labels)
    print(f"{'created' if created else 'updated'} schedule {name} ({cron})\n{vertexai.console_url(name)}")
    return 0


def _deploy(args: argparse.Namespace, target: dict) -> int:
    from churn import vertex_endpoints, vertexai

    result = vertex_endpoints.deploy(**target, model_name=args.model, alias=args.alias, endpoint_name=args.endpoint,
                                     machine_type=args.machine_type, min_replicas=args.min_replicas,
                                     max_replicas=args.max_replicas, traffic_percentage=args.traffic,
                                     service_account=args.service_account, log_table=args.log_table,
                                     log_sampling_rate=args.log_sampling_rate)
    print(f"deployed {args.model} v{result['version']} ({args.alias}) to {result['endpoint']} "
          f"({'created' if result['created'] else 'reused'}); traffic split {result['traffic_split']}")
    print(vertexai.console_url(result["endpoint"]))
    return 0


def _rollback(args: argparse.Namespace, target: dict) -> int:
    from churn import vertexai
    from churn.registry import rollback
    from churn.registry.vertex import VertexRegistry

    registry = VertexRegistry(vertexai.VertexTarget(**target))
    result = rollback(registry, args.model, args.to_version)
    print(f"{args.model}: champion is now v{result['champion']} (v{result['archived']} archived)")
    return 0


def _batch_predict(args: argparse.Namespace, target: dict) -> int:
    from churn import vertex_endpoints, vertexai

    result = vertex_endpoints.batch_predict(
        **target, model_name=args.model, version=args.version, bigquery_source=args.bigquery_source,
        gcs_source=args.gcs_source, bigquery_destination=args.bigquery_destination,
        gcs_destination=args.gcs_destination, instance_type=args.instance_type, key_field=args.key_field,
        included_fields=args.included_fields, excluded_fields=args.excluded_fields, machine_type=args.machine_type,
        starting_replicas=args.starting_replicas, max_replicas=args.max_replicas, batch_size=args.batch_size,
        service_account=args.service_account, labels=dict(args.label), display_name=args.display_name,
        sync=args.sync, poll_seconds=args.poll_seconds)
    print(f"submitted {result['job']} ({args.model} v{result['version']}, {args.version})")
    print(vertexai.console_url(result["job"]))
    if not args.sync:
        return 0
    if result["state"] != "JOB_STATE_SUCCEEDED":
        logger.error("batch-predict: %s ended %s: %s", result["job"], result["state"], result["error"] or "no detail")
        return 1
    print(f"{result['state']}: predictions in {result['output']}")
    return 0


def _template(args: argparse.Namespace, images: tuple[str | None, ...], compile_fn: Any, tmp: Path) -> str:
    if args.template:
        return args.template
    if not all(images):
        raise ValueError("give --template (a compiled pipeline) or the image(s) to compile it for")
    return str(compile_fn(tmp / "pipeline.yaml", *images))


def _training_parameters(args: argparse.Namespace, target: dict, params: dict[str, Any]) -> dict[str, Any]:
    """The training pipeline's parameters for a Vertex run: raw data, model name, registry and tracking URIs.

    The registry URI carries the prediction log prefix the registered versions' serving containers log to
    (``--prediction-log-uri``; for a schedule's retraining, by default the ``--current`` prefix it checks).
    """
    from churn import vertexai

    root = args.pipeline_root.rstrip("/")
    params = dict(params)
    params.setdefault("raw_dir", args.raw_dir)
    params.setdefault("model_name", args.model_name)
    log_uri = args.prediction_log_uri
    if log_uri is None and args.command == "schedule" and str(args.current or "").endswith("/"):
        log_uri = args.current  # the retrained model logs where this schedule reads
    if log_uri and not str(log_uri).startswith("gs://"):
        raise ValueError(f"--prediction-log-uri {log_uri!r} must be a gs:// prefix, e.g. gs://BUCKET/predictions "
                         f"(the serving container's disk is lost with it)")
    if "registry_uri" not in params:
        if not args.serving_image:
            raise ValueError(f"{args.command} needs --serving-image (Vertex AI Model Registry) or "
                             f"--param registry_uri=URI")
        params["registry_uri"] = vertexai.VertexTarget(**target, serving_image=args.serving_image,
                                                     staging=f"{root}/models",
                                                     prediction_log=str(log_uri or "").rstrip("/")).uri()
    if "tracking_uri" not in params and args.experiment:
        params["tracking_uri"] = vertexai.VertexTarget(**target, experiment=args.experiment,
                                                     staging=f"{root}/experiments").uri()
    return params


def _scoring_parameters(args: argparse.Namespace, target: dict, params: dict[str, Any]) -> dict[str, Any]:
    """The scoring pipeline's parameters for a Vertex run: raw data, the model to score with, and the
    Model Registry the training runs register in (the ``registry_uri`` :func:`_training_parameters` builds)."""
    from churn import vertexai

    if not args.raw_dir:
        raise ValueError("--pipeline scoring needs --raw-dir (the gs:// raw data of the customers to score)")
    drift_only = [flag for flag, value in (("--baseline", args.baseline), ("--current", args.current),
                                           ("--output-dir", args.output_dir),
                                           ("--retrain-template", args.retrain_template))
                  if value] if args.command == "schedule" else []
    if drift_only:
        raise ValueError(f"{', '.join(drift_only)}: options of the drift pipeline, not of --pipeline scoring")
    params = dict(params)
    for key, value in (("raw_dir", args.raw_dir), ("model_name", args.model_name), ("model", args.model),
                       ("as_of", args.as_of), ("top", args.top)):
        params.setdefault(key, value)
    if "registry_uri" not in params:
        params["registry_uri"] = vertexai.VertexTarget(**target, serving_image=args.serving_image or "",
                                                     staging=f"{args.pipeline_root.rstrip('/')}/models").uri()
    return params
