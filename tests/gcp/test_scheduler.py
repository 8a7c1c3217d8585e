"""``python pipeline.py schedule`` with its default backend, Cloud Scheduler, on the wire.

The real google-cloud-scheduler client (REST transport, ``--scheduler-endpoint``) talks to the Cloud
Scheduler stand-in of ``fake_vertex.py``; the tests assert on the job bodies it actually sent, and on the
PipelineJob create request inside the job's HTTP body (base64 on the wire), which is what Cloud Scheduler
POSTs to Vertex AI every night. Nothing is patched.
"""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest

import pipeline
from churn import vertex_jobs, vertexai
from components.drift import DRIFT_COMMAND
from pipelines.drift import DRIFT_PIPELINE_NAME, compile_drift_pipeline
from tests.gcp.conftest import PROJECT, REGION

IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/pipeline:0123abc"
SERVING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/serving:0123abc"
MONITORING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/monitoring:0123abc"
SA = f"churn-pipeline@{PROJECT}.iam.gserviceaccount.com"
SCHEDULER_SA = f"churn-scheduler@{PROJECT}.iam.gserviceaccount.com"
LOC = f"projects/{PROJECT}/locations/{REGION}"
JOB = f"{LOC}/jobs/churn-drift-nightly"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _one(calls: list) -> object:
    assert len(calls) == 1, [(c.method, c.path) for c in calls]
    return calls[0]


def _pipeline_request(job: dict) -> dict:
    """The PipelineJob create request in a job's HTTP body (bytes: base64 in JSON)."""
    return json.loads(base64.b64decode(job["httpTarget"]["body"]))


def _executor_images(request: dict) -> dict[str, str]:
    executors = request["pipelineSpec"]["deploymentSpec"]["executors"]
    return {name: e["container"]["image"] for name, e in executors.items()}


