"""Issue 13 e: the production loop on Vertex AI, end to end through the stand-ins, in one test.

1. ``pipeline.py submit`` sends the training PipelineJob to the fake Vertex AI; the job's parameters are run
   with kfp.local (what Vertex AI Pipelines would run): raw data from gs:// (gcp-storage-emulator), the
   model registered in the Vertex AI Model Registry (the fake) with its folder on gs://.
2. ``python -m serving`` starts as Vertex AI starts the registered container: ``AIP_STORAGE_URI`` = the
   version's artifact URI, the container environment of the registered model (the gs:// prediction log).
3. Traffic from a changed world (``churn.sample_data``'s drifted shift) is logged to gs:// parts, with
   ``model.json`` naming the served folder.
4. ``pipeline.py schedule`` creates the nightly drift job; "run it now" starts the drift PipelineJob, whose
   drift-check step is run with the args Vertex AI would give it (``.venv-monitoring``, a subprocess): the
   gs:// log against the served model's published baseline, found by itself.
5. New raw files land; the drift pipeline's retraining step submits a training PipelineJob carrying the
   fresh ``raw_digest``, data_prep uncached.
6. ``pipeline.py submit --pipeline scoring`` → the scoring PipelineJob's parameters run with kfp.local: the
   champion scores every kept customer of the new raw data.

Only the Resource Manager bucket-owner lookup is patched (see test_vertex.py).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import pipeline
from churn import vertex_jobs, vertexai
from components.drift import retrain_on_drift_component
from pipelines.training import build_pipeline, compile_pipeline
from tests.gcp.conftest import PROJECT, REGION
from tests.gcp.test_readme_vertex import resolved_args
from tests.serving.conftest import start_server

ROOT = Path(__file__).resolve().parents[2]
MONITORING_PYTHON = ROOT / ".venv-monitoring" / "bin" / "python"
IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/pipeline:0123abc"
SERVING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/serving:0123abc"
MONITORING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/monitoring:0123abc"
SA = f"churn-pipeline@{PROJECT}.iam.gserviceaccount.com"
CUSTOMERS = 1500
FIRST_END, SECOND_END = dt.date(2026, 6, 30), dt.date(2026, 9, 30)


def _gcp(vertex) -> list[str]:
    return ["--project", PROJECT, "--region", REGION, "--api-endpoint", vertex.url]


def _upload_raw(bucket: str, folder: Path) -> str:
    from churn.storage import upload_dir

    upload_dir(folder, f"gs://{bucket}/raw")  # gcloud storage cp data/raw/* gs://$BUCKET/raw/
    return f"gs://{bucket}/raw"


def _generate(folder: Path, seed: int, end: dt.date, shift: str) -> Path:
    from churn.sample_data import SHIFTS, generate, write_raw

    write_raw(generate(CUSTOMERS, seed, end_date=end, shift=SHIFTS[shift]), folder)
    return folder


def _run_locally(pipeline_func, job: dict, root: Path) -> dict:
    """Runs a submitted PipelineJob's parameters with kfp.local, as Vertex AI Pipelines would run the job."""
    import warnings

    from kfp import local

    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    types = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    params = {k: int(v) if types[k]["parameterType"] == "NUMBER_INTEGER" else v  # JSON numbers are doubles
              for k, v in job["runtimeConfig"]["parameterValues"].items()}
    return dict(pipeline_func(**params).outputs)


