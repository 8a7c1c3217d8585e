"""churn/vertexai.py, vertex_jobs.py, vertex_endpoints.py, the Vertex backends and the cloud commands, on the wire.

Every call goes through the real google-cloud-aiplatform SDK (REST transport) to the fake Vertex AI
server of ``fake_vertex.py``, and through the real google-cloud-storage client to gcp-storage-emulator;
the tests assert on the request bodies the SDK actually sent.

Patched: only ``resource_manager_utils.get_project_number`` (fixture ``resource_manager_lookup``), the
Resource Manager lookup that ``PipelineJob.submit`` uses to check the pipeline-root bucket's owner: that
client has no endpoint override. Everything else goes over HTTP.
"""

from __future__ import annotations

import json

import pytest
import yaml

import pipeline
from churn import vertex_endpoints, vertex_jobs, vertexai
from churn.registry import get_registry
from churn.registry.vertex import VertexRegistry
from churn.tracking import get_tracker
from churn.tracking.vertex import VertexTracker
from components import register_model as rm
from components.drift import DRIFT_COMMAND, retrain_on_drift_component
from pipelines.training import PIPELINE_NAME, STAGES, compile_pipeline
from tests.gcp.conftest import PROJECT, RAW_FILES, REGION, put_raw

IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/pipeline:0123abc"
SERVING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/serving:0123abc"
MONITORING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/monitoring:0123abc"
SA = f"churn-pipeline@{PROJECT}.iam.gserviceaccount.com"
LOC = f"projects/{PROJECT}/locations/{REGION}"


def _gcp(vertex) -> list[str]:
    return ["--project", PROJECT, "--region", REGION, "--api-endpoint", vertex.url]


def _bearer_issuer(header: str) -> str:
    """The issuer of the self-signed JWT the gapic client sends (signed with the throwaway key)."""
    import base64

    payload = header.removeprefix("Bearer ").split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iss"]


def _one(calls: list) -> object:
    assert len(calls) == 1, [(c.method, c.path) for c in calls]
    return calls[0]


# ------------------------------------------------------------------------------------------------
# URIs and dispatch (no server)
# ------------------------------------------------------------------------------------------------

def test_vertex_uri_round_trips_and_dispatches() -> None:
    target = vertexai.VertexTarget(PROJECT, REGION, api_endpoint="https://x.p.googleapis.com",
                                   serving_image=SERVING_IMAGE, staging="gs://acme-churn/models", experiment="nightly")
    assert vertexai.parse_vertex_uri(target.uri()) == target
    assert vertexai.parse_vertex_uri(f"vertex://{PROJECT}/{REGION}") == vertexai.VertexTarget(PROJECT, REGION)
    assert isinstance(get_registry(target.uri()), VertexRegistry)
    assert isinstance(get_tracker(target.uri()), VertexTracker)
    for bad in (f"vertex://{PROJECT}", f"vertex://{PROJECT}/{REGION}?colour=red", "vertex:///europe-west4"):
        with pytest.raises(ValueError, match=r"vertex://PROJECT/REGION|unknown keys"):
            vertexai.parse_vertex_uri(bad)
    assert vertexai.labels_from_tags({"validation_roc_auc": "0.8731", "Stage": "Production", "9x": "a b"}) == \
        {"validation_roc_auc": "0_8731", "stage": "production", "t_9x": "a_b"}
    with pytest.raises(ValueError, match="Vertex model ID"):
        vertexai.model_id("Churn Model")


def test_cloud_commands_have_teaching_help(capsys) -> None:
    for command in ("submit", "deploy", "rollback", "schedule", "batch-predict"):
        with pytest.raises(SystemExit) as exc:
            pipeline.main([command, "--help"])
        assert exc.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert f"Example: python pipeline.py {command} --project" in out, command
        assert "--api-endpoint" in out and "--region" in out, command


# ------------------------------------------------------------------------------------------------
# submit
# ------------------------------------------------------------------------------------------------

