"""The drift check's Vertex retraining trigger (``monitoring.trigger.VertexPipelineTrigger``) on the wire.

The trigger module is plain Python, so it is exercised here in the main environment, which has the
stand-ins (fake Vertex AI, gcp-storage-emulator); the submission goes through the real
google-cloud-aiplatform SDK, as in ``test_vertex.py`` (same single patch: ``resource_manager_lookup``).
"""

from __future__ import annotations

import yaml

from churn import vertex_jobs
from monitoring.trigger import RetrainRequest, VertexPipelineTrigger, write_record
from pipelines.training import compile_pipeline
from tests.gcp.conftest import PROJECT, RAW_FILES, REGION, put_raw

IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/pipeline:0123abc"
REQUEST = RetrainRequest(reason="retrain: 2 of 26 features drifted: plan, monetary_avg",
                         features=["plan", "monetary_avg"], date="2026-07-01")


def test_drift_submits_the_training_pipeline_to_vertex(vertex, gcs, resource_manager_lookup, tmp_path) -> None:
    from google.cloud import storage

    compiled = compile_pipeline(tmp_path / "churn_pipeline.yaml", IMAGE)
    storage.Client(project=PROJECT).bucket(gcs).blob("templates/churn_pipeline.yaml").upload_from_filename(compiled)
    raw = put_raw(gcs, "raw/2026-07-01", RAW_FILES)
    spec = {"template": f"gs://{gcs}/templates/churn_pipeline.yaml", "project": PROJECT, "region": REGION,
            "pipeline_root": f"gs://{gcs}/root", "parameter_values": {"raw_dir": raw},
            "api_endpoint": vertex.url}
    record = VertexPipelineTrigger(spec=spec).fire(REQUEST, tmp_path)

    assert record.started and record.succeeded, record.detail
    job = record.detail["pipeline_job"]
    assert job in vertex.pipeline_jobs and job.startswith(f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/")
    assert "console.cloud.google.com" in record.detail["console"]
    creates = vertex.calls("POST", r"/pipelineJobs$")
    assert len(creates) == 1
    body = creates[0].body
    assert body["pipelineSpec"] == yaml.safe_load(compiled.read_text())
    assert body["runtimeConfig"]["parameterValues"] == {"raw_dir": raw, "raw_digest": vertex_jobs.raw_digest(raw)}
    assert body["runtimeConfig"]["gcsOutputDirectory"] == f"gs://{gcs}/root"
    assert body["labels"] == {"trigger": "drift", "drift_date": "2026-07-01"}
    saved = write_record(record, tmp_path / "monitoring").read_text()
    assert job in saved and "plan" in saved


def test_a_refused_submission_is_a_failed_record(vertex, tmp_path) -> None:
    spec = {"template": str(tmp_path / "missing.yaml"), "project": PROJECT, "region": REGION,
            "pipeline_root": "gs://acme-churn/root", "api_endpoint": vertex.url}
    record = VertexPipelineTrigger(spec=spec).fire(REQUEST, tmp_path)
    assert not record.started and not record.succeeded
    assert "missing.yaml" in record.detail["error"]
    assert not vertex.calls("POST", r"/pipelineJobs$")
