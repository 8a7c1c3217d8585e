"""register_model: the promotion gate and the MLflow registry aliases."""

from pathlib import Path

import numpy as np
import pytest

from churn.features import features_for
from churn.model_io import load_model
from churn.registry import get_registry
from components import register_model as rm
from components import train


def test_gate_rules() -> None:
    assert rm.gate(0.80, None).promote
    assert rm.gate(0.81, 0.80).promote
    assert not rm.gate(0.80, 0.80).promote  # a tie never promotes
    assert not rm.gate(0.79, 0.80).promote  # a worse model never becomes champion
    assert not rm.gate(0.805, 0.80, margin=0.01).promote
    assert rm.gate(0.811, 0.80, margin=0.01).promote
    assert rm.gate(0.20, 0.25, metric="log_loss").promote  # lower is better
    assert not rm.gate(0.30, 0.25, metric="log_loss").promote
    assert not rm.gate(float("nan"), 0.5).promote
    with pytest.raises(ValueError, match="unknown gate metric"):
        rm.gate(0.9, 0.8, metric="accuracy_typo")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        rm.gate(0.9, 0.8, margin=-0.1)


def test_gate_reason_says_why() -> None:
    reason = rm.gate(0.79, 0.80, champion_version="3").reason
    assert "does not beat champion v3" in reason and "0.7900" in reason and "0.8000" in reason


@pytest.fixture(scope="module")
def model_dirs(processed, tmp_path_factory) -> dict[str, Path]:
    """A good model, and a bad one trained on shuffled labels."""
    root = tmp_path_factory.mktemp("models")
    train_df = processed.split("train")
    shuffled = train_df.assign(churned=np.random.default_rng(0).permutation(train_df["churned"].to_numpy()))
    out = {}
    for name, frame in (("good", train_df), ("bad", shuffled)):
        trained = train.train_model(frame, processed.split("validation"), processed.schema,
                                    candidates=("logistic_regression",))
        out[name] = train.save_model(trained, processed.schema, root / name)
    return out