def _post(url: str, instances: list[dict]) -> dict:
    request = urllib.request.Request(f"{url}/predict", data=json.dumps({"instances": instances}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=60) as response:
        return json.loads(response.read())


def _blobs(bucket: str, prefix: str) -> dict[str, object]:
    from google.cloud import storage

    return {b.name: b for b in storage.Client(project=PROJECT).list_blobs(bucket, prefix=prefix)}


@pytest.mark.slow
def test_the_vertex_loop_through_the_stand_ins(vertex, gcs, gcs_emulator, resource_manager_lookup, monkeypatch,
                                               tmp_path, capsys) -> None:
    from google.cloud import storage

    from churn.registry import get_registry
    from churn.storage import download_prefix
    from pipelines.demo import production_instances
    from pipelines.scoring import build_scoring_pipeline

    monkeypatch.chdir(ROOT)  # kfp.local's task processes import the project's modules from here
    bucket = storage.Client(project=PROJECT).bucket(gcs)
    root = f"gs://{gcs}/pipeline-root"
    log_prefix = f"gs://{gcs}/predictions"

    # 1. train on Vertex: submit, then run the submitted job's parameters ----------------------------------
    raw = _upload_raw(gcs, _generate(tmp_path / "raw1", 3, FIRST_END, "none"))
    assert pipeline.main(["submit", *_gcp(vertex), "--pipeline-root", root, "--image", IMAGE, "--serving-image",
                          SERVING_IMAGE, "--raw-dir", raw, "--service-account", SA, "--prediction-log-uri",
                          log_prefix, "--job-id", "train-1"]) == 0
    first_job = vertex.pipeline_jobs[f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/train-1"]
    first_digest = first_job["runtimeConfig"]["parameterValues"]["raw_digest"]
    outputs = _run_locally(build_pipeline(IMAGE), first_job, tmp_path / "kfp")
    assert outputs["interim"].metadata["raw_dir"] == raw and outputs["interim"].metadata["raw_digest"] == first_digest

    version = vertex.models["churn-model"].versions["1"]
    assert sorted(version["versionAliases"]) == ["champion", "default"]
    artifact = version["artifactUri"]
    assert artifact.startswith(f"{root}/models/churn-model/")
    container = version["containerSpec"]
    assert {e["name"]: e["value"] for e in container["env"]} == {"SERVING_PREDICTION_LOG_URI": log_prefix}
    registration = json.loads((Path(outputs["registration"].path) / "registration.json").read_text())
    assert (registration["source"], registration["alias"]) == (artifact, "champion")
    stored = _blobs(gcs, artifact.removeprefix(f"gs://{gcs}/") + "/")
    published = {name.rsplit("/", 2)[-2] + "/" + name.rsplit("/", 1)[-1] for name in stored}
    assert {"baseline/train.csv", "evaluation/validation_predictions.csv"} <= published
    train_split = Path(outputs["train_data"].path) / "train.csv"
    assert bucket.blob(registration["contents"]["baseline"].removeprefix(f"gs://{gcs}/")).download_as_bytes() == \
        train_split.read_bytes()

    # 2. serve as Vertex AI starts the registered container -----------------------------------------------
    env = {e["name"]: e["value"] for e in container["env"]}
    server = start_server(tmp_path / "serving", AIP_STORAGE_URI=artifact, STORAGE_EMULATOR_HOST=gcs_emulator,
                          SERVING_LOG_FLUSH_SECONDS="1", NO_PROXY="127.0.0.1,localhost", **env)
    try:
        health = server.wait_health()
        served = health["model_version"]
        assert (served, health["source"]) == ("v1", artifact)  # the registry's number, from registration.json

        # 3. traffic from a changed world ---------------------------------------------------------------
        raw2 = _generate(tmp_path / "raw2", 4, SECOND_END, "drifted")
        model_folder = tmp_path / "served"
        download_prefix(artifact, model_folder)
        instances, _ = production_instances(raw2, model_folder / "feature_schema.json")
        answered = sum(len(_post(server.base_url, instances[i:i + 500])["predictions"])
                       for i in range(0, len(instances), 500))
    finally:
        server.stop()  # SIGTERM, as Vertex AI stops containers: the rows still in memory are written
    assert answered == len(instances) > 500
    logged = _blobs(gcs, f"predictions/{served}/")
    parts = [b for name, b in logged.items() if "/part-" in name]
    assert parts and all(f"/date={dt.datetime.now(dt.UTC).date()}/" in b.name for b in parts)
    frame = pd.concat(pd.read_csv(io.BytesIO(b.download_as_bytes()), dtype={"customer_id": str}) for b in parts)
    assert len(frame) == answered and set(frame["model_version"]) == {served}
    record = json.loads(logged[f"predictions/{served}/model.json"].download_as_bytes())
    assert (record["model_uri"], record["model_version"]) == (artifact, served)

    # 4. the nightly drift job, scheduled, run now; its drift-check step as Vertex AI would run it ---------
    template = compile_pipeline(tmp_path / "churn_pipeline.yaml", IMAGE)
    bucket.blob("templates/churn_pipeline-0123abc.yaml").upload_from_filename(template)  # Cloud Build's upload
    assert pipeline.main(["schedule", *_gcp(vertex), "--scheduler-endpoint", vertex.url, "--cron", "0 2 * * *",
                          "--pipeline-root", root, "--service-account", SA, "--monitoring-image",
                          MONITORING_IMAGE, "--image", IMAGE, "--current", f"{log_prefix}/",
                          "--output-dir", f"gs://{gcs}/monitoring/", "--retrain-template",
                          f"gs://{gcs}/templates/churn_pipeline-0123abc.yaml", "--raw-dir", raw,
                          "--serving-image", SERVING_IMAGE]) == 0
    job = vertex.scheduler_jobs[f"projects/{PROJECT}/locations/{REGION}/jobs/churn-drift-nightly"]
    fire = urllib.request.Request(f"{vertex.url}/v1/{job['name']}:run", data=b"{}", method="POST",
                                  headers={"Content-Type": "application/json"})
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(fire, timeout=10).read()
    drift_job = vertex.pipeline_jobs[vertex.scheduler_runs[-1]]
    params = drift_job["runtimeConfig"]["parameterValues"]
    args = resolved_args(drift_job, "exec-drift-check")
    assert args[:2] == ["--baseline", ""]  # found from model.json

    if not MONITORING_PYTHON.is_file():
        pytest.skip(f"{MONITORING_PYTHON} is missing: the drift-check hop and those after it need it "
                    f"(make setup-monitoring)")
    work = tmp_path / "drift"  # no models/ here: the baseline can only come from gs://
    work.mkdir()
    check = subprocess.run([str(MONITORING_PYTHON), str(ROOT / "monitoring" / "drift_check.py"), *args],
                           cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                           timeout=900, check=False)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    decision = json.loads(bucket.blob("monitoring/drift_decision.json").download_as_text())
    assert decision["retrain"] is True and decision["drifted_features"], decision
    assert record["model_uri"] in check.stdout + check.stderr  # the served model's own baseline

    # 5. new raw files land; the retraining step submits training on them ---------------------------------
    _upload_raw(gcs, raw2)
    step = retrain_on_drift_component(IMAGE)
    retrain_name = step.python_func(output_dir=params["output_dir"], retrain=params["retrain"])
    retrain = vertex.pipeline_jobs[retrain_name]
    assert retrain["labels"]["trigger"] == "drift"
    fresh = retrain["runtimeConfig"]["parameterValues"]
    assert fresh["raw_digest"] == vertex_jobs.raw_digest(raw) != first_digest
    tasks = retrain["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks["data-prep"]["cachingOptions"].get("enableCache", False) is False
    assert vertexai.parse_vertex_uri(fresh["registry_uri"]).prediction_log == log_prefix  # the retrained model logs too

    # 6. batch scoring with the champion on Vertex ----------------------------------------------------------
    assert pipeline.main(["submit", *_gcp(vertex), "--pipeline", "scoring", "--pipeline-root", root, "--image",
                          IMAGE, "--raw-dir", raw, "--top", "50", "--job-id", "score-1"]) == 0
    scoring_job = vertex.pipeline_jobs[f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/score-1"]
    scored = _run_locally(build_scoring_pipeline(IMAGE), scoring_job, tmp_path / "kfp-scoring")
    predictions = pd.read_csv(scored["predictions"].path, dtype={"customer_id": str})
    champion = get_registry(scoring_job["runtimeConfig"]["parameterValues"]["registry_uri"]).get_by_alias(
        "churn-model", "champion")
    assert set(predictions["model_version"]) == {f"v{champion.version}"} == {"v1"}
    assert scored["predictions"].metadata["rows"] == len(predictions) >= answered  # every kept customer
    assert predictions["rank"].min() == 1 and set(predictions["decile"]) <= set(range(1, 11))
    assert len(pd.read_csv(scored["top_risk"].path)) == 50
    capsys.readouterr()