def test_submit_sends_template_root_parameters_labels_and_service_account(vertex, gcs, resource_manager_lookup,
                                                                          capsys) -> None:
    root = f"gs://{gcs}/pipeline-root"
    raw = put_raw(gcs, "raw", RAW_FILES)
    code = pipeline.main(["submit", *_gcp(vertex), "--pipeline-root", root, "--image", IMAGE,
                          "--serving-image", SERVING_IMAGE, "--raw-dir", raw, "--experiment", "churn",
                          "--service-account", SA, "--label", "team=ml", "--label", "trigger=manual",
                          "--param", "seed=7", "--param", "gate_margin=0.01", "--no-caching", "--job-id", "run-1"])
    assert code == 0
    assert f"{LOC}/pipelineJobs/run-1" in capsys.readouterr().out

    create = _one(vertex.calls("POST", r"/pipelineJobs$"))
    assert create.query["pipelineJobId"] == ["run-1"]
    body = create.body
    spec = body["pipelineSpec"]
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) == len(STAGES)
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}  # compiled for exactly this image
    assert all(task["cachingOptions"].get("enableCache", False) is False  # --no-caching on every step
               for task in spec["root"]["dag"]["tasks"].values())
    runtime = body["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == root
    params = runtime["parameterValues"]
    assert params["raw_dir"] == raw and params["model_name"] == "churn-model"
    assert params["raw_digest"] == vertex_jobs.raw_digest(raw)
    assert params["seed"] == 7 and params["gate_margin"] == 0.01  # --param values arrive typed
    registry = vertexai.parse_vertex_uri(params["registry_uri"])
    assert (registry.project, registry.region, registry.serving_image, registry.staging, registry.api_endpoint) == \
        (PROJECT, REGION, SERVING_IMAGE, f"{root}/models", vertex.url)
    assert vertexai.parse_vertex_uri(params["tracking_uri"]).experiment == "churn"
    assert body["labels"] == {"team": "ml", "trigger": "manual"}
    assert body["serviceAccount"] == SA
    assert _bearer_issuer(create.headers["authorization"]) == f"pipeline-runner@{PROJECT}.iam.gserviceaccount.com"

    # associated with the Vertex Experiment: created, then the run's context added as its child
    experiment = _one(vertex.calls("POST", r"/metadataStores/default/contexts$"))
    assert experiment.query["contextId"] == ["churn"] and experiment.body["schemaTitle"] == "system.Experiment"
    link = _one(vertex.calls("POST", r"/contexts/churn:addContextChildren$"))
    assert link.body["childContexts"] == [f"{LOC}/metadataStores/default/contexts/run-1"]
    assert resource_manager_lookup == [PROJECT]  # the bucket-owner check ran against the emulator's bucket


def test_submit_takes_a_compiled_template_from_cloud_storage(vertex, gcs, resource_manager_lookup, tmp_path) -> None:
    """The retraining trigger's path: a template Cloud Build uploaded, read by the SDK from gs://."""
    from google.cloud import storage

    compiled = compile_pipeline(tmp_path / "churn_pipeline.yaml", IMAGE)
    storage.Client(project=PROJECT).bucket(gcs).blob("templates/churn_pipeline.yaml").upload_from_filename(compiled)
    name = vertex_jobs.submit_pipeline_job(f"gs://{gcs}/templates/churn_pipeline.yaml", project=PROJECT, region=REGION,
                                  pipeline_root=f"gs://{gcs}/root", parameter_values={"raw_dir": f"gs://{gcs}/raw"},
                                  labels={"trigger": "drift"}, api_endpoint=vertex.url)
    body = _one(vertex.calls("POST", r"/pipelineJobs$")).body
    assert name == vertex.pipeline_jobs[name]["name"]
    assert body["pipelineSpec"] == yaml.safe_load(compiled.read_text())
    assert body["labels"] == {"trigger": "drift"} and "serviceAccount" not in body
    assert not vertex.calls("POST", r"/contexts")  # no experiment asked, none touched


def test_submit_errors_name_the_fix(vertex, capsys) -> None:
    code = pipeline.main(["submit", *_gcp(vertex), "--pipeline-root", "gs://b/root", "--image", IMAGE,
                          "--raw-dir", "gs://b/raw"])
    assert code == 2 and "--serving-image" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must be a gs:// folder"):
        vertex_jobs.submit_pipeline_job("x.yaml", project=PROJECT, region=REGION, pipeline_root="/tmp/root")
    assert not vertex.calls("POST", r"/pipelineJobs")


# ------------------------------------------------------------------------------------------------
# Model Registry: upload with versions and aliases, rollback
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def registry_uri(vertex, gcs) -> str:
    return vertexai.VertexTarget(PROJECT, REGION, api_endpoint=vertex.url, serving_image=SERVING_IMAGE,
                           staging=f"gs://{gcs}/models").uri()


def _aliases(vertex, model: str = "churn-model") -> dict[str, list[str]]:
    return {v: sorted(m["versionAliases"]) for v, m in vertex.models[model].versions.items()}


def test_register_model_uploads_versions_with_the_gate_aliases(vertex, gcs, registry_uri, processed, model_dirs,
                                                               tmp_path) -> None:
    from google.cloud import storage

    def register(model: str, run: str) -> dict:
        return rm.run(model_dirs[model], processed.folder, tmp_path / run, registry_uri=registry_uri,
                      tags={"pipeline_run": run})

    first = register("bad", "churn-training-001")
    assert (first["version"], first["alias"]) == ("1", "champion")
    better = register("good", "churn-training-002")  # the champion is downloaded from gs:// and scored
    assert (better["version"], better["alias"], better["previous_champion"]) == ("2", "champion", "1")
    worse = register("bad", "churn-training-003")
    assert (worse["version"], worse["alias"]) == ("3", "challenger")
    assert json.loads((tmp_path / "churn-training-003" / "registration.json").read_text())["alias"] == "challenger"

    uploads = [c.body for c in vertex.calls("POST", r"/models:upload$")]
    assert len(uploads) == 3
    assert uploads[0]["modelId"] == "churn-model" and "parentModel" not in uploads[0]
    assert all(u["parentModel"] == f"{LOC}/models/churn-model" and "modelId" not in u for u in uploads[1:])
    # uploaded without aliases: the gate's decision sets them afterwards (mergeVersionAliases), so a version is
    # never champion before register_model says so
    assert [u["model"].get("versionAliases", []) for u in uploads] == [["default"], [], []]  # Vertex: v1 is default
    merged = [(c.path.rsplit("/", 1)[-1], c.body["versionAliases"])
              for c in vertex.calls("POST", r":mergeVersionAliases$")]
    assert merged == [("churn-model@1:mergeVersionAliases", ["champion", "default"]),
                      ("churn-model@1:mergeVersionAliases", ["archived"]),
                      ("churn-model@2:mergeVersionAliases", ["champion", "default"]),
                      ("churn-model@3:mergeVersionAliases", ["challenger"])]
    client = storage.Client(project=PROJECT)
    for upload, run in zip(uploads, ("churn-training-001", "churn-training-002", "churn-training-003"), strict=True):
        model = upload["model"]
        assert model["displayName"] == "churn-model"
        assert model["containerSpec"] == {"imageUri": SERVING_IMAGE, "predictRoute": "/predict",
                                          "healthRoute": "/health", "ports": [{"containerPort": 8080}]}
        assert model["artifactUri"].startswith(f"gs://{gcs}/models/churn-model/")
        prefix = model["artifactUri"].removeprefix(f"gs://{gcs}/") + "/"
        stored = {b.name.removeprefix(prefix) for b in client.list_blobs(gcs, prefix=prefix)}
        assert {"model.joblib", "feature_schema.json", "model_card.json"} <= stored
        assert model["labels"]["pipeline_run"] == run
        assert model["labels"]["stage"] in {"production", "staging"}
        assert model["labels"]["validation_roc_auc"].startswith("0_")
        assert "gate_reason" not in model["labels"] and model["versionDescription"]
    assert len(vertex.calls("GET", r"/operations/")) == 3  # each upload's long-running operation was polled

    # the registry state after the gate: v2 champion (+default), v1 archived, v3 challenger
    assert _aliases(vertex) == {"1": ["archived"], "2": ["champion", "default"], "3": ["challenger"]}
    assert vertex.models["churn-model"].versions["1"]["labels"]["stage"] == "archived"
    registry = get_registry(registry_uri)
    champion = registry.get_by_alias("churn-model", "champion")
    assert (champion.version, champion.tags["pipeline_run"]) == ("2", "churn-training-002")
    assert registry.get_by_alias("churn-model", "nope") is None
    assert [v.version for v in registry.list_versions("churn-model")] == ["1", "2", "3"]
    folder = registry.download(champion, tmp_path / "download")
    assert (folder / "model.joblib").read_bytes() == (model_dirs["good"] / "model.joblib").read_bytes()


def test_rollback_moves_champion_and_default_back(vertex, gcs, registry_uri, processed, model_dirs, tmp_path,
                                                  capsys) -> None:
    for model in ("bad", "good"):
        rm.run(model_dirs[model], processed.folder, tmp_path / model, registry_uri=registry_uri)
    assert _aliases(vertex) == {"1": ["archived"], "2": ["champion", "default"]}
    before = len(vertex.requests)

    assert pipeline.main(["rollback", *_gcp(vertex), "--model", "churn-model"]) == 0
    assert "champion is now v1 (v2 archived)" in capsys.readouterr().out
    since = vertex.requests[before:]
    merges = [(c.path.rsplit("/", 1)[-1], c.body["versionAliases"])
              for c in since if c.method == "POST" and c.path.endswith(":mergeVersionAliases")]
    assert merges == [("churn-model@1:mergeVersionAliases", ["champion", "default"]),
                      ("churn-model@2:mergeVersionAliases", ["archived"])]
    patches = [c for c in since if c.method == "PATCH" and "/models/churn-model@" in c.path]
    assert [(c.path[-1], c.query["updateMask"], c.body["labels"]["stage"]) for c in patches] == \
        [("1", ["labels"], "production"), ("2", ["labels"], "archived")]
    assert _aliases(vertex) == {"1": ["champion", "default"], "2": ["archived"]}

    assert pipeline.main(["rollback", *_gcp(vertex), "--model", "churn-model", "--to-version", "1"]) == 2
    assert "already is the champion" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# deploy
# ------------------------------------------------------------------------------------------------

def test_deploy_creates_then_reuses_the_endpoint_with_a_traffic_split(vertex, gcs, registry_uri, processed,
                                                                       model_dirs, tmp_path, capsys) -> None:
    rm.run(model_dirs["good"], processed.folder, tmp_path / "a", registry_uri=registry_uri)
    rm.run(model_dirs["bad"], processed.folder, tmp_path / "b", registry_uri=registry_uri)  # v2: challenger
    table = f"bq://{PROJECT}.churn.predictions"

    assert pipeline.main(["deploy", *_gcp(vertex), "--model", "churn-model", "--endpoint", "churn",
                          "--machine-type", "n1-standard-4", "--min-replicas", "1", "--max-replicas", "3",
                          "--service-account", SA, "--log-table", table, "--log-sampling-rate", "0.5"]) == 0
    assert "(created)" in capsys.readouterr().out
    create = _one(vertex.calls("POST", r"/endpoints$")).body
    assert create["displayName"] == "churn"
    assert create["predictRequestResponseLoggingConfig"] == {
        "enabled": True, "samplingRate": 0.5, "bigqueryDestination": {"outputUri": table}}
    first = _one(vertex.calls("POST", r":deployModel$")).body
    deployed = first["deployedModel"]
    assert deployed["model"] == f"{LOC}/models/churn-model@1"  # the champion's version
    assert deployed["displayName"] == "churn-model-v1" and deployed["serviceAccount"] == SA
    assert deployed["dedicatedResources"]["machineSpec"]["machineType"] == "n1-standard-4"
    assert (deployed["dedicatedResources"]["minReplicaCount"], deployed["dedicatedResources"]["maxReplicaCount"]) == \
        (1, 3)
    assert first["trafficSplit"] == {"0": 100}

    endpoint = next(iter(vertex.endpoints.values()))
    champion_id = endpoint["deployedModels"][0]["id"]
    assert pipeline.main(["deploy", *_gcp(vertex), "--model", "churn-model", "--endpoint", "churn",
                          "--alias", "challenger", "--traffic", "20"]) == 0
    assert "(reused)" in capsys.readouterr().out
    assert len(vertex.calls("POST", r"/endpoints$")) == 1  # reused by display name, not created twice
    second = vertex.calls("POST", r":deployModel$")[-1].body
    assert second["deployedModel"]["model"] == f"{LOC}/models/churn-model@2"
    assert second["trafficSplit"] == {"0": 20, champion_id: 80}

    assert pipeline.main(["deploy", *_gcp(vertex), "--model", "churn-model", "--alias", "nope"]) == 2
    assert "no version behind alias 'nope'" in capsys.readouterr().err


def test_deploy_turns_on_request_logging_of_a_reused_endpoint(vertex, gcs, registry_uri, processed, model_dirs,
                                                              tmp_path) -> None:
    rm.run(model_dirs["good"], processed.folder, tmp_path / "a", registry_uri=registry_uri)
    vertex_endpoints.deploy(project=PROJECT, region=REGION, model_name="churn-model", api_endpoint=vertex.url)
    table = f"bq://{PROJECT}.churn.predictions"
    vertex_endpoints.deploy(project=PROJECT, region=REGION, model_name="churn-model", log_table=table,
                            api_endpoint=vertex.url)
    patch = _one(vertex.calls("PATCH", r"/endpoints/\d+$"))
    assert patch.query["updateMask"] == ["predictRequestResponseLoggingConfig"]
    assert patch.body["predictRequestResponseLoggingConfig"] == {
        "enabled": True, "samplingRate": 1.0, "bigqueryDestination": {"outputUri": table}}


# ------------------------------------------------------------------------------------------------
# schedule
# ------------------------------------------------------------------------------------------------

def test_schedule_creates_then_updates_the_same_schedule(vertex, capsys) -> None:
    common = [*_gcp(vertex), "--backend", "vertex-schedule", "--pipeline-root", "gs://acme-churn/root",
              "--service-account", SA,
              "--baseline", "gs://acme-churn/processed/train.csv", "--current", "gs://acme-churn/predictions/",
              "--output-dir", "gs://acme-churn/monitoring/", "--image", IMAGE]
    retrain = ["--retrain-template", "gs://acme-churn/templates/churn_pipeline-0123abc.yaml",
               "--raw-dir", "gs://acme-churn/raw", "--serving-image", SERVING_IMAGE]
    assert pipeline.main(["schedule", *common, *retrain, "--cron", "0 2 * * *", "--time-zone", "Europe/Amsterdam",
                          "--monitoring-image", MONITORING_IMAGE]) == 0
    assert "created schedule" in capsys.readouterr().out
    create = _one(vertex.calls("POST", r"/schedules$")).body
    assert create["displayName"] == "churn-drift-nightly"
    assert create["cron"] == "TZ=Europe/Amsterdam 0 2 * * *"
    assert int(create["maxConcurrentRunCount"]) == 1
    job = create["createPipelineJobRequest"]["pipelineJob"]
    assert create["createPipelineJobRequest"]["parent"] == LOC
    assert job["serviceAccount"] == SA
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://acme-churn/root"
    params = job["runtimeConfig"]["parameterValues"]
    assert {k: params[k] for k in ("baseline", "current", "output_dir")} == {
        "baseline": "gs://acme-churn/processed/train.csv", "current": "gs://acme-churn/predictions/",
        "output_dir": "gs://acme-churn/monitoring/"}
    spec = params["retrain"]  # the training run the drift pipeline submits when it decides to retrain
    assert (spec["template"], spec["project"], spec["region"], spec["pipeline_root"], spec["service_account"]) == \
        ("gs://acme-churn/templates/churn_pipeline-0123abc.yaml", PROJECT, REGION, "gs://acme-churn/root", SA)
    assert spec["parameter_values"]["raw_dir"] == "gs://acme-churn/raw"
    assert vertexai.parse_vertex_uri(spec["parameter_values"]["registry_uri"]).serving_image == SERVING_IMAGE
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    check, trigger = executors["exec-drift-check"]["container"], executors["exec-retrain-on-drift"]["container"]
    assert check["image"] == MONITORING_IMAGE and trigger["image"] == IMAGE
    assert check["command"] == list(DRIFT_COMMAND)
    assert check["args"][-2:] == ["--trigger", "none"] and "--baseline" in check["args"]
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks["retrain-on-drift"]["dependentTasks"] == ["drift-check"]
    assert not any(t["cachingOptions"].get("enableCache") for t in tasks.values())  # a nightly run is never cached

    new_image = MONITORING_IMAGE.replace("0123abc", "4567def")
    assert pipeline.main(["schedule", *common, "--cron", "30 3 * * *", "--monitoring-image", new_image]) == 0
    assert "updated schedule" in capsys.readouterr().out
    assert len(vertex.calls("POST", r"/schedules$")) == 1 and len(vertex.schedules) == 1  # idempotent
    patch = _one(vertex.calls("PATCH", r"/schedules/\d+$"))
    assert set(patch.query["updateMask"][0].split(",")) == {"cron", "maxConcurrentRunCount",
                                                            "createPipelineJobRequest"}
    assert patch.body["cron"] == "30 3 * * *"
    executors = patch.body["createPipelineJobRequest"]["pipelineJob"]["pipelineSpec"]["deploymentSpec"]["executors"]
    assert executors["exec-drift-check"]["container"]["image"] == new_image
    assert "retrain" not in patch.body["createPipelineJobRequest"]["pipelineJob"]["runtimeConfig"]["parameterValues"]
    stored = next(iter(vertex.schedules.values()))
    assert stored["cron"] == "30 3 * * *"


# ------------------------------------------------------------------------------------------------
# Vertex Experiments tracking
# ------------------------------------------------------------------------------------------------

def test_vertex_tracker_logs_params_and_metrics_to_an_experiment_run(vertex, gcs, tmp_path) -> None:
    uri = vertexai.VertexTarget(PROJECT, REGION, api_endpoint=vertex.url, experiment="churn",
                          staging=f"gs://{gcs}/experiments").uri()
    tracker = get_tracker(uri)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_card.json").write_text("{}")
    with tracker.run("train", tags={"pipeline_task": "train"}) as run_id:
        tracker.log_params({"model_type": "logistic_regression", "seed": 42})
        tracker.log_metrics({"validation_roc_auc__logistic_regression": 0.81})
        tracker.log_artifacts(tmp_path / "model", artifact_path="model")
    with tracker.run("evaluate", run_id=run_id) as resumed:  # evaluate resumes train's run
        tracker.log_metrics({"validation_roc_auc": 0.8})
    assert resumed == run_id and run_id.startswith("train-")

    run = vertex.metadata[f"{LOC}/metadataStores/default/contexts/churn-{run_id}"]
    assert run["schemaTitle"] == "system.ExperimentRun"
    assert run["parentContexts"] == [f"{LOC}/metadataStores/default/contexts/churn"]
    params = run["metadata"]["_params"]
    assert params["model_type"] == "logistic_regression" and params["seed"] == 42
    assert params["tag.pipeline_task"] == "train"
    assert params["artifacts.model"] == f"gs://{gcs}/experiments/experiments/churn/{run_id}/model"
    assert run["metadata"]["_metrics"] == {"validation_roc_auc__logistic_regression": 0.81, "validation_roc_auc": 0.8}


@pytest.mark.parametrize("retrain", [True, False])
def test_drift_pipeline_retrains_only_when_the_decision_says_so(vertex, gcs, resource_manager_lookup, retrain,
                                                                tmp_path) -> None:
    """The drift pipeline's second step, run as its KFP function against the emulator and the fake."""
    from google.cloud import storage

    decision = {"date": "2026-11-26", "retrain": retrain, "reason": "recency_days drifted",
                "drifted_features": ["recency_days"]}
    storage.Client(project=PROJECT).bucket(gcs).blob("monitoring/drift_decision.json").upload_from_string(
        json.dumps(decision))
    compiled = compile_pipeline(tmp_path / "churn_pipeline.yaml", IMAGE)
    raw = put_raw(gcs, "raw", RAW_FILES)
    spec = {"template": str(compiled), "project": PROJECT, "region": REGION, "api_endpoint": vertex.url,
            "pipeline_root": f"gs://{gcs}/root", "service_account": SA,
            "parameter_values": {"raw_dir": raw, "model_name": "churn-model"}}
    step = retrain_on_drift_component(IMAGE)
    job = step.python_func(output_dir=f"gs://{gcs}/monitoring/", retrain=spec)
    submitted = vertex.calls("POST", r"/pipelineJobs$")
    if not retrain:
        assert job == "" and not submitted
        return
    body = _one(submitted).body
    assert job == vertex.pipeline_jobs[job]["name"]
    assert body["labels"] == {"trigger": "drift", "drift_date": "2026-11-26"}
    assert body["runtimeConfig"]["parameterValues"] == {"raw_dir": raw, "model_name": "churn-model",
                                                        "raw_digest": vertex_jobs.raw_digest(raw)}  # as of the trigger
    assert body["serviceAccount"] == SA

