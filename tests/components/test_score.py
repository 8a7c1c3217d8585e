"""Batch scoring (components/score.py, ``pipeline.py score``): real files, models trained by the real stages."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.cleaning import clean_customers, read_customers
from churn.features import features_for, read_split, transaction_feature_names
from churn.interim import read_interim
from churn.sample_data import generate, write_raw
from churn.schema import FeatureSchema
from components import data_prep, feature_engineering, score, train

REPO = Path(__file__).resolve().parents[2]
MONITORING_PYTHON = REPO / ".venv-monitoring" / "bin" / "python"


def _train(raw: Path, root: Path) -> Path:
    """data_prep → feature_engineering → train on a raw folder; returns the model folder."""
    data_prep.run(raw, root / "interim", seed=11)
    feature_engineering.run(root / "interim", root / "features", root / "processed", root / "processed")
    train.run(root / "processed", root / "processed", root / "model")
    return root / "model"


@pytest.fixture(scope="module")
def model_dir(sample_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(sample_raw_dir, tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="module")
def registry_uri(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local MLflow registry holding the model as v1 with the alias champion."""
    from churn.registry import get_registry

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"
    registry = get_registry(uri)
    registry.register("churn-model", model_dir)
    registry.set_alias("churn-model", "champion", "1")
    return uri


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "pipeline.py"), "score", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"customer_id": str})


