"""feature_engineering: feature values, the schema, no leakage past the cutoff, processed splits."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
    return fe.derive_schema(_customers(), _transactions(), CUTOFF, 90)


def test_schema_types_attributes_by_content(schema: FeatureSchema) -> None:
    assert schema.get("age").kind == "numeric" and schema.get("age").nullable
    assert schema.get("plan").kind == "categorical" and schema.get("plan").categories == ("basic", "premium")
    assert schema.get("region_name").kind == "categorical"
    assert "signup_date" not in schema.names and "customer_id" not in schema.names
    assert schema.mix_columns == {"category": ["books", "games"], "channel": ["app", "store", "web"]}
    assert schema.version == fe.FEATURE_SET_VERSION


def test_schema_round_trips_through_json(schema: FeatureSchema, tmp_path: Path) -> None:
    schema.save(tmp_path)
    assert FeatureSchema.load(tmp_path) == schema


def test_feature_values(schema: FeatureSchema) -> None:
    f = fe.build_features(_customers(), _transactions(), CUTOFF, schema).set_index("customer_id")
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
    schema = fe.derive_schema(_customers(), plain, CUTOFF, 90)
    assert fe.derive_schema(_customers(), typed, CUTOFF, 90) == schema
    assert "" not in schema.mix_columns["category"] and "late" not in schema.mix_columns["category"]
    expected = fe.build_features(_customers(), plain, CUTOFF, schema)
    pd.testing.assert_frame_equal(fe.build_features(_customers(), typed, CUTOFF, schema), expected)
    assert expected.set_index("customer_id").loc["001", "category_share_books"] == pytest.approx(1 / 3)


def test_no_information_after_the_cutoff_leaks(schema: FeatureSchema) -> None:
    base = fe.build_features(_customers(), _transactions(), CUTOFF, schema)
    later = _transactions()
    extra = pd.DataFrame({"customer_id": ["001", "003"] * 50,
                          "timestamp": pd.Timestamp("2024-07-01T00:00:00Z") + pd.to_timedelta(np.arange(100), "D"),
                          "amount": 1e6, "is_refund": False, "category": "new", "channel": "web"})
    changed = later.assign(amount=np.where(later["timestamp"] > CUTOFF, -1.0, later["amount"]))
    leaky = fe.build_features(_customers(), pd.concat([changed, extra], ignore_index=True), CUTOFF, schema)
    pd.testing.assert_frame_equal(base, leaky)


def test_saved_schema_reproduces_features_on_new_data(schema: FeatureSchema) -> None:
    customers = _customers().assign(plan=["gold", "basic", "premium"])  # unseen category is fine
    f = fe.build_features(customers, _transactions(), CUTOFF, schema)
    assert list(f.columns) == ["customer_id", *schema.names]
    with pytest.raises(fe.FeatureInputError, match="'age'.*missing"):
        fe.build_features(_customers().drop(columns=["age"]), _transactions(), CUTOFF, schema)


def test_attribute_colliding_with_a_derived_name_is_prefixed() -> None:
    customers = _customers().assign(frequency=["a", "b", "c"])
    schema = fe.derive_schema(customers, _transactions(), CUTOFF, 90)
    assert schema.get("frequency").source == "transactions"
    assert schema.get("attr_frequency").kind == "categorical"


def test_stage_writes_versioned_features_schema_and_splits(sample_raw_dir: Path, tmp_path: Path) -> None:
    dp.run(sample_raw_dir, tmp_path / "interim")
    facts = fe.run(tmp_path / "interim", tmp_path / "features", tmp_path / "processed", tmp_path / "processed")
    features = pd.read_csv(tmp_path / "features" / "customer_features_v1.csv", dtype={"customer_id": str})
    schema = FeatureSchema.load(tmp_path / "features")
    assert list(features.columns) == ["customer_id", *schema.names]
    assert features["customer_id"].str.len().eq(6).all()  # zero-padded ids survive
    train = fe.read_split(tmp_path / "processed" / "train.csv", schema)
    val = fe.read_split(tmp_path / "processed" / "validation.csv", schema)
    assert list(train.columns) == ["customer_id", *schema.names, "churned"]
    assert not set(train["customer_id"]) & set(val["customer_id"])
    labels = pd.read_csv(tmp_path / "interim" / "labels.csv", dtype={"customer_id": str})
    assert len(train) + len(val) == len(labels) == facts["rows"]["train"] + facts["rows"]["validation"]
    assert FeatureSchema.load(tmp_path / "processed") == schema
