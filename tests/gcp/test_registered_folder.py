"""Contract 1: a registered model folder carries its drift baseline and reference scores, on Vertex too.

register_model assembles the model files, ``baseline/`` (the model's training split and schema) and
``evaluation/`` (metrics and validation predictions) into one folder before registering it, so the
folder the Vertex AI Model Registry points at (``artifactUri`` on gs://, the serving container's
``AIP_STORAGE_URI``) is all the nightly drift check needs. Real SDK → fake Vertex AI, real storage
client → gcp-storage-emulator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import pipeline
from churn import vertexai
from churn.registry import get_registry
from components import evaluate
from components import register_model as rm
from pipelines.training import compile_pipeline
from tests.gcp.conftest import PROJECT, REGION

IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/pipeline:0123abc"
SERVING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/serving:0123abc"
CONTRACT = {"baseline/train.csv", "baseline/feature_schema.json", "evaluation/metrics.json",
            "evaluation/validation_predictions.csv"}


@pytest.fixture(scope="module")
def evaluation_dir(model_dirs, processed, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluation")
    evaluate.run(model_dirs["good"], processed.folder, out, tracking_uri="")
    return out


def test_the_vertex_artifact_folder_holds_baseline_and_evaluation(vertex, gcs, processed, model_dirs,
                                                                  evaluation_dir, tmp_path) -> None:
    from google.cloud import storage

    uri = vertexai.VertexTarget(PROJECT, REGION, api_endpoint=vertex.url, serving_image=SERVING_IMAGE,
                          staging=f"gs://{gcs}/models").uri()
    record = rm.run(model_dirs["good"], processed.folder, tmp_path / "reg", registry_uri=uri,
                    train_dir=processed.folder, evaluation_dir=evaluation_dir)
    artifact = vertex.calls("POST", r"/models:upload$")[-1].body["model"]["artifactUri"]
    assert record["source"] == artifact and artifact.startswith(f"gs://{gcs}/models/churn-model/")

    prefix = artifact.removeprefix(f"gs://{gcs}/") + "/"
    blobs = {b.name.removeprefix(prefix): b for b in storage.Client(project=PROJECT).list_blobs(gcs, prefix=prefix)}
    assert CONTRACT | {"model.onnx", "manifest.json", "feature_schema.json", "evaluation/report.html"} <= set(blobs)
    assert blobs["baseline/train.csv"].download_as_bytes() == (processed.folder / "train.csv").read_bytes()
    assert json.loads(blobs["baseline/feature_schema.json"].download_as_text()) == \
        json.loads((model_dirs["good"] / "feature_schema.json").read_text())  # the model's own schema
    assert blobs["evaluation/validation_predictions.csv"].download_as_bytes() == \
        (evaluation_dir / "validation_predictions.csv").read_bytes()

    written = json.loads((tmp_path / "reg" / "registration.json").read_text())
    assert written["source"] == artifact
    # stamped into the folder once Vertex numbered the version: a server started from it logs v1
    stamped = json.loads(blobs["registration.json"].download_as_text())
    assert (stamped["version"], stamped["source"]) == (record["version"], artifact) == ("1", artifact)
    assert written["contents"] == {
        "baseline": f"{artifact}/baseline/train.csv", "feature_schema": f"{artifact}/baseline/feature_schema.json",
        "reference_scores": f"{artifact}/evaluation/validation_predictions.csv",
        "metrics": f"{artifact}/evaluation/metrics.json"}
    # what a consumer of the registry gets back (the gate's champion download, serving's AIP_STORAGE_URI copy)
    registry = get_registry(uri)
    folder = registry.download(registry.get_by_alias("churn-model", "champion"), tmp_path / "download")
    assert all((folder / rel).is_file() for rel in CONTRACT)


@pytest.mark.slow
def test_the_mlflow_registered_folder_holds_them_too(processed, model_dirs, evaluation_dir, tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record = rm.run(model_dirs["good"], processed.folder, tmp_path / "reg", registry_uri=uri,
                    train_dir=processed.folder, evaluation_dir=evaluation_dir)
    registry = get_registry(uri)
    folder = registry.download(registry.get_by_alias("churn-model", "champion"), tmp_path / "download")
    assert all((folder / rel).is_file() for rel in CONTRACT)
    assert set(record["contents"]) == {"baseline", "feature_schema", "reference_scores", "metrics"}


def test_a_missing_evaluation_file_is_named_and_nothing_is_registered(vertex, gcs, processed, model_dirs,
                                                                      evaluation_dir, tmp_path) -> None:
    import shutil

    partial = tmp_path / "evaluation"
    shutil.copytree(evaluation_dir, partial)
    (partial / "validation_predictions.csv").unlink()
    uri = vertexai.VertexTarget(PROJECT, REGION, api_endpoint=vertex.url, serving_image=SERVING_IMAGE,
                          staging=f"gs://{gcs}/models").uri()
    with pytest.raises(FileNotFoundError, match=r"evaluation: no validation_predictions.csv.*evaluate writes"):
        rm.run(model_dirs["good"], processed.folder, tmp_path / "reg", registry_uri=uri,
               train_dir=processed.folder, evaluation_dir=partial)
    assert not vertex.calls("POST", r"/models:upload$")


def test_the_pipeline_wires_the_train_split_and_evaluation_into_register_model(tmp_path) -> None:
    spec = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", IMAGE).read_text())
    inputs = spec["root"]["dag"]["tasks"]["register-model"]["inputs"]["artifacts"]
    assert inputs["train_data"]["taskOutputArtifact"] == {"producerTask": "feature-engineering",
                                                          "outputArtifactKey": "train_data"}
    assert inputs["evaluation"]["taskOutputArtifact"] == {"producerTask": "evaluate",
                                                          "outputArtifactKey": "evaluation"}


def test_a_prediction_log_that_is_not_gs_is_refused_before_anything_is_sent(vertex, gcs, processed, model_dirs,
                                                                            tmp_path, capsys) -> None:
    code = pipeline.main(["submit", "--project", PROJECT, "--region", REGION, "--api-endpoint", vertex.url,
                          "--pipeline-root", f"gs://{gcs}/root", "--image", IMAGE, "--serving-image", SERVING_IMAGE,
                          "--raw-dir", f"gs://{gcs}/raw", "--prediction-log-uri", "data/predictions"])
    err = capsys.readouterr().err
    assert code == 2 and "--prediction-log-uri 'data/predictions' must be a gs:// prefix" in err
    assert "Traceback" not in err
    uri = vertexai.VertexTarget(PROJECT, REGION, api_endpoint=vertex.url, serving_image=SERVING_IMAGE,
                          staging=f"gs://{gcs}/models", prediction_log="/var/log/churn").uri()
    with pytest.raises(ValueError, match="prediction_log='/var/log/churn' in the registry URI must be a gs://"):
        rm.run(model_dirs["good"], processed.folder, tmp_path / "reg", registry_uri=uri)
    assert not vertex.calls("POST", r"/models:upload$|/pipelineJobs$")