def test_promotion_flow_with_aliases(processed, model_dirs, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = get_registry(uri)
    kw = {"registry": registry, "model_name": "churn"}

    first = rm.register(model_dirs["bad"], processed.folder, **kw)
    assert (first["version"], first["alias"], first["decision"]["reason"]) == ("1", "champion", "no champion yet")

    better = rm.register(model_dirs["good"], processed.folder, **kw)
    assert better["alias"] == "champion" and better["previous_champion"] == "1"
    assert better["decision"]["new_score"] > better["decision"]["champion_score"]

    worse = rm.register(model_dirs["bad"], processed.folder, **kw)
    assert worse["alias"] == "challenger" and not worse["promoted"]
    assert "does not beat champion v2" in worse["decision"]["reason"]

    same = rm.register(model_dirs["good"], processed.folder, **kw)  # equal score: stays challenger
    assert same["alias"] == "challenger"

    assert registry.get_by_alias("churn", "champion").version == "2"
    assert registry.get_by_alias("churn", "challenger").version == "4"
    assert registry.get_by_alias("churn", "archived").version == "1"
    versions = {v.version: v for v in registry.list_versions("churn")}
    assert versions["1"].tags["stage"] == "archived"
    assert versions["2"].tags["stage"] == "production"

    forced = rm.register(model_dirs["bad"], processed.folder, force=True, **kw)
    assert forced["alias"] == "champion" and "forced" in forced["decision"]["reason"]
    staged = rm.register(model_dirs["good"], processed.folder, stage="Staging", **kw)
    assert staged["alias"] == "challenger"


@pytest.mark.slow
def test_champion_that_cannot_score_the_data_blocks_automatic_promotion(processed, model_dirs, tmp_path: Path) -> None:
    registry = get_registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    rm.register(model_dirs["good"], processed.folder, registry=registry, model_name="m")
    other = tmp_path / "other-validation"
    other.mkdir()
    val = processed.split("validation").drop(columns=["recency_days"])
    val.to_csv(other / "validation.csv", index=False)
    processed.schema.save(other)
    # the new model here is the champion's twin minus one feature: the champion cannot score this data
    from churn.schema import FeatureSchema

    slim = FeatureSchema(version=2, features=tuple(f for f in processed.schema.features if f.name != "recency_days"),
                         mix_columns=processed.schema.mix_columns)
    trained = train.train_model(processed.split("train"), processed.split("validation"), slim,
                                candidates=("logistic_regression",))
    new_dir = train.save_model(trained, slim, tmp_path / "slim")
    record = rm.register(new_dir, other, registry=registry, model_name="m")
    assert record["alias"] == "challenger"
    assert "champion v1 cannot score this validation data" in record["decision"]["reason"]


@pytest.mark.slow
def test_registered_files_download_intact(processed, model_dirs, tmp_path: Path) -> None:
    registry = get_registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    rm.register(model_dirs["good"], processed.folder, registry=registry, model_name="m")
    folder = registry.download(registry.get_by_alias("m", "champion"), tmp_path / "dl")
    for name in ("model.joblib", "feature_schema.json", "model_card.json"):
        assert (folder / name).read_bytes() == (model_dirs["good"] / name).read_bytes()


@pytest.mark.slow
def test_cli_maps_stage_to_alias(processed, model_dirs, tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--model-dir", str(model_dirs["good"]), "--processed-dir", str(processed.folder), "--registry-uri", uri]
    assert rm.main([*common, "--stage", "Staging"]) == 0
    assert rm.main([*common, "--stage", "Production"]) == 0
    out = capsys.readouterr().out
    assert "churn-model v1 → challenger" in out and "churn-model v2 → champion: no champion yet" in out


# --------------------------------------------------------------------------- a retrain that changes the schema

_WEIGHTS = {f"cat{i}": w for i, w in enumerate([20, 16, 14, 12, 10, 9, 8, 6, 4, 1])}


@pytest.fixture(scope="module")
def retrain_on_new_categories(tmp_path_factory) -> dict[str, Path]:
    """Two training data sets whose 8th most frequent category differs (cat7, then cat8), each through
    feature_engineering and train."""
    from components import feature_engineering as fe
    from tests.components.conftest import shop_interim

    root = tmp_path_factory.mktemp("retrain")
    out = {}
    for name, seed, weights in (("old", 1, _WEIGHTS), ("new", 2, {**_WEIGHTS, "cat7": 4, "cat8": 6})):
        interim = shop_interim(root / name / "interim", 1500, seed, weights)
        fe.run(interim, root / name / "features", root / name / "processed", root / name / "processed")
        train.run(root / name / "processed", root / name / "processed", root / name / "model", seed=seed,
                  tracking_uri="", candidates=("logistic_regression",))
        out.update({f"{name}_interim": interim, f"{name}_processed": root / name / "processed",
                    f"{name}_model": root / name / "model"})
    return out


@pytest.mark.slow
def test_a_retrain_with_other_top_categories_is_gated_against_the_champion(retrain_on_new_categories,
                                                                           tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from churn.interim import read_interim

    d = retrain_on_new_categories
    old, new = load_model(d["old_model"]), load_model(d["new_model"])
    assert "cat7" in old.schema.mix_columns["category"] and "cat7" not in new.schema.mix_columns["category"]
    validation = pd.read_csv(d["new_processed"] / "validation.csv", nrows=1)
    assert "category_share_cat7" not in validation.columns  # the champion's column is not in the new split
    registry = get_registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = rm.register(d["old_model"], d["old_processed"], registry=registry, model_name="m",
                        interim_dir=d["old_interim"])
    assert first["alias"] == "champion"

    record = rm.register(d["new_model"], d["new_processed"], registry=registry, model_name="m",
                         interim_dir=d["new_interim"])  # no force
    decision = record["decision"]
    assert decision["champion_version"] == "1" and decision["champion_score"] is not None, decision["reason"]
    assert "cannot score" not in decision["reason"]
    assert record["promoted"] == (decision["new_score"] > decision["champion_score"])  # a real comparison
    assert ("beats champion v1" if record["promoted"] else "does not beat champion v1") in decision["reason"]
    assert record["alias"] == ("champion" if record["promoted"] else "challenger")

    # the champion was scored on ITS features (cat7's share among them) of the same validation customers
    interim = read_interim(d["new_interim"])
    labels = interim.labels[interim.labels["split"] == "validation"]
    customers = interim.customers[interim.customers["customer_id"].isin(labels["customer_id"])]
    own = features_for(old.schema, customers, interim.transactions, interim.cutoff)
    assert own["category_share_cat7"].gt(0).any() and len(own) == len(labels)
    own = own.merge(labels, on="customer_id")
    assert decision["champion_score"] == pytest.approx(roc_auc_score(own["churned"], old.predict_proba(own)))


@pytest.mark.slow
def test_without_the_interim_data_a_changed_schema_still_cannot_be_gated(retrain_on_new_categories,
                                                                          tmp_path: Path) -> None:
    d = retrain_on_new_categories
    registry = get_registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    rm.register(d["old_model"], d["old_processed"], registry=registry, model_name="m")
    record = rm.register(d["new_model"], d["new_processed"], registry=registry, model_name="m")
    assert record["alias"] == "challenger" and "champion v1 cannot score" in record["decision"]["reason"]


@pytest.mark.slow
def test_a_customers_only_champion_and_a_champion_needing_transactions(retrain_on_new_categories, telco_interim,
                                                                        tmp_path: Path) -> None:
    # a champion trained with transactions cannot be scored on data without a log: refused, named, not promoted
    from components import feature_engineering as fe

    d = retrain_on_new_categories
    interim, _ = telco_interim
    fe.run(interim, tmp_path / "features", tmp_path / "processed", tmp_path / "processed")
    train.run(tmp_path / "processed", tmp_path / "processed", tmp_path / "model", tracking_uri="",
              candidates=("logistic_regression",))
    registry = get_registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    rm.register(d["old_model"], d["old_processed"], registry=registry, model_name="m", interim_dir=d["old_interim"])
    record = rm.register(tmp_path / "model", tmp_path / "processed", registry=registry, model_name="m",
                         interim_dir=interim)
    assert record["alias"] == "challenger"
    assert "champion v1 cannot score" in record["decision"]["reason"]
    assert "needs transaction features" in record["decision"]["reason"]


def test_the_component_takes_the_interim_data_and_the_pipeline_wires_it() -> None:
    import yaml

    from pipelines import training

    assert "interim" in rm.component("img").component_spec.inputs
    spec = yaml.safe_load(_compiled(training))
    task = spec["root"]["dag"]["tasks"]["register-model"]["inputs"]["artifacts"]["interim"]
    assert task["taskOutputArtifact"] == {"outputArtifactKey": "interim", "producerTask": "data-prep"}


def _compiled(training) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return training.compile_pipeline(Path(tmp) / "p.yaml").read_text()


@pytest.mark.slow
def test_a_customers_only_champion_is_gated_against_a_model_with_transactions(retrain_on_new_categories,
                                                                               tmp_path: Path) -> None:
    # the champion knew only tenure and plan; the new data has a log: the champion ignores it and is scored
    import json
    import shutil

    from components import feature_engineering as fe

    d = retrain_on_new_categories
    interim = tmp_path / "interim"
    shutil.copytree(d["old_interim"], interim)
    (interim / "filtered_sales.csv").write_text("customer_id,timestamp,amount,is_refund\n")
    meta = json.loads((interim / "prep_metadata.json").read_text())
    (interim / "prep_metadata.json").write_text(json.dumps({**meta, "has_transactions": False}))
    fe.run(interim, tmp_path / "features", tmp_path / "processed", tmp_path / "processed")
    train.run(tmp_path / "processed", tmp_path / "processed", tmp_path / "model", tracking_uri="",
              candidates=("logistic_regression",))
    assert load_model(tmp_path / "model").schema.names == ["tenure_days", "plan"]
    registry = get_registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    rm.register(tmp_path / "model", tmp_path / "processed", registry=registry, model_name="m", interim_dir=interim)
    record = rm.register(d["new_model"], d["new_processed"], registry=registry, model_name="m",
                         interim_dir=d["new_interim"])
    decision = record["decision"]
    assert decision["champion_score"] is not None and 0.5 < decision["champion_score"] < decision["new_score"]
    assert record["alias"] == "champion" and "beats champion v1" in decision["reason"]
