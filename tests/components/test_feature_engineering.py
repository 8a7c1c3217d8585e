"""feature_engineering: feature values, the schema, no leakage past the cutoff, processed splits."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.features import (
    FEATURE_SET_VERSION,
    FeatureInputError,
    derive_schema,
    describe_features,
    features_for,
    processed_splits,
    read_split,
    transaction_feature_names,
)
from churn.schema import FeatureSchema
from components import data_prep as dp
from components import feature_engineering as fe

CUTOFF = pd.Timestamp("2024-06-30T00:00:00Z")


def _customers() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["001", "002", "003"],
        "signup_date": pd.to_datetime(["2024-01-01", "2024-03-01", "2024-06-01"], utc=True),
        "plan": ["basic", "premium", ""],
        "age": ["30", "", "41"],
        "Region Name": ["north", "south", "north"],
    })


def _transactions() -> pd.DataFrame:
    rows = [
        ("001", "2024-01-10", 10.0, False, "books", "web"),
        ("001", "2024-05-01", 20.0, False, "books", "app"),
        ("001", "2024-06-20", 30.0, False, "games", "app"),
        ("001", "2024-06-21", -5.0, True, "games", "app"),
        ("002", "2024-03-15", 50.0, False, "games", "store"),
        ("002", "2024-07-15", 999.0, False, "games", "store"),  # after the cutoff
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "is_refund", "category", "channel"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


@pytest.fixture()
def schema() -> FeatureSchema:
    return derive_schema(_customers(), _transactions(), CUTOFF, 90)


def test_schema_types_attributes_by_content(schema: FeatureSchema) -> None:
    assert schema.get("age").kind == "numeric" and schema.get("age").nullable
    assert schema.get("plan").kind == "categorical" and schema.get("plan").categories == ("basic", "premium")
    assert schema.get("region_name").kind == "categorical"
    assert "signup_date" not in schema.names and "customer_id" not in schema.names
    assert schema.mix_columns == {"category": ["books", "games"], "channel": ["app", "store", "web"]}
    assert schema.version == FEATURE_SET_VERSION


def test_schema_round_trips_through_json(schema: FeatureSchema, tmp_path: Path) -> None:
    schema.save(tmp_path)
    assert FeatureSchema.load(tmp_path) == schema


def test_feature_values(schema: FeatureSchema) -> None:
    f = features_for(schema, _customers(), _transactions(), CUTOFF).set_index("customer_id")
    one = f.loc["001"]
    assert one["frequency"] == 3
    assert one["refund_count"] == 1
    assert one["monetary_total"] == pytest.approx(55.0)  # 10 + 20 + 30 - 5
    assert one["monetary_avg"] == pytest.approx(20.0)
    assert one["recency_days"] == pytest.approx(10.0)
    assert one["tenure_days"] == pytest.approx(181.0)
    assert one["frequency_30d"] == 1 and one["frequency_90d"] == 2
    assert one["trend_frequency"] == pytest.approx(np.log(3 / 2))  # 2 in the last 90 days vs 1 in the 90 before
    assert one["category_share_books"] == pytest.approx(2 / 3)
    assert one["channel_share_app"] == pytest.approx(2 / 3)
    assert one["age"] == 30 and one["plan"] == "basic" and one["region_name"] == "north"
    three = f.loc["003"]  # no purchases: recency falls back to tenure, shares are 0
    assert three["frequency"] == 0 and three["recency_days"] == three["tenure_days"] == pytest.approx(29.0)
    assert three["category_share_books"] == 0 and three["plan"] is None
    assert np.isnan(f.loc["002", "age"])


@pytest.mark.parametrize("dtype", ["category", "string[pyarrow]"])
def test_mix_columns_as_categoricals_or_arrow_text_give_the_same_schema_and_features(dtype: str) -> None:
    # feature_engineering.run reads category/channel as categoricals; a frame with plain text (object)
    # must give the same mix values and shares, also with empty values, values outside the top list
    # and categories present only after the cutoff.
    tx = _transactions()
    tx.loc[1, "category"] = ""
    tx.loc[4, "channel"] = "kiosk"
    extra = pd.DataFrame({"customer_id": ["002"], "timestamp": [pd.Timestamp("2024-08-01T00:00:00Z")],
                          "amount": [1.0], "is_refund": [False], "category": ["late"], "channel": ["web"]})
    plain = pd.concat([tx, extra], ignore_index=True)
    typed = plain.astype({"category": dtype, "channel": dtype})
    schema = derive_schema(_customers(), plain, CUTOFF, 90)
    assert derive_schema(_customers(), typed, CUTOFF, 90) == schema
    assert "" not in schema.mix_columns["category"] and "late" not in schema.mix_columns["category"]
    expected = features_for(schema, _customers(), plain, CUTOFF)
    pd.testing.assert_frame_equal(features_for(schema, _customers(), typed, CUTOFF), expected)
    assert expected.set_index("customer_id").loc["001", "category_share_books"] == pytest.approx(1 / 3)


def test_no_information_after_the_cutoff_leaks(schema: FeatureSchema) -> None:
    base = features_for(schema, _customers(), _transactions(), CUTOFF)
    later = _transactions()
    extra = pd.DataFrame({"customer_id": ["001", "003"] * 50,
                          "timestamp": pd.Timestamp("2024-07-01T00:00:00Z") + pd.to_timedelta(np.arange(100), "D"),
                          "amount": 1e6, "is_refund": False, "category": "new", "channel": "web"})
    changed = later.assign(amount=np.where(later["timestamp"] > CUTOFF, -1.0, later["amount"]))
    leaky = features_for(schema, _customers(), pd.concat([changed, extra], ignore_index=True), CUTOFF)
    pd.testing.assert_frame_equal(base, leaky)


def test_saved_schema_reproduces_features_on_new_data(schema: FeatureSchema) -> None:
    customers = _customers().assign(plan=["gold", "basic", "premium"])  # unseen category is fine
    f = features_for(schema, customers, _transactions(), CUTOFF)
    assert list(f.columns) == ["customer_id", *schema.names]
    with pytest.raises(FeatureInputError, match=r"'age'.*missing"):
        features_for(schema, _customers().drop(columns=["age"]), _transactions(), CUTOFF)


def test_attribute_colliding_with_a_derived_name_is_prefixed() -> None:
    customers = _customers().assign(frequency=["a", "b", "c"])
    schema = derive_schema(customers, _transactions(), CUTOFF, 90)
    assert schema.get("frequency").source == "transactions"
    assert schema.get("attr_frequency").kind == "categorical"


def test_stage_writes_versioned_features_schema_and_splits(sample_raw_dir: Path, tmp_path: Path) -> None:
    dp.run(sample_raw_dir, tmp_path / "interim")
    facts = fe.run(tmp_path / "interim", tmp_path / "features", tmp_path / "processed", tmp_path / "processed")
    features = pd.read_csv(tmp_path / "features" / "customer_features_v1.csv", dtype={"customer_id": str})
    schema = FeatureSchema.load(tmp_path / "features")
    assert list(features.columns) == ["customer_id", *schema.names]
    assert features["customer_id"].str.len().eq(6).all()  # zero-padded ids survive
    train = read_split(tmp_path / "processed" / "train.csv", schema)
    val = read_split(tmp_path / "processed" / "validation.csv", schema)
    assert list(train.columns) == ["customer_id", *schema.names, "churned"]
    assert not set(train["customer_id"]) & set(val["customer_id"])
    labels = pd.read_csv(tmp_path / "interim" / "labels.csv", dtype={"customer_id": str})
    assert len(train) + len(val) == len(labels) == facts["rows"]["train"] + facts["rows"]["validation"]
    assert FeatureSchema.load(tmp_path / "processed") == schema


# --------------------------------------------------------------------------- customers-only data (no log)


def test_without_a_log_the_schema_has_tenure_and_attributes_only() -> None:
    customers = _customers().assign(frequency=["1", "2", "3"])
    schema = derive_schema(customers, None, CUTOFF, 90)
    assert schema.names == ["tenure_days", "plan", "age", "region_name", "attr_frequency"]
    assert schema.mix_columns == {} and transaction_feature_names(schema) == []
    assert describe_features(schema)["transaction_note"] == "none (no transaction log)"
    # an attribute is named the same with or without a log
    assert "attr_frequency" in derive_schema(customers, _transactions(), CUTOFF, 90).names
    f = features_for(schema, customers, None, CUTOFF).set_index("customer_id")
    assert list(f.columns) == schema.names
    assert f.loc["001", "tenure_days"] == pytest.approx(181.0) and f.loc["003", "plan"] is None


def test_stage_on_a_customers_only_interim_folder(telco_interim, tmp_path: Path) -> None:
    interim, _ = telco_interim
    facts = fe.run(interim, tmp_path / "features", tmp_path / "processed", tmp_path / "processed")
    schema = FeatureSchema.load(tmp_path / "features")
    assert schema.names == ["tenure_days", "contract", "internet_service", "monthly_charges", "payment_method",
                            "senior_citizen"]
    assert schema.get("monthly_charges").kind == "numeric" and schema.get("contract").kind == "categorical"
    assert facts["features_by_origin"] == {"total": 6, "transaction": 0, "customer": 6,
                                           "transaction_note": "none (no transaction log)", "left_out": {}}
    labels = pd.read_csv(interim / "labels.csv", dtype={"customer_id": str})
    assert facts["rows"]["train"] == (labels["split"] == "train").sum()
    assert facts["rows"]["validation"] == (labels["split"] == "validation").sum()
    train = read_split(tmp_path / "processed" / "train.csv", schema).set_index("customer_id")
    customers = pd.read_csv(interim / "cleaned_customers.csv", dtype=str).set_index("customer_id")
    one = train.index[0]
    days = (pd.Timestamp("2024-12-31", tz="UTC") - pd.Timestamp(customers.loc[one, "signup_date"], tz="UTC")).days
    assert train.loc[one, "tenure_days"] == pytest.approx(days)


# --------------------------------------------------------------------------- one schema computes its features anywhere


def test_a_frozen_schema_computes_its_features_from_new_data(schema: FeatureSchema) -> None:
    # new data: "books" never bought, a category the schema does not list, one more customer
    tx = _transactions().assign(category=["toys", "toys", "games", "games", "games", "games"])
    customers = pd.concat([_customers(), _customers().iloc[[0]].assign(customer_id="004")], ignore_index=True)
    f = features_for(schema, customers, tx, CUTOFF).set_index("customer_id")
    assert list(f.columns) == schema.names and len(f) == 4
    assert (f["category_share_books"] == 0).all()  # an absent value is a share of 0
    assert f.loc["001", "category_share_games"] == pytest.approx(1 / 3)  # toys count in no column
    assert f.loc["004", "frequency"] == 0


def test_missing_inputs_are_named(schema: FeatureSchema) -> None:
    with pytest.raises(FeatureInputError, match=r"needs transaction features \(recency_days.*no transaction log"):
        features_for(schema, _customers(), None, CUTOFF)
    with pytest.raises(FeatureInputError, match=r"transactions lack column\(s\) \['channel'\]"):
        features_for(schema, _customers(), _transactions().drop(columns=["channel"]), CUTOFF)
    with pytest.raises(FeatureInputError, match=r"customers lack column\(s\) \['signup_date'\]"):
        features_for(schema, _customers().drop(columns=["signup_date"]), _transactions(), CUTOFF)
    with pytest.raises(FeatureInputError, match=r"feature 'region_name'.*column is missing.*'Region Name'"):
        features_for(schema, _customers().drop(columns=["Region Name"]), _transactions(), CUTOFF)


# --------------------------------------------------------------------------- nobody dropped unseen


def _interim_from_hand(folder: Path, labels: pd.DataFrame) -> Path:
    from tests.components.conftest import write_interim

    customers = _customers().assign(signup_date=["2024-01-01", "2024-03-01", "2024-07-20"], churned=[0, 1, 0])
    tx = _transactions().assign(timestamp=lambda t: t["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return write_interim(folder, customers, labels, cutoff=str(CUTOFF), transactions=tx)


def test_a_labelled_customer_who_signed_up_after_the_cutoff_still_gets_a_row(tmp_path: Path) -> None:
    # labels.csv is data_prep's decision of who is trained on: feature_engineering must not second-guess it
    labels = pd.DataFrame({"customer_id": ["001", "002", "003"], "churned": [0, 1, 0],
                           "split": ["train", "validation", "train"]})
    interim = _interim_from_hand(tmp_path / "interim", labels)
    facts = fe.run(interim, tmp_path / "f", tmp_path / "p", tmp_path / "p")
    assert facts["rows"] == {"features": 3, "train": 2, "validation": 1}
    train = pd.read_csv(tmp_path / "p" / "train.csv", dtype={"customer_id": str})
    assert train["customer_id"].tolist() == ["001", "003"]
    assert train.set_index("customer_id").loc["003", "tenure_days"] == 0  # signed up after the cutoff


def test_a_labelled_customer_without_a_customer_row_fails_loudly(tmp_path: Path) -> None:
    labels = pd.DataFrame({"customer_id": ["001", "002", "999"], "churned": [0, 1, 0],
                           "split": ["train", "validation", "train"]})
    interim = _interim_from_hand(tmp_path / "interim", labels)
    with pytest.raises(FeatureInputError, match=r"labels.csv: 1 labelled customer\(s\) are not in .*"
                                                   r"cleaned_customers.csv \(e.g. \['999'\]\)"):
        fe.run(interim, tmp_path / "f", tmp_path / "p", tmp_path / "p")


def test_processed_splits_refuse_to_lose_a_labelled_customer() -> None:
    labels = pd.DataFrame({"customer_id": ["001", "002"], "churned": [0, 1], "split": ["train", "validation"]})
    features = pd.DataFrame({"customer_id": ["001"], "x": [1.0]})
    with pytest.raises(FeatureInputError, match=r"1 labelled customer\(s\) have no feature row \(e.g. \['002'\]\)"):
        processed_splits(features, labels)
    with pytest.raises(FeatureInputError, match="neither 'train' nor 'validation'"):
        processed_splits(features.assign(customer_id="002"), labels.assign(split=["train", "test"]))


def _identity(interim: Path, processed: Path) -> tuple[int, int, int, dict]:
    import json

    meta = json.loads((interim / "prep_metadata.json").read_text())
    kept = len(pd.read_csv(interim / "cleaned_customers.csv", dtype=str))
    labels = pd.read_csv(interim / "labels.csv", dtype={"customer_id": str})
    splits = {s: pd.read_csv(processed / f"{s}.csv", dtype={"customer_id": str}) for s in ("train", "validation")}
    for name, frame in splits.items():  # the split files hold exactly labels.csv's customers of that split
        assert sorted(frame["customer_id"]) == sorted(labels.loc[labels["split"] == name, "customer_id"])
    return kept, len(splits["train"]), len(splits["validation"]), meta["excluded_from_training"]


@pytest.mark.parametrize("labels", ["provided", "derived"])
def test_every_labelled_customer_is_trained_on_or_counted_as_excluded(sample_raw_dir: Path, tmp_path: Path,
                                                                     labels: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "transactions.json").write_bytes((sample_raw_dir / "transactions.json").read_bytes())
    customers = pd.read_csv(sample_raw_dir / "customers.csv", dtype=str, keep_default_na=False)
    if labels == "provided":
        # labels for most, none for some, and some customers signed up after the newest transaction
        churned = pd.Series(np.random.default_rng(1).integers(0, 2, len(customers)).astype(str))
        churned[::17] = ""
        customers["churned"] = churned
        customers.loc[5:15, "signup_date"] = "2099-01-01"
    customers.to_csv(raw / "customers.csv", index=False)
    dp.run(raw, tmp_path / "interim", seed=3)
    fe.run(tmp_path / "interim", tmp_path / "features", tmp_path / "processed", tmp_path / "processed")
    kept, train, validation, excluded = _identity(tmp_path / "interim", tmp_path / "processed")
    reason = "no churned label" if labels == "provided" else "signed up after cutoff"
    assert excluded.get(reason, 0) > 0  # the case is exercised
    assert kept == train + validation + sum(excluded.values())


def test_run_summary_says_the_transaction_features_are_absent_and_who_was_not_trained_on(
        telco_interim, tmp_path: Path, capsys) -> None:
    import json
    import shutil
    from types import SimpleNamespace

    from pipelines.local import print_summary, summarize

    source, _ = telco_interim
    interim = tmp_path / "interim"
    shutil.copytree(source, interim)
    meta = json.loads((interim / "prep_metadata.json").read_text())
    meta["excluded_from_training"] = {"signed up after cutoff": 2, "no churned label": 0}
    (interim / "prep_metadata.json").write_text(json.dumps(meta))
    facts = fe.run(interim, tmp_path / "features", tmp_path / "train", tmp_path / "validation")
    model = tmp_path / "model"
    model.mkdir()
    (model / "registration.json").write_text(json.dumps({
        "model_name": "m", "version": "1", "alias": "champion", "promoted": True, "source": "x",
        "decision": {"reason": "no champion yet"}}))
    art = lambda path, **meta: SimpleNamespace(path=str(path), metadata=meta)  # noqa: E731 - a KFP artifact stand-in
    outputs = {"interim": art(interim), "features": art(tmp_path / "features"),
               "train_data": art(tmp_path / "train", rows=facts["rows"]["train"]),
               "validation_data": art(tmp_path / "validation", rows=facts["rows"]["validation"]),
               "metrics": art(tmp_path, roc_auc=0.8), "model": art(model, model_type="logistic_regression"),
               "registration": art(model)}
    summary = summarize(outputs, {"model": str(model)}, "", 1.0)
    assert summary["features"]["transaction"] == 0
    print_summary(summary)
    out = capsys.readouterr().out
    assert "transaction features: none (no transaction log)" in out
    assert "kept but not trained on: signed up after cutoff: 2" in out
    assert f"trained on {facts['rows']['train']} train + {facts['rows']['validation']} validation customers" in out


def test_cli_reports_interim_files_that_disagree_without_a_traceback(tmp_path: Path, capsys) -> None:
    labels = pd.DataFrame({"customer_id": ["001", "999"], "churned": [0, 1], "split": ["train", "validation"]})
    interim = _interim_from_hand(tmp_path / "interim", labels)
    code = fe.main(["--interim-dir", str(interim), "--features-dir", str(tmp_path / "f"),
                    "--processed-dir", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2 and "are not in" in err and "'999'" in err and "Traceback" not in err