def test_schedule_help_teaches_the_backends(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        pipeline.main(["schedule", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "{cloud-scheduler,vertex-schedule}" in out and "(default: cloud-scheduler)" in out
    for flag in ("--scheduler-endpoint", "--scheduler-service-account", "--scheduler-location"):
        assert flag in out, flag
    assert "roles/aiplatform.user" in out and "roles/iam.serviceAccountUser" in out


def test_schedule_creates_updates_then_leaves_one_cloud_scheduler_job(vertex, capsys) -> None:
    from google.cloud import scheduler_v1

    common = ["--project", PROJECT, "--region", REGION, "--scheduler-endpoint", vertex.url,
              "--pipeline-root", "gs://acme-churn/root", "--service-account", SA,
              "--scheduler-service-account", SCHEDULER_SA, "--time-zone", "Europe/Amsterdam",
              "--baseline", "gs://acme-churn/processed/train.csv", "--current", "gs://acme-churn/predictions/",
              "--output-dir", "gs://acme-churn/monitoring/", "--image", IMAGE, "--label", "team=ml"]
    retrain = ["--retrain-template", "gs://acme-churn/templates/churn_pipeline-0123abc.yaml",
               "--raw-dir", "gs://acme-churn/raw", "--serving-image", SERVING_IMAGE]

    # 1. created (no --backend: Cloud Scheduler is the default)
    assert pipeline.main(["schedule", *common, *retrain, "--cron", "0 2 * * *",
                          "--monitoring-image", MONITORING_IMAGE]) == 0
    out = capsys.readouterr().out
    assert f"created Cloud Scheduler job {JOB} (0 2 * * *, Europe/Amsterdam; ENABLED)" in out
    assert _one(vertex.calls("GET", r"/jobs/churn-drift-nightly$")).path == f"/v1/{JOB}"  # looked up first: 404
    create = _one(vertex.calls("POST", r"/jobs$"))
    assert create.path == f"/v1/{LOC}/jobs"
    assert create.headers["authorization"].startswith("Bearer ")  # the throwaway key's credentials
    job = create.body
    assert job["name"] == JOB
    assert (job["schedule"], job["timeZone"]) == ("0 2 * * *", "Europe/Amsterdam")
    target = job["httpTarget"]
    assert target["uri"] == f"https://{REGION}-aiplatform.googleapis.com/v1/{LOC}/pipelineJobs"
    assert target["httpMethod"] == scheduler_v1.HttpMethod.POST  # 1: the client sends enum-encoding=int
    assert target["headers"] == {"Content-Type": "application/json"}
    assert target["oauthToken"] == {"serviceAccountEmail": SCHEDULER_SA, "scope": SCOPE}
    assert "oidcToken" not in target
    assert job["retryConfig"] == {"retryCount": 3, "minBackoffDuration": "60s", "maxBackoffDuration": "600s",
                                  "maxDoublings": 2}
    assert job["attemptDeadline"] == "300s"

    request = _pipeline_request(job)
    assert request["displayName"] == "churn-drift-nightly"
    assert request["pipelineSpec"]["pipelineInfo"]["name"] == DRIFT_PIPELINE_NAME
    assert _executor_images(request) == {"exec-drift-check": MONITORING_IMAGE, "exec-retrain-on-drift": IMAGE}
    check = request["pipelineSpec"]["deploymentSpec"]["executors"]["exec-drift-check"]["container"]
    assert check["command"] == list(DRIFT_COMMAND)
    assert request["runtimeConfig"]["gcsOutputDirectory"] == "gs://acme-churn/root"
    params = request["runtimeConfig"]["parameterValues"]
    assert {k: params[k] for k in ("baseline", "current", "output_dir")} == {
        "baseline": "gs://acme-churn/processed/train.csv", "current": "gs://acme-churn/predictions/",
        "output_dir": "gs://acme-churn/monitoring/"}
    spec = params["retrain"]
    assert (spec["template"], spec["project"], spec["region"], spec["pipeline_root"], spec["service_account"]) == \
        ("gs://acme-churn/templates/churn_pipeline-0123abc.yaml", PROJECT, REGION, "gs://acme-churn/root", SA)
    assert spec["parameter_values"]["raw_dir"] == "gs://acme-churn/raw"
    assert vertexai.parse_vertex_uri(spec["parameter_values"]["registry_uri"]).serving_image == SERVING_IMAGE
    assert request["serviceAccount"] == SA  # the runs' identity; the token is the scheduler's
    assert request["labels"] == {"team": "ml"}
    # Vertex AI itself was not called: the job carries the request, Cloud Scheduler sends it
    assert not [r for r in vertex.requests if "/pipelineJobs" in r.path or "/schedules" in r.path]

    # 2. updated in place: another cron and monitoring image, no retraining
    new_image = MONITORING_IMAGE.replace("0123abc", "4567def")
    assert pipeline.main(["schedule", *common, "--cron", "30 3 * * *", "--monitoring-image", new_image]) == 0
    out = capsys.readouterr().out
    assert f"updated Cloud Scheduler job {JOB}: schedule, http_target (30 3 * * *" in out
    assert len(vertex.calls("POST", r"/jobs$")) == 1 and list(vertex.scheduler_jobs) == [JOB]  # one job only
    patch = _one(vertex.calls("PATCH", r"/jobs/"))
    assert patch.path == f"/v1/{JOB}"
    assert set(patch.query["updateMask"][0].split(",")) == {"schedule", "httpTarget"}  # just what changed
    assert patch.body["schedule"] == "30 3 * * *" and patch.body["timeZone"] == "Europe/Amsterdam"
    assert patch.body["httpTarget"]["oauthToken"] == {"serviceAccountEmail": SCHEDULER_SA, "scope": SCOPE}
    request = _pipeline_request(patch.body)
    assert _executor_images(request) == {"exec-drift-check": new_image, "exec-retrain-on-drift": IMAGE}
    assert "retrain" not in request["runtimeConfig"]["parameterValues"]
    stored = vertex.scheduler_jobs[JOB]
    assert stored["schedule"] == "30 3 * * *" and stored["state"] == "ENABLED"
    assert _executor_images(_pipeline_request(stored))["exec-drift-check"] == new_image
    assert stored["httpTarget"]["headers"]["User-Agent"] == "Google-Cloud-Scheduler"  # added by the service

    # 3. the same command again: read, found equal, nothing sent
    before = len(vertex.requests)
    assert pipeline.main(["schedule", *common, "--cron", "30 3 * * *", "--monitoring-image", new_image]) == 0
    assert f"unchanged Cloud Scheduler job {JOB} (30 3 * * *" in capsys.readouterr().out
    assert [(r.method, r.path) for r in vertex.requests[before:]] == [("GET", f"/v1/{JOB}")]


def test_the_job_starts_a_valid_pipeline_job_on_vertex(vertex, tmp_path) -> None:
    """What Cloud Scheduler does at 02:00, replayed: POST the job's body to its URI with its headers."""
    from google.cloud import aiplatform_v1

    template = compile_drift_pipeline(tmp_path / "drift.yaml", MONITORING_IMAGE, IMAGE)
    result = vertex_jobs.schedule_with_cloud_scheduler(
        template, project=PROJECT, region=REGION, pipeline_root="gs://acme-churn/root", cron="0 2 * * *",
        job_name="drift-eu", parameter_values={"baseline": "gs://b/train.csv", "current": "gs://b/p/",
                                               "output_dir": "gs://b/m/"},
        service_account=SA, scheduler_location="europe-west1", api_endpoint=vertex.url,
        scheduler_endpoint=vertex.url)
    name = f"projects/{PROJECT}/locations/europe-west1/jobs/drift-eu"
    assert (result["job"], result["status"], result["state"]) == (name, "created", "ENABLED")
    job = vertex.scheduler_jobs[name]
    assert job["timeZone"] == "Etc/UTC"  # sent explicitly, not left to the service
    target = job["httpTarget"]
    assert target["uri"] == result["uri"] == f"{vertex.url}/v1/{LOC}/pipelineJobs"  # runs stay in REGION
    assert target["oauthToken"]["serviceAccountEmail"] == SA  # defaults to the pipeline's service account

    # strict parse: every field is one the Vertex AI v1 PipelineJob message has
    body = base64.b64decode(target["body"])
    parsed = aiplatform_v1.PipelineJob.from_json(body.decode(), ignore_unknown_fields=False)
    assert parsed.service_account == SA and parsed.runtime_config.gcs_output_directory == "gs://acme-churn/root"

    headers = {k: v for k, v in target["headers"].items() if k != "User-Agent"}
    fire = urllib.request.Request(target["uri"], data=body, method=target["httpMethod"],
                                  headers={**headers, "Authorization": "Bearer token-of-the-scheduler-sa"})
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(fire, timeout=10) as response:
        created = json.loads(response.read())
    assert created["name"].startswith(f"{LOC}/pipelineJobs/") and created["state"] == "PIPELINE_STATE_PENDING"
    assert created["pipelineSpec"] == json.loads(body)["pipelineSpec"]
    sent = _one(vertex.calls("POST", r"/pipelineJobs$"))
    assert sent.headers["content-type"] == "application/json" and sent.body["displayName"] == "drift-eu"


def test_cloud_scheduler_errors_name_the_fix(vertex, capsys, tmp_path) -> None:
    args = ["schedule", "--project", PROJECT, "--region", REGION, "--scheduler-endpoint", vertex.url,
            "--pipeline-root", "gs://acme-churn/root", "--cron", "0 2 * * *", "--monitoring-image", MONITORING_IMAGE,
            "--image", IMAGE]
    assert pipeline.main(args) == 2  # no service account for the OAuth token
    assert "--scheduler-service-account" in capsys.readouterr().err
    assert pipeline.main([*args, "--service-account", SA, "--display-name", "churn drift"]) == 2
    assert "letters, digits" in capsys.readouterr().err
    assert not vertex.requests  # refused before any call
