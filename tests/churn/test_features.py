"""churn.features helpers that the stages share."""

import numpy as np
import pandas as pd
import pytest

from churn.features import MAX_ATTRIBUTE_CATEGORIES, derive_schema, describe_features, features_for, text_isin
from churn.schema import FeatureSchema


@pytest.mark.parametrize("dtype", ["str", object, "string[pyarrow]"])
def test_text_isin_matches_pandas_isin_of_the_texts(dtype):
    values = pd.Series(["007", "1", "x", None, "", "007"], dtype=dtype)
    allowed = pd.Series(["007", "", "y"], dtype=dtype)
    expected = values.astype(str).isin(allowed.astype(str)).to_numpy()
    mask = text_isin(values, allowed)
    assert mask.dtype == bool and mask.tolist() == expected.tolist() == [True, False, False, False, True, True]


def test_text_isin_compares_texts_across_types_and_takes_indexes():
    assert text_isin(pd.Index([1, 2, 3]), pd.Series(["2", "3.0"])).tolist() == [False, True, False]
    assert text_isin(pd.Series([], dtype=str), pd.Series(["x"])).tolist() == []
    assert not text_isin(pd.Series(["a"]), pd.Series([], dtype=str)).any()


def test_text_isin_on_many_ids_agrees_with_pandas():
    rng = np.random.default_rng(0)
    ids = pd.Series([f"{i:07d}" for i in rng.integers(0, 10**6, 50_000)], dtype="string[pyarrow]")
    allowed = pd.Series([f"{i:07d}" for i in rng.integers(0, 10**6, 30_000)], dtype="string[pyarrow]")
    assert text_isin(ids, allowed).tolist() == ids.isin(allowed).tolist()


def _customers(n: int, **columns: list[str]) -> pd.DataFrame:
    signup = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({"customer_id": [f"{i:05d}" for i in range(n)], "signup_date": [signup] * n, **columns})


def test_an_identifier_attribute_is_left_out_with_its_reason_and_the_rest_stays(tmp_path):
    n = 1000
    customers = _customers(
        n,
        email=[f"user{i}@example.com" for i in range(n)],  # one per customer: an identifier
        city=[f"city{i % 150}" for i in range(n)],  # many values, but shared: a feature
        plan=["basic", "premium"] * (n // 2),
        income=[str(i) for i in range(n)],  # numeric: always a feature
    )
    cutoff = pd.Timestamp("2025-01-01", tz="UTC")
    schema = derive_schema(customers, None, cutoff, 90)
    assert "email" not in schema.names and {"city", "plan", "income"} <= set(schema.names)
    assert schema.left_out == {"email": f"{n} different values in {n} customers: an identifier, not a feature"}
    assert len(schema.get("city").categories) == 150 > MAX_ATTRIBUTE_CATEGORIES
    assert describe_features(schema)["left_out"] == schema.left_out
    assert FeatureSchema.load(schema.save(tmp_path)).left_out == schema.left_out
    features = features_for(schema, customers, None, cutoff)
    assert "email" not in features.columns and features["city"].tolist()[:2] == ["city0", "city1"]


def test_few_distinct_values_are_never_an_identifier():
    customers = _customers(60, code=[f"c{i}" for i in range(60)])  # unique, but under the category limit
    assert derive_schema(customers, None, pd.Timestamp("2025-01-01", tz="UTC"), 90).left_out == {}


def test_a_schema_saved_before_left_out_existed_loads(tmp_path):
    schema = derive_schema(_customers(4, plan=["a", "b", "a", "b"]), None, pd.Timestamp("2025-01-01", tz="UTC"), 90)
    data = schema.to_dict()
    del data["left_out"]
    assert FeatureSchema.from_dict(data) == schema