@pytest.mark.slow
def test_cli_scores_with_the_champion_and_writes_the_log_columns(sample_raw_dir: Path, registry_uri: str,
                                                                 model_dir: Path, tmp_path: Path) -> None:
    from churn.logformat import header

    done = _cli("--raw-dir", str(sample_raw_dir), "--registry-uri", registry_uri, "--top", "25",
                "--summary-json", str(tmp_path / "summary.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    as_of = pd.Timestamp(summary["as_of"])
    assert summary["model_version"] == "v1"
    out = tmp_path / "data" / "predictions" / f"v1_batch_{as_of:%Y-%m-%d}.csv"
    assert Path(summary["output"]).resolve() == out.resolve()
    schema = FeatureSchema.load(model_dir)
    with out.open() as fh:
        assert fh.readline().rstrip("\n").split(",") == [*header(tuple(schema.names)), "rank", "decile"]
    frame = _read(out)
    customers = pd.read_csv(sample_raw_dir / "customers.csv", dtype=str)
    assert summary["rows_scored"] == len(frame) == len(customers) - summary["left_out"].get("signed up after as-of", 0)
    assert (frame["model_version"] == "v1").all() and frame["customer_id"].is_unique
    # default as-of: the newest transaction
    tx = pd.read_json(sample_raw_dir / "transactions.json", lines=True, dtype={"customer_id": str})
    assert as_of == pd.to_datetime(tx["timestamp"], utc=True).max()
    # rank 1 is the highest probability; deciles split the rows in tenths
    assert sorted(frame["rank"]) == list(range(1, len(frame) + 1))
    assert (frame.sort_values("rank")["churn_probability"].diff().dropna() <= 0).all()
    assert frame["decile"].value_counts().sort_index().tolist() == [len(frame) // 10] * 10
    assert (frame["churned"] == (frame["churn_probability"] >= frame["threshold"]).astype(int)).all()
    top = _read(tmp_path / "data" / "predictions" / f"top_risk_{as_of:%Y-%m-%d}.csv")
    assert top["rank"].tolist() == list(range(1, 26))
    assert list(top.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(top, frame.sort_values("rank").head(25).reset_index(drop=True))
    assert "scored" in done.stdout and "churn probability: p01" in done.stdout
    assert summary["rows"]["customers.csv"]["raw"] == len(customers)
    assert set(summary["score_quantiles"]) >= {"p50", "p90", "p99"}


def test_probabilities_equal_the_servers_and_the_training_pipelines(sample_raw_dir: Path, model_dir: Path,
                                                                   tmp_path: Path) -> None:
    """The file's probabilities are what the serving model gives for the file's own feature values."""
    from churn.model_io import load_model as load_trained
    from components.export import request_instances
    from serving.model import load_model as load_served

    model = score.open_model(model_dir)
    summary = score.score(sample_raw_dir, model, out_dir=tmp_path)
    frame = _read(Path(summary["output"]))
    served = load_served(model_dir, name="churn-model", source=str(model_dir), max_instances=100_000)
    instances = request_instances(frame, served.schema)
    np.testing.assert_array_equal(frame["churn_probability"].to_numpy(), served.predict_proba(instances))
    trained = load_trained(model_dir)
    features = read_split(Path(summary["output"]), trained.schema)
    np.testing.assert_allclose(frame["churn_probability"], trained.predict_proba(features), atol=1e-4, rtol=0)
    # and the features are feature_engineering's: the training features of the same customers at that cutoff
    interim = read_interim(model_dir.parent / "interim")
    expected = features_for(model.schema, interim.customers, interim.transactions, pd.Timestamp(summary["as_of"]))
    got = frame.set_index("customer_id").loc[expected["customer_id"], model.schema.numeric]
    np.testing.assert_array_equal(got.to_numpy(), expected[model.schema.numeric].to_numpy())


def test_as_of_changes_the_features_and_leaves_out_later_signups(sample_raw_dir: Path, model_dir: Path,
                                                                 tmp_path: Path) -> None:
    model = score.open_model(model_dir)
    late = score.score(sample_raw_dir, model, out_dir=tmp_path / "late")
    early = score.score(sample_raw_dir, model, out_dir=tmp_path / "early", as_of="2026-01-31")
    assert early["as_of"] == "2026-01-31T00:00:00+00:00"
    assert Path(early["output"]).name == "v1_batch_2026-01-31.csv" or Path(early["output"]).name.endswith(
        "_batch_2026-01-31.csv")
    a, b = _read(Path(late["output"])).set_index("customer_id"), _read(Path(early["output"])).set_index("customer_id")
    customers = clean_customers(read_customers(sample_raw_dir / "customers.csv")).kept
    after = int((customers["signup_date"] > pd.Timestamp("2026-01-31", tz="UTC")).sum())
    assert after > 0 and early["left_out"] == {"signed up after as-of": after}
    assert len(b) == len(customers) - after
    both = b.index
    shift = (pd.Timestamp(late["as_of"]) - pd.Timestamp("2026-01-31", tz="UTC")).total_seconds() / 86400
    np.testing.assert_allclose(a.loc[both, "tenure_days"] - b.loc[both, "tenure_days"], shift)
    assert (a.loc[both, "frequency"] >= b.loc[both, "frequency"]).all()
    assert (a.loc[both, "frequency"] > b.loc[both, "frequency"]).any()
    assert not np.array_equal(a.loc[both, "churn_probability"], b.loc[both, "churn_probability"])


@pytest.mark.slow
def test_a_model_with_an_older_schema_scores_new_data(sample_raw_dir: Path, tmp_path: Path) -> None:
    """Trained when 'groceries' was called 'food': it scores today's data with its own mix columns."""
    old_raw = tmp_path / "old_raw"
    shutil.copytree(sample_raw_dir, old_raw)
    text = (old_raw / "transactions.json").read_text()
    assert '"category":"groceries"' in text
    (old_raw / "transactions.json").write_text(text.replace('"category":"groceries"', '"category":"food"'))
    old_model = _train(old_raw, tmp_path / "old")
    schema = FeatureSchema.load(old_model)
    assert "category_share_food" in schema.names and "category_share_groceries" not in schema.names

    done = _cli("--raw-dir", str(sample_raw_dir), "--model-dir", str(old_model), "--out-dir", str(tmp_path / "out"),
                "--summary-json", str(tmp_path / "s.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = _read(Path(json.loads((tmp_path / "s.json").read_text())["output"]))
    assert "category_share_food" in frame.columns and "category_share_groceries" not in frame.columns
    assert (frame["category_share_food"] == 0).all()  # no purchase is called 'food' any more
    assert frame["churn_probability"].between(0, 1).all()


def test_rejected_rows_are_counted_by_reason(sample_raw_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(sample_raw_dir, raw)
    with (raw / "customers.csv").open("a") as fh:
        fh.write("099999,not-a-date,basic,north,organic,30,card,0\n")
    with (raw / "transactions.json").open("a") as fh:
        fh.write("{broken json\n")
        fh.write(json.dumps({"customer_id": "no-such-customer", "timestamp": "2026-01-01", "amount": 1}) + "\n")
    summary = score.score(raw, score.open_model(model_dir), out_dir=tmp_path / "out")
    assert summary["rows"]["customers.csv"]["reasons"] == {
        "unparseable signup_date (expected an ISO date like 2024-01-31)": 1}
    assert summary["rows"]["transactions.json"]["reasons"] == {
        "malformed JSON record (not an object)": 1, "unknown customer_id (not in kept customers)": 1}
    assert "099999" not in set(_read(Path(summary["output"]))["customer_id"])


def test_hostile_ids_and_categories_stay_one_row_each(sample_raw_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(sample_raw_dir, raw)
    customers = pd.read_csv(raw / "customers.csv", dtype=str, keep_default_na=False)
    customers.loc[0, "customer_id"] = 'a,"b"'
    customers.loc[1, "customer_id"] = "x\ty"
    customers.loc[2, "plan"] = 'gold, "new"'
    customers.to_csv(raw / "customers.csv", index=False)
    summary = score.score(raw, score.open_model(model_dir), out_dir=tmp_path / "out")
    frame = _read(Path(summary["output"]))
    assert len(frame) == summary["rows_scored"]
    assert {'a,"b"', "x\\u0009y"} <= set(frame["customer_id"])  # control characters escaped, as the server logs
    assert 'gold, "new"' in set(frame["plan"])


@pytest.mark.slow
def test_customers_only_data_and_model(tmp_path: Path) -> None:
    """No transaction log: a customers-only model scores; a model needing transactions is refused in one line."""
    data = generate(600, seed=3)
    labelled = tmp_path / "labelled"
    write_raw(data, labelled, include_label=True)
    (labelled / "transactions.json").unlink()
    model = _train(labelled, tmp_path / "m")
    assert not transaction_feature_names(FeatureSchema.load(model))
    summary = score.score(labelled, score.open_model(model), out_dir=tmp_path / "out")
    signups = pd.read_csv(labelled / "customers.csv", dtype=str)["signup_date"]
    assert pd.Timestamp(summary["as_of"]) == pd.to_datetime(signups, utc=True).max()
    assert summary["rows_scored"] == len(signups)
    assert "transactions.json" not in summary["rows"]

    with_tx = tmp_path / "with_tx"
    write_raw(data, with_tx)
    tx_model = _train(with_tx, tmp_path / "tx")
    done = _cli("--raw-dir", str(labelled), "--model-dir", str(tx_model), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "no transaction log" in done.stderr or "transaction" in done.stderr


@pytest.mark.parametrize("args, expected", [
    (["--model", "v7"], "has no version v7"),
    (["--model", "challenger"], "has the alias 'challenger'"),
    (["--as-of", "yesterday-ish"], "not an ISO date"),
    (["--top", "0"], "--top must be at least 1"),
])
@pytest.mark.slow
def test_bad_requests_are_one_line_and_exit_2(args: list[str], expected: str, sample_raw_dir: Path,
                                              registry_uri: str, tmp_path: Path) -> None:
    done = _cli("--raw-dir", str(sample_raw_dir), "--registry-uri", registry_uri, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and expected in errors[0], done.stderr[-2000:]
    assert not (tmp_path / "data" / "predictions").exists()


@pytest.mark.slow
def test_no_registry_missing_raw_files_and_broken_models_exit_2(sample_raw_dir: Path, model_dir: Path,
                                                                tmp_path: Path) -> None:
    no_registry = _cli("--raw-dir", str(sample_raw_dir), cwd=tmp_path)  # no mlruns/ here
    assert no_registry.returncode == 2 and "no model registry here" in no_registry.stderr
    (tmp_path / "empty").mkdir()
    no_customers = _cli("--raw-dir", str(tmp_path / "empty"), "--model-dir", str(model_dir), cwd=tmp_path)
    assert no_customers.returncode == 2 and "customers.csv" in no_customers.stderr
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    with (broken / "model.onnx").open("ab") as fh:
        fh.write(b"tampered")
    tampered = _cli("--raw-dir", str(sample_raw_dir), "--model-dir", str(broken), cwd=tmp_path)
    assert tampered.returncode == 2 and "differ from the manifest" in tampered.stderr
    (tmp_path / "a_file").write_text("not a folder")
    unwritable = _cli("--raw-dir", str(sample_raw_dir), "--model-dir", str(model_dir), "--out-dir",
                      str(tmp_path / "a_file" / "predictions"), cwd=tmp_path)
    assert unwritable.returncode == 2 and "a_file" in unwritable.stderr
    for done in (no_registry, no_customers, tampered, unwritable):
        assert "Traceback" not in done.stderr
        assert len([line for line in done.stderr.splitlines() if " ERROR " in line]) == 1


@pytest.mark.slow
def test_no_champion_yet_is_one_line(sample_raw_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    from churn.registry import get_registry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    get_registry(uri).register("churn-model", model_dir)  # registered, never promoted
    done = _cli("--raw-dir", str(sample_raw_dir), "--registry-uri", uri, cwd=tmp_path)
    assert done.returncode == 2 and "has the alias 'champion'" in done.stderr and "Traceback" not in done.stderr
    ok = _cli("--raw-dir", str(sample_raw_dir), "--registry-uri", uri, "--model", "1", "--out-dir", "out", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert [p.name.split("_batch_")[0] for p in (tmp_path / "out").glob("*_batch_*.csv")] == ["v1"]


@pytest.mark.skipif(not MONITORING_PYTHON.exists(), reason="needs .venv-monitoring (the drift check's environment)")
@pytest.mark.slow
def test_the_drift_checks_reader_takes_the_file_as_current_data(sample_raw_dir: Path, model_dir: Path,
                                                               tmp_path: Path) -> None:
    summary = score.score(sample_raw_dir, score.open_model(model_dir), out_dir=tmp_path)
    code = (
        "import json, sys\n"
        "from churn.schema import FeatureSchema\n"
        "from monitoring.drift_check import read_table, log_model_versions\n"
        "schema = FeatureSchema.load(sys.argv[2])\n"
        "table = read_table(sys.argv[1], schema, role='current', extra=('churn_probability', 'customer_id'))\n"
        "print(json.dumps({'rows': len(table.frame), 'anomalies': [a.kind for a in table.anomalies],\n"
        "                  'versions': log_model_versions(sys.argv[1]),\n"
        "                  'mean': float(table.frame['churn_probability'].mean())}))\n"
    )
    done = subprocess.run([str(MONITORING_PYTHON), "-c", code, summary["output"], str(model_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    read = json.loads(done.stdout.strip().splitlines()[-1])
    assert read["rows"] == summary["rows_scored"] and read["anomalies"] == []
    assert read["versions"] == {summary["model_version"]: summary["rows_scored"]}
    assert read["mean"] == pytest.approx(summary["score_quantiles"]["mean"])


def test_scoring_pipeline_compiles_with_typed_artifacts(tmp_path: Path) -> None:
    import yaml

    from pipelines.scoring import compile_scoring_pipeline

    path = compile_scoring_pipeline(tmp_path / "scoring.yaml", "registry.example/churn/pipeline:abc")
    spec = yaml.safe_load(path.read_text())
    outputs = spec["components"]["comp-score"]["outputDefinitions"]["artifacts"]
    assert {k: v["artifactType"]["schemaTitle"] for k, v in outputs.items()} == {
        "predictions": "system.Dataset", "top_risk": "system.Dataset", "summary": "system.Metrics"}
    executor = next(iter(spec["deploymentSpec"]["executors"].values()))["container"]
    assert executor["image"] == "registry.example/churn/pipeline:abc"
    assert "pip install" not in json.dumps(executor)


@pytest.mark.slow
def test_scoring_pipeline_runs_locally(sample_raw_dir: Path, registry_uri: str, tmp_path: Path) -> None:
    """kfp.local runs the scoring component in a subprocess: typed outputs with their metadata."""
    import warnings

    from kfp import local

    from pipelines.scoring import build_scoring_pipeline

    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "outputs"),
               raise_on_error=True)
    task = build_scoring_pipeline("churn-pipeline:local")(raw_dir=str(sample_raw_dir), registry_uri=registry_uri,
                                                           top=10)
    predictions, top_risk = task.outputs["predictions"], task.outputs["top_risk"]
    frame, top = _read(Path(predictions.path)), _read(Path(top_risk.path))
    assert predictions.metadata["rows"] == len(frame) and predictions.metadata["model_version"] == "v1"
    assert predictions.metadata["file_name"].startswith("v1_batch_")
    assert top_risk.metadata["rows"] == len(top) == 10 and top["rank"].tolist() == list(range(1, 11))
    assert task.outputs["summary"].metadata["rows_scored"] == len(frame)


@pytest.mark.slow
@pytest.mark.skipif(not MONITORING_PYTHON.exists(), reason="needs .venv-monitoring (the drift check's environment)")
def test_run_score_then_drift_check_on_the_batch_file(sample_raw_dir: Path, tmp_path: Path) -> None:
    """The loop on one machine: train and promote, score the base, the nightly check reads the scores."""
    run = subprocess.run([sys.executable, str(REPO / "pipeline.py"), "run", "--raw-dir", str(sample_raw_dir)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    scored = _cli("--raw-dir", str(sample_raw_dir), "--summary-json", "score.json", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr[-3000:]
    summary = json.loads((tmp_path / "score.json").read_text())
    drift = subprocess.run([str(MONITORING_PYTHON), str(REPO / "monitoring" / "drift_check.py"), "--current",
                            summary["output"], "--trigger", "none", "--no-tfdv", "--output-dir", "data/monitoring"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert drift.returncode == 0, drift.stdout[-2000:] + drift.stderr[-2000:]
    decision = json.loads((tmp_path / "data" / "monitoring" / "drift_decision.json").read_text())
    text = json.dumps(decision)
    assert "models/churn-model/v1/baseline/train.csv" in text  # the scoring model's own baseline
    assert summary["model_version"] == "v1" and decision["rows"]["current"] == summary["rows_scored"]
