"""train: candidate choice, threshold, model folder, tracking, and model behaviour."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from churn.features import read_split, transaction_feature_names
from churn.model_io import load_model, model_input
from components import train


@pytest.fixture(scope="module")
def trained(processed):
    return train.train_model(processed.split("train"), processed.split("validation"), processed.schema, seed=3)


def test_best_candidate_is_kept_and_generated_data_is_learnable(trained) -> None:
    assert set(trained.scores) == set(train.DEFAULT_CANDIDATES)
    assert trained.name == max(trained.scores, key=trained.scores.get)
    assert trained.scores[trained.name] >= 0.80  # the bar on generated data
    assert 0.0 < trained.threshold < 1.0


def test_training_is_seeded(processed, trained) -> None:
    again = train.train_model(processed.split("train"), processed.split("validation"), processed.schema, seed=3)
    val = processed.split("validation")
    np.testing.assert_allclose(trained.pipeline.predict_proba(model_input(val, processed.schema)),
                               again.pipeline.predict_proba(model_input(val, processed.schema)))
    assert trained.threshold == again.threshold


def test_best_f1_threshold_maximises_f1() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.55, 0.7, 0.9])
    assert train.best_f1_threshold(y, s) == pytest.approx(0.55)


def test_model_folder_round_trip(processed, trained, tmp_path: Path) -> None:
    train.save_model(trained, processed.schema, tmp_path, run_id="abc", rows={"train": 1})
    loaded = load_model(tmp_path)
    val = processed.split("validation")
    np.testing.assert_allclose(loaded.predict_proba(val),
                               trained.pipeline.predict_proba(model_input(val, processed.schema))[:, 1])
    assert loaded.card["tracking_run_id"] == "abc" and loaded.threshold == trained.threshold
    assert loaded.schema == processed.schema
    with pytest.raises(FileNotFoundError, match=r"model\.joblib: no model here"):
        load_model(tmp_path / "missing")


def test_missing_feature_column_is_named(processed, trained) -> None:
    val = processed.split("validation").drop(columns=["recency_days"])
    with pytest.raises(KeyError, match="recency_days"):
        model_input(val, processed.schema)


def test_unknown_candidate_is_rejected(processed) -> None:
    with pytest.raises(ValueError, match="unknown candidate 'xgb'"):
        train.build_pipeline(processed.schema, "xgb")


def test_run_tracks_params_metrics_and_model(processed, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    facts = train.run(processed.folder, processed.folder, tmp_path / "model", seed=3, tracking_uri=uri,
                      candidates=("logistic_regression",))
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(facts["run_id"])
    assert run.data.params["model_type"] == "logistic_regression"
    assert run.data.params["train_rows"] == str(facts["rows"]["train"])
    lr_auc = facts["scores"]["logistic_regression"]
    assert run.data.metrics["validation_roc_auc__logistic_regression"] == pytest.approx(lr_auc)
    logged = {a.path for a in client.list_artifacts(facts["run_id"], "model")}
    assert {"model/model.joblib", "model/feature_schema.json", "model/model_card.json"} <= logged
    assert (tmp_path / "mlruns" / "artifacts").is_dir()  # artifacts live beside the store, under mlruns/


def _profile(processed, **overrides) -> pd.DataFrame:
    """The median training customer with some features changed."""
    train_df = processed.split("train")
    row = {}
    for spec in processed.schema.features:
        col = train_df[spec.name]
        row[spec.name] = col.median() if spec.kind == "numeric" else col.mode().iloc[0]
    row.update(overrides)
    return pd.DataFrame([row])


def test_behaviour_known_churner_scores_above_loyal_customer(processed, trained) -> None:
    loyal = _profile(processed, recency_days=2.0, frequency_30d=4.0, frequency_90d=10.0, trend_frequency=0.5)
    churner = _profile(processed, recency_days=150.0, frequency_30d=0.0, frequency_90d=0.0, trend_frequency=-2.0)
    p = trained.pipeline.predict_proba(model_input(pd.concat([loyal, churner]), processed.schema))[:, 1]
    assert p[1] > 0.5 > p[0]


def test_behaviour_longer_silence_does_not_lower_churn_risk(processed, trained) -> None:
    frames = pd.concat([_profile(processed, recency_days=d, frequency_30d=0.0) for d in (30.0, 60.0, 120.0, 240.0)])
    p = trained.pipeline.predict_proba(model_input(frames, processed.schema))[:, 1]
    assert np.all(np.diff(p) >= -1e-9), p


def test_customers_only_data_trains_to_its_signal(telco_interim, tmp_path: Path) -> None:
    # a telco-like table without transactions: the model learns from tenure and the attributes alone
    from sklearn.metrics import roc_auc_score

    from components import feature_engineering as fe

    interim, truth = telco_interim
    fe.run(interim, tmp_path / "features", tmp_path / "processed", tmp_path / "processed")
    facts = train.run(tmp_path / "processed", tmp_path / "processed", tmp_path / "model", seed=3, tracking_uri="")
    model = load_model(tmp_path / "model")
    assert not transaction_feature_names(model.schema) and "tenure_days" in model.card["features"]
    assert (tmp_path / "model" / "model.onnx").is_file()
    val = read_split(tmp_path / "processed" / "validation.csv", model.schema)
    auc = roc_auc_score(val["churned"], model.predict_proba(val))
    oracle = roc_auc_score(val["churned"], truth[val["customer_id"]].to_numpy())  # the true churn probability
    # the oracle is 0.83 here (the IBM telco table's attribute-only regression: 0.84); 0.03 allows for the
    # sampling noise of ~800 validation customers and for learning the effects from 3,200
    assert auc >= oracle - 0.03 and auc >= 0.78, (auc, oracle, facts["scores"])
    profile = val.iloc[[0, 0]].assign(contract=["Month-to-month", "Two year"], tenure_days=[60.0, 60.0])
    month, two_year = model.predict_proba(profile)
    assert month > two_year  # the contract effect the data was generated with
