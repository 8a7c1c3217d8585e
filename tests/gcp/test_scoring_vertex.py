"""Batch scoring on Vertex AI: ``submit --pipeline scoring`` and ``schedule --pipeline scoring``, on the wire.

The real google-cloud-aiplatform SDK (REST) and google-cloud-scheduler talk to ``fake_vertex.py``; the raw
folder lives in gcp-storage-emulator. The tests assert on the PipelineJob requests actually sent: the
scoring pipeline compiled for the image, its parameters (the Model Registry the training runs register in,
the version to score with) and, for a schedule, the request Cloud Scheduler fires every week.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.request

import pipeline
from churn import vertexai
from pipelines.scoring import PIPELINE_NAME as SCORING_NAME
from tests.gcp.conftest import PROJECT, RAW_FILES, REGION, put_raw

IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/pipeline:0123abc"
SERVING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/serving:0123abc"
SA = f"churn-pipeline@{PROJECT}.iam.gserviceaccount.com"
LOC = f"projects/{PROJECT}/locations/{REGION}"


def _gcp(vertex) -> list[str]:
    return ["--project", PROJECT, "--region", REGION, "--api-endpoint", vertex.url]


def _check_scoring_request(job: dict, raw: str, root: str, vertex, **expected) -> None:
    spec = job["pipelineSpec"]
    assert spec["pipelineInfo"]["name"] == SCORING_NAME
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {IMAGE}
    assert spec["root"]["dag"]["tasks"]["score"]["cachingOptions"].get("enableCache", False) is False
    params = job["runtimeConfig"]["parameterValues"]
    assert {k: params[k] for k in ("raw_dir", "model_name", "model", "as_of", "top")} == \
        {"raw_dir": raw, "model_name": "churn-model", **expected}
    assert "raw_digest" not in params  # the scoring template takes none (and the step never caches)
    registry = vertexai.parse_vertex_uri(params["registry_uri"])
    # the registry the training runs register in: same project, region, endpoint and staging prefix
    assert (registry.project, registry.region, registry.api_endpoint, registry.staging) == \
        (PROJECT, REGION, vertex.url, f"{root}/models")
    assert job["runtimeConfig"]["gcsOutputDirectory"] == root


def test_submit_scoring_sends_the_scoring_pipeline(vertex, gcs, resource_manager_lookup, capsys, caplog) -> None:
    root = f"gs://{gcs}/pipeline-root"
    raw = put_raw(gcs, "raw", RAW_FILES)
    with caplog.at_level(logging.WARNING):
        code = pipeline.main(["submit", *_gcp(vertex), "--pipeline", "scoring", "--pipeline-root", root,
                              "--image", IMAGE, "--raw-dir", raw, "--service-account", SA, "--model", "3",
                              "--as-of", "2026-11-30", "--top", "250", "--label", "trigger=manual",
                              "--job-id", "score-1"])
    assert code == 0, capsys.readouterr().err
    assert f"{LOC}/pipelineJobs/score-1" in capsys.readouterr().out
    assert "recompile" not in caplog.text  # no raw_digest warning for a template that never takes one
    body = vertex.calls("POST", r"/pipelineJobs$")[-1].body
    _check_scoring_request(body, raw, root, vertex, model="3", as_of="2026-11-30", top=250)
    assert body["serviceAccount"] == SA and body["labels"] == {"trigger": "manual"}
    assert vertex.pipeline_jobs[f"{LOC}/pipelineJobs/score-1"]["state"] == "PIPELINE_STATE_PENDING"


def test_schedule_scoring_weekly_with_cloud_scheduler_then_fire_it(vertex, capsys) -> None:
    root = "gs://acme-churn/pipeline-root"
    args = ["schedule", *_gcp(vertex), "--pipeline", "scoring", "--scheduler-endpoint", vertex.url,
            "--cron", "0 4 * * 1", "--time-zone", "Europe/Amsterdam", "--pipeline-root", root,
            "--service-account", SA, "--image", IMAGE, "--raw-dir", "gs://acme-churn/raw"]
    assert pipeline.main(args) == 0
    name = f"{LOC}/jobs/churn-scoring-weekly"
    assert f"created Cloud Scheduler job {name} (0 4 * * 1, Europe/Amsterdam; ENABLED)" in capsys.readouterr().out
    job = vertex.scheduler_jobs[name]
    request = json.loads(base64.b64decode(job["httpTarget"]["body"]))
    _check_scoring_request(request, "gs://acme-churn/raw", root, vertex, model="champion", as_of="", top=1000)
    assert request["displayName"] == "churn-scoring-weekly"

    assert pipeline.main(args) == 0  # the same command again: nothing changes, no second job
    assert "unchanged Cloud Scheduler job" in capsys.readouterr().out and list(vertex.scheduler_jobs) == [name]

    # what Cloud Scheduler does on Monday 04:00: POST the body; Vertex AI accepts it as a PipelineJob
    target = job["httpTarget"]
    fire = urllib.request.Request(target["uri"], data=base64.b64decode(target["body"]), method="POST",
                                  headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(fire, timeout=10) as response:
        created = json.loads(response.read())
    assert created["pipelineSpec"]["pipelineInfo"]["name"] == SCORING_NAME


def test_schedule_scoring_as_a_vertex_schedule(vertex, capsys) -> None:
    root = "gs://acme-churn/pipeline-root"
    assert pipeline.main(["schedule", *_gcp(vertex), "--pipeline", "scoring", "--backend", "vertex-schedule",
                          "--cron", "0 4 * * 1", "--pipeline-root", root, "--service-account", SA, "--image", IMAGE,
                          "--raw-dir", "gs://acme-churn/raw", "--model", "challenger"]) == 0
    assert "created schedule" in capsys.readouterr().out
    create = vertex.calls("POST", r"/schedules$")[-1].body
    assert create["displayName"] == "churn-scoring-weekly" and create["cron"] == "0 4 * * 1"
    _check_scoring_request(create["createPipelineJobRequest"]["pipelineJob"], "gs://acme-churn/raw", root, vertex,
                           model="challenger", as_of="", top=1000)


def test_scoring_refuses_drift_options_and_needs_raw_data(vertex, capsys) -> None:
    common = ["schedule", *_gcp(vertex), "--pipeline", "scoring", "--scheduler-endpoint", vertex.url,
              "--cron", "0 4 * * 1", "--pipeline-root", "gs://acme-churn/root", "--service-account", SA,
              "--image", IMAGE]
    assert pipeline.main([*common, "--raw-dir", "gs://acme-churn/raw", "--current", "gs://acme-churn/p/"]) == 2
    err = capsys.readouterr().err
    assert "--current: options of the drift pipeline, not of --pipeline scoring" in err and "Traceback" not in err
    assert pipeline.main(common) == 2
    assert "--pipeline scoring needs --raw-dir" in capsys.readouterr().err
    drift = [a if a != "scoring" else "drift" for a in common]
    assert pipeline.main([*drift, "--monitoring-image", IMAGE, "--window-days", "0"]) == 2
    assert "--window-days 0: give 1 or more days" in capsys.readouterr().err
    assert not vertex.requests  # refused before any call
