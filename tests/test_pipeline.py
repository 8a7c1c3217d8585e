"""pipeline.py: the compiled spec, and the whole pipeline run locally with kfp.local."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kfp import components

import pipeline
from pipelines.training import PIPELINE_NAME

REPO = Path(__file__).resolve().parents[1]
IMAGE = "europe-west4-docker.pkg.dev/acme/churn/pipeline:0123abc"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compiled") / "churn.yaml"
    assert pipeline.main(["compile", "--image", IMAGE, "--output", str(path)]) == 0
    return path


def test_compiled_yaml_loads_in_kfp(compiled: Path) -> None:
    loaded = components.load_component_from_file(str(compiled))
    assert loaded.name == PIPELINE_NAME
    assert {"raw_dir", "churn_window_days", "seed", "gate_margin", "registry_uri"} <= set(loaded.component_spec.inputs)


def test_every_component_runs_on_the_configured_image_without_installs(compiled: Path) -> None:
    spec = yaml.safe_load(compiled.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) == 5
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == IMAGE, name
        assert "pip install" not in " ".join(container["command"] + container.get("args", [])), name


def test_components_pass_typed_artifacts(compiled: Path) -> None:
    spec = yaml.safe_load(compiled.read_text())
    comps = spec["components"]

    def outputs(name: str) -> dict[str, str]:
        arts = comps[f"comp-{name}"]["outputDefinitions"]["artifacts"]
        return {k: v["artifactType"]["schemaTitle"] for k, v in arts.items()}

    assert outputs("data-prep") == {"interim": "system.Dataset"}
    assert outputs("feature-engineering") == {"features": "system.Dataset", "train_data": "system.Dataset",
                                              "validation_data": "system.Dataset"}
    assert outputs("train") == {"model": "system.Model"}
    assert outputs("evaluate") == {"metrics": "system.Metrics", "classification": "system.ClassificationMetrics",
                                   "report": "system.HTML", "evaluation": "system.Artifact"}
    assert outputs("register-model") == {"registration": "system.Artifact"}
    train_inputs = comps["comp-train"]["inputDefinitions"]["artifacts"]
    assert train_inputs["train_data"]["artifactType"]["schemaTitle"] == "system.Dataset"


def test_help_teaches(capsys) -> None:
    for argv in (["--help"], ["run", "--help"], ["compile", "--help"]):
        with pytest.raises(SystemExit) as exc:
            pipeline.main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--raw-dir" in out and "--summary-json" in out and "--image" in out


def test_missing_raw_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert pipeline.main(["run", "--raw-dir", str(tmp_path / "nowhere")]) == 2
    assert "missing ['customers.csv'" in capsys.readouterr().err


def test_the_compiled_pipeline_promotes_at_once(compiled: Path) -> None:
    """Only a local run defers promotion (it publishes first); on Vertex the component promotes as before."""
    spec = yaml.safe_load(compiled.read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["defer_promotion"]["defaultValue"] is False
    assert "defer_promotion" in spec["components"]["comp-register-model"]["inputDefinitions"]["parameters"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def dirty_raw_dir(sample_raw_dir: Path, tmp_path: Path) -> Path:
    """The generated data plus a few bad rows of each kind the contract rejects."""
    raw = tmp_path / "raw"
    shutil.copytree(sample_raw_dir, raw)
    first = pd.read_csv(raw / "customers.csv", dtype=str).iloc[0]
    with (raw / "customers.csv").open("a") as fh:
        fh.write(",".join(first.fillna("")) + "\n")  # duplicate customer_id
        fh.write("099999,not-a-date,basic,north,organic,30,card,0\n")
    with (raw / "transactions.json").open("a") as fh:
        fh.write("{broken json\n")
        fh.write(json.dumps({"customer_id": "no-such-customer", "timestamp": "2026-01-01", "amount": 1}) + "\n")
        fh.write(json.dumps({"customer_id": first["customer_id"], "timestamp": "2026-01-01", "amount": "ten"}) + "\n")
    return raw


@pytest.mark.slow
def test_local_run_end_to_end(dirty_raw_dir: Path, tmp_path: Path) -> None:
    """The whole pipeline twice on generated data: accounting, metrics, registry, gate, layout, MLflow UI."""
    summary_path = tmp_path / "summary.json"
    cmd = [sys.executable, str(REPO / "pipeline.py"), "run", "--raw-dir", str(dirty_raw_dir),
           "--summary-json", str(summary_path)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "run summary" in done.stdout
    # the console shows each task's progress; kfp.local's executor JSON goes to the task log only
    for task in ("data-prep", "feature-engineering", "train", "evaluate", "register-model"):
        assert f"Task '{task}' finished with status SUCCESS" in done.stdout
    assert "executor_input" not in done.stdout and len(done.stdout.splitlines()) < 120
    task_log = Path(done.stdout.split("task logs: ", 1)[1].split("\n", 1)[0])
    assert task_log.is_file() and "Got executor_input" in task_log.read_text()
    summary = json.loads(summary_path.read_text())
    assert {"rows", "metrics", "model", "artifacts"} <= set(summary)
    for acc in summary["rows"].values():
        assert acc["raw"] == acc["kept"] + acc["rejected"]
    customers, transactions = summary["rows"]["customers.csv"], summary["rows"]["transactions.json"]
    assert (customers["raw"], customers["rejected"]) == (1502, 2)
    assert transactions["rejected"] == 3
    assert set(transactions["reasons"]) == {"malformed JSON record (not an object)", "non-numeric amount",
                                            "unknown customer_id (not in kept customers)"}
    rejected = pd.read_csv(tmp_path / "data/interim/rejected_transactions.csv", dtype=str)
    assert len(rejected) == 3 and rejected["reason"].notna().all()
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "f1"):
        assert key in summary["metrics"]
    assert summary["metrics"]["roc_auc"] >= 0.80
    first = summary["model"]
    assert (first["name"], first["version"], first["alias"]) == ("churn-model", "1", "champion")

    # the project layout is filled, ids keep leading zeros
    for rel in ("data/interim/cleaned_customers.csv", "data/interim/filtered_sales.csv",
                "data/interim/rejected_customers.csv", "data/interim/rejected_transactions.csv",
                "data/processed/train.csv", "data/processed/validation.csv",
                "data/features/customer_features_v1.csv", "data/features/feature_schema.json",
                "models/churn-model/v1/model.joblib", "models/churn-model/v1/evaluation/report.html",
                "models/churn-model/v1/evaluation/metrics.json", "models/latest/model_card.json"):
        assert (tmp_path / rel).is_file(), rel
    # the drift check's reference scores: the model's validation predictions, one per validation row
    scores = pd.read_csv(tmp_path / "models/churn-model/v1/evaluation/validation_predictions.csv",
                         dtype={"customer_id": str})
    validation = pd.read_csv(tmp_path / "data/processed/validation.csv", dtype={"customer_id": str})
    assert list(scores["customer_id"]) == list(validation["customer_id"])
    assert scores["churn_probability"].between(0, 1).all() and scores["churned"].isin([0, 1]).all()
    assert summary["artifacts"]["validation_predictions"].endswith("v1/evaluation/validation_predictions.csv")
    # contract C: the model's own drift baseline (its training split and schema) travels with it
    home = tmp_path / "models/churn-model/v1"
    assert (home / "baseline/train.csv").read_bytes() == (tmp_path / "data/processed/train.csv").read_bytes()
    assert json.loads((home / "baseline/feature_schema.json").read_text()) == \
        json.loads((tmp_path / "data/features/feature_schema.json").read_text())
    registration = json.loads((home / "registration.json").read_text())
    assert (registration["alias"], registration["promoted"], registration["deferred"]) == ("champion", True, False)
    # models/latest is a copy of the champion's folder; the run lock is released (emptied), nothing is left aside
    latest = tmp_path / "models/latest"
    assert (latest / "model.joblib").read_bytes() == (home / "model.joblib").read_bytes()
    assert json.loads((latest / "registration.json").read_text()) == registration
    assert (tmp_path / ".pipeline.lock").read_text() == ""
    assert list((tmp_path / "models").rglob(".*")) == [] and list((tmp_path / "data").rglob(".*")) == []
    train = pd.read_csv(tmp_path / "data/processed/train.csv", dtype={"customer_id": str})
    raw_ids = set(pd.read_csv(dirty_raw_dir / "customers.csv", dtype=str)["customer_id"])
    assert set(train["customer_id"]) <= raw_ids and train["customer_id"].str.startswith("0").all()

    # same data again: the new model ties the champion, so the gate keeps v1 as champion
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    second = json.loads(summary_path.read_text())
    assert (second["model"]["version"], second["model"]["alias"]) == ("2", "challenger")
    assert (tmp_path / "models/churn-model/v2/baseline/train.csv").is_file()
    assert json.loads((latest / "registration.json").read_text())["version"] == "1"  # the champion, not the newest

    # what `mlflow ui` serves: the runs and the registered model, over HTTP
    port = _free_port()
    db = tmp_path / "mlruns" / "mlflow.db"
    # MLflow's server also starts job workers; none are needed here, and the whole process group is
    # stopped at the end so nothing outlives the test.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                               f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                              start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(1)
        req = urllib.request.Request(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=churn")
        experiment = json.load(urllib.request.urlopen(req, timeout=10))["experiment"]
        body = json.dumps({"experiment_ids": [experiment["experiment_id"]]}).encode()
        req = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"})
        runs = json.load(urllib.request.urlopen(req, timeout=10))["runs"]
        trained = [r for r in runs if any(p["key"] == "model_type" for p in r["data"].get("params", []))]
        assert len(trained) == 2
        assert {r["info"]["status"] for r in runs} == {"FINISHED"}
        assert all(any(m["key"] == "validation_roc_auc" for m in r["data"]["metrics"]) for r in trained)
        req = urllib.request.Request(f"{base}/api/2.0/mlflow/registered-models/get?name=churn-model")
        model = json.load(urllib.request.urlopen(req, timeout=10))["registered_model"]
        assert {a["alias"]: a["version"] for a in model["aliases"]} == {"champion": "1", "challenger": "2"}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
