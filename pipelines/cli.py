"""The command line of ``pipeline.py``: every command's flags, help text and example.

What the commands do lives beside it: ``pipelines/local.py`` (run), ``pipelines/cloud.py`` (submit,
schedule, deploy, rollback, batch-predict) and ``components/score.py`` (score); ``pipeline.py``
parses with :func:`build_parser` and hands each command over.
"""

import argparse
import json
from pathlib import Path
from typing import Any

from pipelines.cloud import SCORING_SCHEDULE_NAME
from pipelines.drift import NIGHTLY_WINDOW_DAYS
from pipelines.training import DEFAULT_IMAGE


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python pipeline.py``, one subcommand per command (``--help`` lists them)."""
    parser = argparse.ArgumentParser(
        prog="pipeline.py",
        description="Customer-churn training pipeline on Kubeflow Pipelines v2: run it locally or compile it for "
                    "Vertex AI Pipelines / Kubeflow; submit, deploy, roll back and schedule on Vertex AI.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_compile_parser(sub)
    _add_run_parser(sub)
    _add_score_parser(sub)
    _add_cloud_parsers(sub)
    return parser


def _add_compile_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compile", help="compile the pipeline to a KFP YAML file",
                       description="Compile the pipeline to KFP IR YAML. Every component runs on --image, the "
                                   "project's own image built from images/pipeline/Dockerfile.")
    c.add_argument("--output", type=Path, default=None,
                   help="default: churn_pipeline.yaml (training) or churn_scoring.yaml (scoring)")
    c.add_argument("--image", default=DEFAULT_IMAGE, help="component image URI (default: %(default)s)")
    c.add_argument("--pipeline", choices=("training", "scoring"), default="training",
                   help="which pipeline: training, or batch scoring (pipelines/scoring.py) (default: %(default)s)")


def _cutoff(text: str) -> str:
    """``--cutoff``, checked before the run (a usage error) and passed on as ISO text."""
    from churn.cleaning import cutoff_arg

    return cutoff_arg(text)


def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run the whole pipeline locally (kfp.local, no Docker, no cloud)",
        description="Run data_prep → feature_engineering → train → evaluate → register_model locally with kfp.local's "
                    "SubprocessRunner in this Python environment. Task outputs go to --pipeline-root; the results are "
                    "then published to data/interim, data/processed, data/features and models/<name>/v<N>, and a "
                    "summary (rows kept/rejected per input, metrics, model version and alias, paths) is printed.",
        epilog="Example: python pipeline.py run --raw-dir data/raw --summary-json data/run_summary.json",
    )
    p.add_argument("--raw-dir", type=Path, required=True, help="folder with customers.csv and transactions.json")
    p.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print every line the tasks write (executor JSON included); by default only their progress "
                        "is shown and everything goes to <pipeline-root>/logs/run-<time>.log")
    p.add_argument("--churn-window-days", type=int, default=90, help="label window in days (default: %(default)s)")
    p.add_argument("--cutoff", type=_cutoff, default="",
                   help="ISO date or instant (UTC) for features and labels (default: from the data; README, 'Label')")
    p.add_argument("--seed", type=int, default=42, help="split and model seed (default: %(default)s)")
    p.add_argument("--validation-fraction", type=float, default=0.2, help="default: %(default)s")
    p.add_argument("--gate-metric", default="roc_auc", help="promotion gate metric (default: %(default)s)")
    p.add_argument("--gate-margin", type=float, default=0.0,
                   help="improvement over the champion needed to promote (default: %(default)s)")
    p.add_argument("--model-name", default="churn-model", help="registered model name (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: mlruns/mlflow.db); '' disables")
    p.add_argument("--registry-uri", default=None, help="registry URI (default: the tracking store)")
    p.add_argument("--pipeline-root", type=Path, default=None, help="kfp.local outputs (default: local_outputs/)")


def _add_score_parser(sub: argparse._SubParsersAction) -> None:
    from components.score import add_arguments

    p = sub.add_parser(
        "score", help="score every kept customer with a registered model (batch scoring)",
        description="Clean a raw folder with data_prep's rules, compute every kept customer's features as of "
                    "--as-of with the scoring model's own feature schema, score them with the model's ONNX graph "
                    "and write data/predictions/<model_version>_batch_<date>.csv (the serving log's columns + rank, "
                    "decile; the drift check reads it as --current) and top_risk_<date>.csv. Exit code 2 on bad "
                    "input (no champion, unknown version, unusable raw data).",
        epilog="Example: python pipeline.py score --raw-dir data/raw --model champion --top 500 "
               "--summary-json data/score_summary.json",
    )
    add_arguments(p)


def _key_value(text: str) -> tuple[str, Any]:
    """``key=value`` → (key, value); the value is read as JSON when it parses (7, 0.5, true), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _add_gcp_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", required=True, help="Google Cloud project ID")
    p.add_argument("--region", required=True, help="Vertex AI region, e.g. europe-west4")
    p.add_argument("--api-endpoint", default=None,
                   help="Vertex AI endpoint (default: REGION-aiplatform.googleapis.com); e.g. a Private Service "
                        "Connect endpoint")


