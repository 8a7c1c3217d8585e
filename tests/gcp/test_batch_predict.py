"""``python pipeline.py batch-predict`` on the wire: a Vertex AI BatchPredictionJob on a registered version.

The model versions are registered through the real SDK (``register_model`` with a ``vertex://`` registry),
then the command's BatchPredictionJob create request is read back from the fake Vertex AI server as the
SDK's JobService client (REST transport) sent it. Nothing is patched.
"""

from __future__ import annotations

import pytest

import pipeline
from churn import vertexai
from components import register_model as rm
from tests.gcp.conftest import PROJECT, REGION

SERVING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/serving:0123abc"
SA = f"churn-batch@{PROJECT}.iam.gserviceaccount.com"
LOC = f"projects/{PROJECT}/locations/{REGION}"
BQ_SOURCE = f"bq://{PROJECT}.churn.features_today"
FEATURES = "recency_days,frequency,monetary_avg"


def _gcp(vertex) -> list[str]:
    return ["--project", PROJECT, "--region", REGION, "--api-endpoint", vertex.url]


@pytest.fixture
def registered(vertex, gcs, processed, model_dirs, tmp_path) -> None:
    """churn-model v1 (champion, the good model) and v2 (challenger, shuffled labels) in the fake registry."""
    uri = vertexai.VertexTarget(PROJECT, REGION, api_endpoint=vertex.url, serving_image=SERVING_IMAGE,
                          staging=f"gs://{gcs}/models").uri()
    rm.run(model_dirs["good"], processed.folder, tmp_path / "v1", registry_uri=uri)
    rm.run(model_dirs["bad"], processed.folder, tmp_path / "v2", registry_uri=uri)
    versions = vertex.models["churn-model"].versions
    assert "champion" in versions["1"]["versionAliases"] and "challenger" in versions["2"]["versionAliases"]


def _create(vertex) -> dict:
    calls = vertex.calls("POST", r"/batchPredictionJobs$")
    assert len(calls) == 1, [(c.method, c.path) for c in vertex.requests]
    return calls[0].body


def test_bigquery_rows_are_scored_by_the_champion_and_it_returns_after_submit(vertex, registered, capsys) -> None:
    code = pipeline.main(["batch-predict", *_gcp(vertex), "--bigquery-source", BQ_SOURCE,
                          "--bigquery-destination", f"bq://{PROJECT}.churn_scores", "--key-field", "customer_id",
                          "--machine-type", "n1-standard-4", "--starting-replicas", "2", "--max-replicas", "5",
                          "--batch-size", "500", "--service-account", SA, "--label", "team=retention"])
    assert code == 0
    out = capsys.readouterr().out
    job = next(iter(vertex.batch_jobs))
    assert f"submitted {job} (churn-model v1, champion)" in out
    assert f"/vertex-ai/locations/{REGION}/batch-predictions/{job.rsplit('/', 1)[-1]}?project={PROJECT}" in out

    body = _create(vertex)
    assert body["model"] == f"{LOC}/models/churn-model@1"  # the champion's version, pinned
    assert body["inputConfig"] == {"instancesFormat": "bigquery", "bigquerySource": {"inputUri": BQ_SOURCE}}
    assert body["outputConfig"] == {"predictionsFormat": "bigquery",
                                    "bigqueryDestination": {"outputUri": f"bq://{PROJECT}.churn_scores"}}
    # objects (what serving accepts today) with the key taken out of each instance and paired with its output
    assert body["instanceConfig"] == {"instanceType": "object", "keyField": "customer_id"}
    assert body["dedicatedResources"] == {"machineSpec": {"machineType": "n1-standard-4"},
                                          "startingReplicaCount": 2, "maxReplicaCount": 5}
    assert body["manualBatchTuningParameters"] == {"batchSize": 500}
    assert body["serviceAccount"] == SA
    assert body["labels"] == {"model": "churn-model", "model_version": "1", "team": "retention"}
    assert body["displayName"].startswith("churn-model-v1-batch-")
    assert not vertex.calls("GET", r"/batchPredictionJobs/")  # asynchronous: nothing waited for
    assert vertex.batch_jobs[job]["state"] == "JOB_STATE_PENDING"


def test_jsonl_on_gcs_as_arrays_with_sync_waits_for_the_output(vertex, registered, capsys) -> None:
    code = pipeline.main(["batch-predict", *_gcp(vertex), "--version", "challenger",
                          "--gcs-source", "gs://acme-churn/rows/*.jsonl", "--gcs-destination", "gs://acme-churn/scores",
                          "--instance-type", "array", "--included-fields", FEATURES, "--sync",
                          "--poll-seconds", "0.01", "--display-name", "weekly-scores"])
    assert code == 0
    out = capsys.readouterr().out
    job = next(iter(vertex.batch_jobs))
    assert f"JOB_STATE_SUCCEEDED: predictions in gs://acme-churn/scores/prediction-{job.rsplit('/', 1)[-1]}" in out
    body = _create(vertex)
    assert body["model"] == f"{LOC}/models/churn-model@2" and body["displayName"] == "weekly-scores"
    assert body["inputConfig"] == {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://acme-churn/rows/*.jsonl"]}}
    assert body["outputConfig"] == {"predictionsFormat": "jsonl",
                                    "gcsDestination": {"outputUriPrefix": "gs://acme-churn/scores"}}
    assert body["instanceConfig"] == {"instanceType": "array", "includedFields": FEATURES.split(",")}
    assert body["dedicatedResources"]["machineSpec"] == {"machineType": "n1-standard-2"}
    assert "manualBatchTuningParameters" not in body  # Vertex's own batch size
    assert len(vertex.calls("GET", r"/batchPredictionJobs/\d+$")) >= 2  # polled until it ended


def test_a_failed_job_with_sync_exits_1_with_the_services_reason(vertex, registered, capsys) -> None:
    vertex.batch_outcome = {"state": "JOB_STATE_FAILED",
                            "error": {"code": 3, "message": "422 from the model server: Input should be an object"}}
    code = pipeline.main(["batch-predict", *_gcp(vertex), "--version", "1", "--bigquery-source", BQ_SOURCE,
                          "--gcs-destination", "gs://acme-churn/scores", "--instance-type", "array", "--sync",
                          "--poll-seconds", "0.01"])
    err = capsys.readouterr().err
    assert code == 1
    assert "ended JOB_STATE_FAILED: 422 from the model server: Input should be an object" in err
    assert "Traceback" not in err
    assert _create(vertex)["model"] == f"{LOC}/models/churn-model@1"  # a version number works as well


@pytest.mark.parametrize(("args", "message"), [
    (["--version", "nope", "--bigquery-source", BQ_SOURCE, "--gcs-destination", "gs://acme-churn/out"],
     "no model or no version behind 'nope'"),
    (["--model", "other-model", "--bigquery-source", BQ_SOURCE, "--gcs-destination", "gs://acme-churn/out"],
     "other-model: no model or no version"),
    (["--bigquery-source", "acme-ml.churn.features", "--gcs-destination", "gs://acme-churn/out"],
     "must look like bq://PROJECT.DATASET.TABLE"),
    (["--gcs-source", "gs://acme-churn/rows.csv", "--gcs-destination", "gs://acme-churn/out"],
     "must be JSONL in Cloud Storage"),
    (["--gcs-source", "/data/rows.jsonl", "--gcs-destination", "gs://acme-churn/out"],
     "must be JSONL in Cloud Storage"),
    (["--bigquery-source", BQ_SOURCE, "--gcs-destination", "gs://b/out"], "must look like gs://BUCKET/PREFIX"),
    (["--bigquery-source", BQ_SOURCE, "--bigquery-destination", "bq://a.b.c"], "bq://PROJECT or bq://PROJECT.DATASET"),
    (["--bigquery-source", BQ_SOURCE, "--gcs-destination", "s3://b/out"], "must look like gs://BUCKET/PREFIX"),
    (["--bigquery-source", BQ_SOURCE, "--gcs-destination", "gs://acme-churn/out", "--included-fields", "a",
      "--excluded-fields", "b"], "not both"),
    (["--gcs-source", "gs://acme-churn/rows.jsonl", "--gcs-destination", "gs://acme-churn/out",
      "--instance-type", "array"],
     "needs --included-fields"),
    (["--bigquery-source", BQ_SOURCE, "--gcs-destination", "gs://acme-churn/out", "--starting-replicas", "3",
      "--max-replicas", "2"], "--starting-replicas (3) <= --max-replicas (2)"),
])
def test_errors_are_one_clear_line_and_exit_2(vertex, registered, capsys, args, message) -> None:
    assert pipeline.main(["batch-predict", *_gcp(vertex), *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert not vertex.calls("POST", r"/batchPredictionJobs")


def test_one_source_and_one_destination_are_enforced_by_the_parser(vertex, capsys) -> None:
    for args, message in (
            (["--bigquery-source", BQ_SOURCE, "--gcs-source", "gs://acme-churn/r.jsonl", "--gcs-destination",
              "gs://acme-churn/o"], "argument --gcs-source: not allowed with argument --bigquery-source"),
            (["--bigquery-source", BQ_SOURCE], "one of the arguments --bigquery-destination --gcs-destination is "
                                               "required")):
        with pytest.raises(SystemExit) as exc:
            pipeline.main(["batch-predict", *_gcp(vertex), *args])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    assert not vertex.requests


def test_help_explains_the_instance_config(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        pipeline.main(["batch-predict", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "as ARRAYS of values in column order" in out and "--key-field" in out
    assert "removed from each instance and written next to its prediction" in out
    assert "GET /schema" in out and "accepts objects" in out
    assert "Example: python pipeline.py batch-predict --project" in out


def test_the_readme_command_runs_as_written(vertex, registered, capsys) -> None:
    """The Vertex AI guide's batch-predict example (docs/vertex.md), shell variables filled in, the fake's endpoint."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(pipeline.__file__).parent / "docs" / "vertex.md").read_text()
    block = re.search(r"```bash\n(python pipeline\.py batch-predict .*?)```", readme, re.S)
    assert block, "docs/vertex.md: the batch-predict example is missing"
    values = {"PROJECT": PROJECT, "REGION": REGION, "PIPELINE_SA": SA}
    command = re.sub(r"\$(\w+)", lambda m: values[m.group(1)], block.group(1).replace("\\\n", " "))
    argv = shlex.split(command)[2:]
    assert pipeline.main([*argv, "--api-endpoint", vertex.url]) == 0
    body = _create(vertex)
    assert body["model"] == f"{LOC}/models/churn-model@1" and body["serviceAccount"] == SA
    assert body["instanceConfig"] == {"instanceType": "object", "keyField": "customer_id"}


def test_a_request_the_service_refuses_is_one_line_and_exit_2(vertex, registered, capsys) -> None:
    """An empty machine type passes the command's checks; Vertex answers 400, which is reported, not raised."""
    code = pipeline.main(["batch-predict", *_gcp(vertex), "--bigquery-source", BQ_SOURCE,
                          "--gcs-destination", "gs://acme-churn/out", "--machine-type", ""])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "Vertex AI refused the request: 400" in err and "machineSpec.machineType" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert len(vertex.calls("POST", r"/batchPredictionJobs$")) == 1 and not vertex.batch_jobs