def _add_template_options(p: argparse.ArgumentParser, image_flag: str, image_help: str) -> None:
    p.add_argument("--template", default=None,
                   help="compiled pipeline YAML: a file, gs:// object or https://REGION-kfp.pkg.dev/… Artifact "
                        f"Registry URL (else it is compiled for {image_flag})")
    p.add_argument(image_flag, default=None, help=image_help)
    p.add_argument("--pipeline-root", required=True, help="gs:// folder for the runs' artifacts")
    p.add_argument("--service-account", default=None,
                   help="service account the steps run as (default: the Compute Engine default service account)")
    p.add_argument("--label", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="label of the PipelineJob (repeatable)")
    p.add_argument("--param", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter (repeatable); values are read as JSON when they parse (7, 0.5)")


def _add_cloud_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit", help="submit the training (or batch scoring) pipeline to Vertex AI Pipelines",
        description="Compile the pipeline for --image (or take --template) and submit it as a Vertex AI "
                    "PipelineJob; it returns at once and prints the run's console URL. Raw data is read from "
                    "--raw-dir (gs://). With --serving-image the run registers its model in the Vertex AI Model "
                    "Registry (versions of --model-name, alias champion or challenger by the promotion gate); with "
                    "--experiment the run is associated with that Vertex Experiment and train/evaluate log to it. "
                    "--pipeline scoring submits the batch scoring pipeline instead (pipelines/scoring.py): every "
                    "kept customer of --raw-dir scored as of --as-of by the registered --model (default champion) "
                    "of --model-name, read from the Model Registry the training runs register in.",
        epilog="Example: python pipeline.py submit --project my-project --region europe-west4 --pipeline-root "
               "gs://my-bucket/pipeline-root --image europe-west4-docker.pkg.dev/my-project/churn/pipeline:abc123 "
               "--serving-image europe-west4-docker.pkg.dev/my-project/churn/serving:abc123 --raw-dir "
               "gs://my-bucket/raw --service-account churn-pipeline@my-project.iam.gserviceaccount.com "
               "--experiment churn",
    )
    _add_gcp_options(p)
    _add_template_options(p, "--image", "pipeline component image to compile for (images/pipeline/Dockerfile)")
    p.add_argument("--raw-dir", required=True, help="gs:// folder with customers.csv and transactions.json")
    p.add_argument("--serving-image", default=None,
                   help="serving image (images/serving/Dockerfile): registers models in the Vertex AI Model "
                        "Registry with it; else pass --param registry_uri=URI")
    p.add_argument("--model-name", default="churn-model", help="registered model name (default: %(default)s)")
    p.add_argument("--experiment", default=None, help="Vertex Experiment for the run and its tracking")
    p.add_argument("--display-name", default=None, help="run display name (default: the pipeline name)")
    p.add_argument("--job-id", default=None, help="run ID (default: churn-training-<timestamp>)")
    p.add_argument("--caching", action=argparse.BooleanOptionalAction, default=None,
                   help="force step caching on/off (default: as compiled: on, except data_prep). Runs carry "
                        "raw_digest, a digest of the --raw-dir objects, so even with caching on a run on changed "
                        "files never reuses data_prep's outputs")
    p.add_argument("--prediction-log-uri", default=None, metavar="gs://BUCKET/PREFIX",
                   help="registered versions' serving containers log predictions here (SERVING_PREDICTION_LOG_URI "
                        "on the model): the nightly drift check's --current")
    p.add_argument("--pipeline", choices=("training", "scoring"), default="training",
                   help="training, or batch scoring (pipelines/scoring.py) (default: %(default)s)")
    _add_scoring_options(p)

    p = sub.add_parser(
        "deploy", help="deploy a registered model version to a Vertex AI Endpoint",
        description="Deploy the version of --model behind --alias to the Endpoint named --endpoint (reused when "
                    "it exists, created otherwise). --traffic percent of the Endpoint's requests go to the new "
                    "deployment; models already deployed share the rest in proportion. --log-table turns on "
                    "request-response logging to BigQuery (optional: the nightly drift check reads the serving "
                    "container's gs:// prediction log, set with submit --prediction-log-uri).",
        epilog="Example: python pipeline.py deploy --project my-project --region europe-west4 --model churn-model "
               "--alias champion --traffic 100 --log-table bq://my-project.churn.predictions",
    )
    _add_gcp_options(p)
    p.add_argument("--model", required=True, help="registered model name (the Vertex model ID)")
    p.add_argument("--alias", default="champion", help="version alias or number to deploy (default: %(default)s)")
    p.add_argument("--endpoint", default=None, help="endpoint display name (default: <model>-endpoint)")
    p.add_argument("--machine-type", default="n1-standard-2", help="default: %(default)s")
    p.add_argument("--min-replicas", type=int, default=1, help="default: %(default)s")
    p.add_argument("--max-replicas", type=int, default=1, help="autoscaling maximum (default: %(default)s)")
    p.add_argument("--traffic", type=int, default=100,
                   help="percent of traffic for the new deployment, 0-100 (default: %(default)s)")
    p.add_argument("--service-account", default=None, help="service account the serving container runs as")
    p.add_argument("--log-table", default=None, help="bq://PROJECT.DATASET.TABLE: log requests and responses")
    p.add_argument("--log-sampling-rate", type=float, default=1.0, help="fraction logged (default: %(default)s)")

    _add_batch_predict_parser(sub)

    p = sub.add_parser(
        "rollback", help="move the champion alias back to the previous (or a given) version",
        description="Point the 'champion' alias (and Vertex's default version) of --model back at the version "
                    "it replaced (alias 'archived'), or at --to-version; the replaced champion becomes 'archived'. "
                    "Endpoints keep serving what they deployed: run deploy afterwards to serve the restored version.",
        epilog="Example: python pipeline.py rollback --project my-project --region europe-west4 --model churn-model",
    )
    _add_gcp_options(p)
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--to-version", default=None, help="version to restore (default: the 'archived' one)")

    p = sub.add_parser(
        "schedule", help="create or update the nightly drift-check (or batch scoring) schedule (Cloud Scheduler → "
                         "Vertex AI)",
        description="Create, or update in place, the schedule that runs the drift pipeline on Vertex AI on --cron: "
                    "the drift check of --current against --baseline on --monitoring-image, writing to "
                    "--output-dir; then, when it decides to retrain and --retrain-template is given, a step on "
                    "--image submits that training pipeline on --raw-dir. With --backend cloud-scheduler (the "
                    "default) it is the Cloud Scheduler job --display-name in --scheduler-location (default "
                    "--region), which POSTs the PipelineJob request to Vertex AI with an OAuth token of "
                    "--scheduler-service-account (default --service-account; it needs roles/aiplatform.user and "
                    "roles/iam.serviceAccountUser on --service-account). With --backend vertex-schedule it is a "
                    "Vertex AI Pipelines schedule of that display name instead. Running it again with other "
                    "values updates the same job; with the same values it changes nothing; it never makes a "
                    "second one. Without --baseline the drift check finds the baseline of the model that served "
                    "the log itself (its registered folder's baseline/, named by the log's model.json). "
                    "--pipeline scoring schedules the batch scoring pipeline instead (e.g. --cron \"0 4 * * 1\", "
                    "weekly; job churn-scoring-weekly): the options of submit --pipeline scoring.",
        epilog='Example: python pipeline.py schedule --project my-project --region europe-west4 --cron "0 2 * * *" '
               "--time-zone Europe/Amsterdam --pipeline-root gs://my-bucket/pipeline-root --service-account "
               "churn-pipeline@my-project.iam.gserviceaccount.com --monitoring-image "
               "europe-west4-docker.pkg.dev/my-project/churn/monitoring:abc123 --image "
               "europe-west4-docker.pkg.dev/my-project/churn/pipeline:abc123 "
               "--current gs://my-bucket/predictions/ --output-dir "
               "gs://my-bucket/monitoring/ --retrain-template gs://my-bucket/templates/churn_pipeline-abc123.yaml "
               "--raw-dir gs://my-bucket/raw --serving-image "
               "europe-west4-docker.pkg.dev/my-project/churn/serving:abc123",
    )
    _add_gcp_options(p)
    _add_template_options(p, "--monitoring-image", "monitoring image to compile the drift pipeline for")
    p.add_argument("--cron", required=True, help='cron expression, e.g. "0 2 * * *" (02:00 every day)')
    p.add_argument("--time-zone", default=None, help="IANA time zone of --cron (default: UTC)")
    p.add_argument("--pipeline", choices=("drift", "scoring"), default="drift",
                   help="drift: the drift check (+ retraining); scoring: batch scoring (default: %(default)s)")
    p.add_argument("--baseline", default=None,
                   help="training data the drift is measured against (default: the served model's own, found "
                        "from the log's model.json)")
    p.add_argument("--current", default=None,
                   help="gs:// prediction log to check: the serving log's prefix (SERVING_PREDICTION_LOG_URI) or "
                        "a file")
    p.add_argument("--output-dir", default=None, help="gs:// folder for the drift reports")
    p.add_argument("--window-days", type=int, default=NIGHTLY_WINDOW_DAYS,
                   help="days of log parts each run checks, ending on its day (UTC): 2 lets a run after midnight "
                        "see all of yesterday (default: %(default)s)")
    p.add_argument("--display-name", default=None,
                   help="the schedule's name: the Cloud Scheduler job ID, or the Vertex schedule's display name; "
                        f"also the runs' display name (default: churn-drift-nightly, or {SCORING_SCHEDULE_NAME})")
    p.add_argument("--backend", choices=("cloud-scheduler", "vertex-schedule"), default="cloud-scheduler",
                   help="cloud-scheduler: a Cloud Scheduler job that starts each run on Vertex AI; vertex-schedule: "
                        "a Vertex AI Pipelines schedule (default: %(default)s)")
    p.add_argument("--scheduler-service-account", default=None,
                   help="cloud-scheduler: service account whose OAuth token starts the runs (default: "
                        "--service-account)")
    p.add_argument("--scheduler-location", default=None,
                   help="cloud-scheduler: location of the job (default: --region)")
    p.add_argument("--scheduler-endpoint", default=None,
                   help="cloud-scheduler: Cloud Scheduler API endpoint (default: cloudscheduler.googleapis.com)")
    p.add_argument("--image", default=None,
                   help="pipeline component image for the retraining step (compiling; images/pipeline/Dockerfile)")
    retrain = p.add_argument_group("retraining on drift (all optional: without --retrain-template the schedule "
                                   "only reports)")
    retrain.add_argument("--retrain-template", default=None,
                         help="compiled training pipeline to submit on drift (gs:// or Artifact Registry URL)")
    retrain.add_argument("--raw-dir", default=None, help="gs:// raw data folder the retraining run reads")
    retrain.add_argument("--serving-image", default=None, help="serving image the retrained model registers with")
    retrain.add_argument("--model-name", default="churn-model", help="registered model name (default: %(default)s)")
    retrain.add_argument("--experiment", default=None, help="Vertex Experiment of the retraining runs")
    retrain.add_argument("--prediction-log-uri", default=None, metavar="gs://BUCKET/PREFIX",
                         help="where the retrained model's serving container logs predictions (default: --current "
                              "when it is a gs:// prefix ending in /)")
    _add_scoring_options(p)


def _add_scoring_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("batch scoring (with --pipeline scoring; also --raw-dir, --model-name)")
    group.add_argument("--model", default="champion",
                       help="registered version to score with: an alias or a number (default: %(default)s)")
    group.add_argument("--as-of", default="", help="ISO date the features are computed at (default: the newest "
                                                   "transaction in --raw-dir when the run starts)")
    group.add_argument("--top", type=int, default=1000, help="customers in the top-risk list (default: %(default)s)")


def _field_list(text: str) -> list[str]:
    """``a,b,c`` → ``["a", "b", "c"]``."""
    return [f.strip() for f in text.split(",") if f.strip()]


def _add_batch_predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch-predict", help="score feature rows in BigQuery or JSONL on GCS with a Vertex AI BatchPredictionJob",
        description="Start a Vertex AI BatchPredictionJob on the version of --model behind --version (a number or "
                    "an alias), served by the model's own serving container on dedicated machines, for feature rows "
                    "that already sit in BigQuery (--bigquery-source) or in JSONL on Cloud Storage (--gcs-source). "
                    "It returns once the job is submitted and prints its console URL; --sync waits for the end. "
                    "instanceConfig decides what each instance looks like: Vertex sends BigQuery (and CSV) rows "
                    "as ARRAYS of values in column order unless --instance-type object; --included-fields / "
                    "--excluded-fields pick the columns sent (for arrays, --included-fields is also their order: "
                    "give the feature order of the server's GET /schema); --key-field (e.g. customer_id) is "
                    "removed from each instance and written next to its prediction, pairing outputs with keys. "
                    "The serving container accepts objects holding exactly the model's features (the default "
                    "--instance-type object, with the key field taken out) and arrays in GET /schema order.",
        epilog="Example: python pipeline.py batch-predict --project my-project --region europe-west4 --model "
               "churn-model --version champion --bigquery-source bq://my-project.churn.features_today "
               "--bigquery-destination bq://my-project.churn_scores --key-field customer_id --machine-type "
               "n1-standard-4 --max-replicas 4",
    )
    _add_gcp_options(p)
    p.add_argument("--model", default="churn-model", help="registered model name (default: %(default)s)")
    p.add_argument("--version", default="champion",
                   help="version number or alias: champion, challenger, archived, 3 (default: %(default)s)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bigquery-source", metavar="bq://PROJECT.DATASET.TABLE", help="feature rows in BigQuery")
    source.add_argument("--gcs-source", metavar="gs://BUCKET/PATH.jsonl",
                        help="feature rows as JSONL, one instance per line (wildcards allowed)")
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--bigquery-destination", metavar="bq://PROJECT[.DATASET]",
                      help="BigQuery project or dataset receiving a predictions table")
    dest.add_argument("--gcs-destination", metavar="gs://BUCKET/PREFIX", help="folder receiving prediction files")
    p.add_argument("--instance-type", choices=("object", "array"), default="object",
                   help="object: each row as {field: value}; array: values in column order (Vertex's default for "
                        "BigQuery, in GET /schema order); default: %(default)s")
    p.add_argument("--key-field", default=None,
                   help="field removed from each instance and paired with its prediction, e.g. customer_id")
    p.add_argument("--included-fields", type=_field_list, default=None, metavar="A,B,...",
                   help="only these fields are sent, in this order (needed for arrays from JSONL objects)")
    p.add_argument("--excluded-fields", type=_field_list, default=None, metavar="A,B,...",
                   help="these fields are not sent (not with --included-fields)")
    p.add_argument("--machine-type", default="n1-standard-2", help="default: %(default)s")
    p.add_argument("--starting-replicas", type=int, default=1, help="default: %(default)s")
    p.add_argument("--max-replicas", type=int, default=1, help="the job may scale up to this (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="instances per request to a replica (Vertex: 64)")
    p.add_argument("--service-account", default=None, help="service account the job runs as")
    p.add_argument("--display-name", default=None, help="job name (default: <model>-v<N>-batch-<UTC time>)")
    p.add_argument("--label", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="label of the job (repeatable)")
    p.add_argument("--sync", action="store_true", help="wait until the job ends; exit 1 unless it succeeded")
    p.add_argument("--poll-seconds", type=float, default=30.0, help="with --sync: seconds between checks "
                                                                    "(default: %(default)s)")
