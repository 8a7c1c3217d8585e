"""Tests for churn.sample_data: raw data contract, determinism and a learnable churn signal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from churn import sample_data
from churn.sample_data import (
    ACQUISITION_CHANNELS,
    CATEGORIES,
    CHANNELS,
    CUSTOMER_COLUMNS,
    PAYMENT_METHODS,
    PLANS,
    REGIONS,
    STATUSES,
    TRANSACTION_COLUMNS,
    SampleData,
    generate,
    write_raw,
)

WINDOW = pd.Timedelta(days=90)
LINE_RE = re.compile(
    r'^\{"transaction_id":"t\d{8}","customer_id":"\d{6}","timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",'
    r'"amount":-?\d+\.\d\d,"quantity":[1-9]\d*,"category":"[a-z]+","channel":"[a-z]+","status":"[a-z]+"\}$'
)


@pytest.fixture(scope="module")
def data() -> SampleData:
    """3000 customers with the default parameters (shared, never mutated)."""
    return generate(3000, seed=42)


@pytest.fixture(scope="module")
def small() -> SampleData:
    """A small data set for file-format tests."""
    return generate(200, seed=7)


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _rule_labels(customers: pd.DataFrame, transactions: pd.DataFrame) -> pd.Series:
    """The downstream labelling rule, recomputed independently of the generator."""
    end = transactions["timestamp"].max()
    cutoff = end - WINDOW
    recent = set(transactions.loc[transactions["timestamp"] > cutoff, "customer_id"])
    signup = customers["signup_date"].dt.tz_localize("UTC")
    eligible = customers.loc[signup <= cutoff, "customer_id"]
    churned = [0 if customer in recent else 1 for customer in eligible]
    return pd.Series(churned, index=pd.Index(eligible, name="customer_id"))


# --------------------------------------------------------------------------- #
# In-memory frames
# --------------------------------------------------------------------------- #


def test_customer_columns_and_dtypes(data: SampleData) -> None:
    customers = data.customers
    assert tuple(customers.columns) == CUSTOMER_COLUMNS
    assert len(customers) == 3000
    assert customers["customer_id"].dtype == "str"
    assert customers["customer_id"].str.fullmatch(r"\d{6}").all()
    assert customers["customer_id"].is_unique
    assert customers["customer_id"].iloc[16] == "000017"
    assert customers["signup_date"].dtype.kind == "M"
    assert (customers["signup_date"] == customers["signup_date"].dt.normalize()).all()
    assert customers["signup_date"].min() >= pd.Timestamp("2024-07-01")
    assert customers["signup_date"].max() <= pd.Timestamp("2026-06-30")
    for column, vocab in [
        ("plan", PLANS),
        ("region", REGIONS),
        ("acquisition_channel", ACQUISITION_CHANNELS),
        ("payment_method", PAYMENT_METHODS),
    ]:
        assert set(customers[column].astype(str)) == set(vocab), column
    shares = customers["region"].value_counts(normalize=True)
    assert shares.max() - shares.min() > 0.05  # unequal region shares
    assert customers["age"].dtype == "Int64"
    assert customers["age"].dropna().between(18, 80).all()
    assert 0.005 < customers["age"].isna().mean() < 0.04
    assert customers["support_tickets"].dtype == np.int64
    assert (customers["support_tickets"] >= 0).all()


def test_transaction_columns_and_dtypes(data: SampleData) -> None:
    tx = data.transactions
    assert tuple(tx.columns) == TRANSACTION_COLUMNS
    assert 15 * 3000 < len(tx) < 26 * 3000  # ~20 purchases per customer plus refunds
    assert tx["transaction_id"].dtype == "str"
    assert tx["customer_id"].dtype == "str"
    assert tx["transaction_id"].is_unique
    assert tx["transaction_id"].str.fullmatch(r"t\d{8}").all()
    assert tx["transaction_id"].iloc[0] == "t00000001"
    assert set(tx["customer_id"]) <= set(data.customers["customer_id"])
    assert str(tx["timestamp"].dt.tz) == "UTC"
    assert tx["timestamp"].is_monotonic_increasing
    assert tx["timestamp"].min() >= pd.Timestamp("2024-07-01", tz="UTC")
    assert tx["timestamp"].max() <= pd.Timestamp("2026-06-30 23:59:59", tz="UTC")
    assert tx["amount"].dtype == np.float64
    assert np.allclose(tx["amount"], tx["amount"].round(2))
    assert tx["quantity"].dtype == np.int64
    assert (tx["quantity"] >= 1).all()
    assert set(tx["category"].astype(str)) == set(CATEGORIES)
    assert set(tx["channel"].astype(str)) == set(CHANNELS)
    assert set(tx["status"].astype(str)) == set(STATUSES)


def test_no_purchase_before_signup(data: SampleData) -> None:
    signup = data.customers.set_index("customer_id")["signup_date"].dt.tz_localize("UTC")
    tx = data.transactions
    assert (tx["timestamp"] >= signup.reindex(tx["customer_id"]).to_numpy()).all()


def test_category_mix_is_customer_specific(data: SampleData) -> None:
    tx = data.transactions
    counts = pd.crosstab(tx["customer_id"], tx["category"].astype(str))
    heavy = counts[counts.sum(axis=1) >= 30]
    top_share = heavy.max(axis=1) / heavy.sum(axis=1)
    # a global mix would give ~0.3 top share everywhere; preferences spread it out
    assert top_share.std() > 0.08
    assert top_share.median() > 0.35


def test_amount_depends_on_plan(data: SampleData) -> None:
    purchases = data.transactions[data.transactions["status"] == "completed"]
    plan = data.customers.set_index("customer_id")["plan"].astype(str)
    mean = purchases["amount"].groupby(plan.reindex(purchases["customer_id"]).to_numpy()).mean()
    assert mean["basic"] < mean["standard"] < mean["premium"]
    assert (purchases["amount"] > 0).all()


def _plan_amounts(data: SampleData) -> pd.Series:
    purchases = data.transactions[data.transactions["status"] == "completed"]
    plan = data.customers.set_index("customer_id")["plan"].astype(str)
    return purchases["amount"].groupby(plan.reindex(purchases["customer_id"]).to_numpy()).mean()


def test_no_shift_is_the_default_world(small: SampleData) -> None:
    again = generate(200, seed=7, shift=sample_data.Shift())
    pd.testing.assert_frame_equal(again.transactions, small.transactions)
    pd.testing.assert_frame_equal(again.customers, small.customers)


def test_drifted_world_changes_inputs_and_churn(data: SampleData) -> None:
    drifted = generate(3000, seed=42, shift=sample_data.DRIFTED)
    ratio = _plan_amounts(drifted) / _plan_amounts(data)
    assert ratio.between(1.2, 1.4).all(), ratio  # prices +30% within every plan
    basic = (drifted.customers["plan"] == "basic").mean()
    assert abs(basic - 0.62) < 0.03 and abs((data.customers["plan"] == "basic").mean() - 0.50) < 0.03
    # a competitor in the south: churn there rises well above the other regions'
    region = drifted.customers.set_index("customer_id")["region"].astype(str).reindex(drifted.labels.index)
    by_region = drifted.labels.groupby(region.to_numpy()).mean()
    assert by_region["south"] > by_region.drop("south").max() + 0.1


def test_shift_is_validated() -> None:
    for bad in ({"amount_scale": 0}, {"plan_shares": (0.5, 0.5, 0.5)}, {"plan_shares": (1.0, 0.0)},
                {"region_churn_logit": (1.0,)}, {"churn_recent_days": 0}, {"fade_factor": 1.5}):
        with pytest.raises(ValueError):
            sample_data.Shift(**bad)


def test_refunds_are_negative_and_follow_a_purchase(data: SampleData) -> None:
    tx = data.transactions
    refunded = tx["status"] == "refunded"
    assert (refunded == (tx["amount"] < 0)).all()
    assert 0.01 < refunded.mean() < 0.03
    purchases = tx.loc[~refunded, ["customer_id", "amount", "timestamp"]]
    for row in tx[refunded].head(50).itertuples():
        earlier = purchases[
            (purchases["customer_id"] == row.customer_id)
            & (purchases["amount"] == -row.amount)
            & (purchases["timestamp"] < row.timestamp)
        ]
        assert len(earlier) >= 1


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError):
        generate(0)
    with pytest.raises(ValueError):
        generate(10, history_days=60, churn_window_days=90)
    with pytest.raises(ValueError):
        generate(10, avg_transactions=0)


def test_sample_data_is_frozen(small: SampleData) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        small.labels = small.labels  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# Churn labels and signal
# --------------------------------------------------------------------------- #


def test_labels_follow_the_labelling_rule(data: SampleData) -> None:
    expected = _rule_labels(data.customers, data.transactions)
    labels = data.labels
    assert labels.name == "churned"
    assert labels.index.name == "customer_id"
    assert labels.dtype == np.int64
    assert set(labels.unique()) <= {0, 1}
    assert labels.index.tolist() == expected.index.tolist()
    assert (labels.to_numpy() == expected.to_numpy()).all()
    assert data.end == data.transactions["timestamp"].max()
    assert data.cutoff == data.end - WINDOW


def test_churn_rate_and_late_signups(data: SampleData) -> None:
    assert 0.18 < data.labels.mean() < 0.32
    excluded = 1 - len(data.labels) / len(data.customers)
    assert 0.02 < excluded < 0.09  # ~5% signed up after the cutoff


def _count_between(tx: pd.DataFrame, start: pd.Timestamp, stop: pd.Timestamp) -> pd.Series:
    """Transactions per customer with ``start < timestamp <= stop``."""
    inside = (tx["timestamp"] > start) & (tx["timestamp"] <= stop)
    return tx[inside].groupby("customer_id").size()


def test_churners_fade_before_they_stop(data: SampleData) -> None:
    tx, cutoff = data.transactions, data.cutoff
    counts = pd.DataFrame(
        {
            "last90": _count_between(tx, cutoff - WINDOW, cutoff),
            "prev90": _count_between(tx, cutoff - 2 * WINDOW, cutoff - WINDOW),
        }
    )
    counts = counts.reindex(data.labels.index).fillna(0)
    ratio = counts.groupby(data.labels.to_numpy()).sum()
    trend = ratio["last90"] / ratio["prev90"]
    assert trend[1] < 0.6 * trend[0]


def test_churn_signal_is_learnable(data: SampleData) -> None:
    tx, cutoff, labels = data.transactions, data.cutoff, data.labels
    past = tx[tx["timestamp"] <= cutoff]
    by_customer = past.groupby("customer_id")
    day = pd.Timedelta(days=1)
    features = pd.DataFrame(
        {
            "recency_days": (cutoff - by_customer["timestamp"].max()) / day,
            "n_last90": _count_between(past, cutoff - WINDOW, cutoff),
            "n_prev90": _count_between(past, cutoff - 2 * WINDOW, cutoff - WINDOW),
            "total_amount": by_customer["amount"].sum(),
        }
    ).reindex(labels.index)
    features["recency_days"] = features["recency_days"].fillna(1000.0)
    features = features.fillna(0.0)
    plan = data.customers.set_index("customer_id")["plan"].astype(str).reindex(labels.index)
    for name in PLANS:
        features[f"plan_{name}"] = (plan == name).astype(float)

    x_train, x_test, y_train, y_test = train_test_split(
        features.to_numpy(), labels.to_numpy(), test_size=0.3, random_state=0, stratify=labels.to_numpy()
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert auc >= 0.80, f"validation ROC AUC {auc:.3f}"


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #


def test_write_raw_jsonl(small: SampleData, tmp_path: Path) -> None:
    paths = write_raw(small, tmp_path / "raw")
    raw = tmp_path / "raw"
    assert paths == {"customers": raw / "customers.csv", "transactions": raw / "transactions.json"}

    lines = paths["transactions"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(small.transactions)
    assert all(LINE_RE.match(line) for line in lines)
    records = [json.loads(line) for line in lines]
    assert list(records[0]) == list(TRANSACTION_COLUMNS)
    assert all(isinstance(r["customer_id"], str) and isinstance(r["transaction_id"], str) for r in records)
    assert all(isinstance(r["amount"], float) and isinstance(r["quantity"], int) for r in records)

    parsed = pd.DataFrame(records)
    tx = small.transactions
    assert parsed["transaction_id"].tolist() == tx["transaction_id"].tolist()
    assert parsed["customer_id"].tolist() == tx["customer_id"].tolist()
    assert parsed["timestamp"].tolist() == tx["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    assert parsed["amount"].tolist() == tx["amount"].tolist()
    assert parsed["quantity"].tolist() == tx["quantity"].tolist()
    for column in ("category", "channel", "status"):
        assert parsed[column].tolist() == tx[column].astype(str).tolist()
    assert set(parsed["customer_id"]) <= set(small.customers["customer_id"])


def test_customers_csv(small: SampleData, tmp_path: Path) -> None:
    path = write_raw(small, tmp_path)["customers"]
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(CUSTOMER_COLUMNS)
    assert "\r" not in text
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert raw["customer_id"].tolist() == small.customers["customer_id"].tolist()
    assert raw["customer_id"].str.fullmatch(r"\d{6}").all()
    assert raw["signup_date"].str.fullmatch(r"\d{4}-\d\d-\d\d").all()
    assert raw["signup_date"].tolist() == small.customers["signup_date"].dt.strftime("%Y-%m-%d").tolist()
    missing = small.customers["age"].isna().to_numpy()
    assert (raw["age"].to_numpy()[missing] == "").all()
    assert raw["age"][~missing].str.fullmatch(r"\d+").all()
    assert raw["support_tickets"].str.fullmatch(r"\d+").all()
    assert "churned" not in raw.columns


def test_include_label(small: SampleData, tmp_path: Path) -> None:
    path = write_raw(small, tmp_path, include_label=True)["customers"]
    raw = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("customer_id")
    assert list(raw.columns)[-1] == "churned"
    labelled = raw.loc[small.labels.index, "churned"]
    assert labelled.astype(int).tolist() == small.labels.tolist()
    unlabelled = raw.drop(index=small.labels.index)
    assert len(unlabelled) > 0 and (unlabelled["churned"] == "").all()


def test_array_format_matches_jsonl(small: SampleData, tmp_path: Path) -> None:
    lines = write_raw(small, tmp_path / "lines")["transactions"]
    array = write_raw(small, tmp_path / "array", fmt="array")["transactions"]
    with open(array, encoding="utf-8") as handle:
        records = json.load(handle)
    assert isinstance(records, list)
    assert records == _read_jsonl(lines)
    with pytest.raises(ValueError):
        write_raw(small, tmp_path / "bad", fmt="csv")  # type: ignore[arg-type]


def test_chunked_writing_is_seamless(
    small: SampleData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def transactions_bytes(name: str, fmt: str) -> bytes:
        paths = write_raw(small, tmp_path / name, fmt=fmt)  # type: ignore[arg-type]
        return paths["transactions"].read_bytes()

    whole = {fmt: transactions_bytes(f"whole_{fmt}", fmt) for fmt in ("jsonl", "array")}
    monkeypatch.setattr(sample_data, "_JSONL_CHUNK_ROWS", 97)  # many chunks, last one partial
    for fmt in ("jsonl", "array"):
        assert transactions_bytes(f"chunked_{fmt}", fmt) == whole[fmt], fmt


def test_single_customer(tmp_path: Path) -> None:
    one = generate(1, seed=3)
    assert one.customers["customer_id"].tolist() == ["000001"]
    for fmt in ("jsonl", "array"):
        path = write_raw(one, tmp_path / fmt, fmt=fmt)["transactions"]
        if fmt == "array":
            assert len(json.loads(path.read_text())) == len(one.transactions)
        else:
            assert len(_read_jsonl(path)) == len(one.transactions)


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    first = write_raw(generate(300, seed=11), tmp_path / "a", include_label=True)
    second = write_raw(generate(300, seed=11), tmp_path / "b", include_label=True)
    other = write_raw(generate(300, seed=12), tmp_path / "c", include_label=True)
    for key in ("customers", "transactions"):
        assert first[key].read_bytes() == second[key].read_bytes(), key
        assert first[key].read_bytes() != other[key].read_bytes(), key


def test_parameters_shape_the_history() -> None:
    result = generate(400, seed=5, end_date=dt.date(2025, 12, 31), history_days=365, avg_transactions=8.0)
    tx = result.transactions
    assert tx["timestamp"].max() <= pd.Timestamp("2025-12-31 23:59:59", tz="UTC")
    assert tx["timestamp"].min() >= pd.Timestamp("2025-01-01", tz="UTC")
    assert 5 * 400 < len(tx) < 11 * 400
    expected = _rule_labels(result.customers, tx)
    assert (result.labels.to_numpy() == expected.to_numpy()).all()


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "raw"
    code = sample_data.main(
        [
            "--customers", "150", "--seed", "3", "--out", str(out), "--format", "array",
            "--transactions-per-customer", "5", "--with-label",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 1
    assert "150 customers" in captured.out
    assert "generating" in captured.err and "wrote" in captured.err
    records = json.loads((out / "transactions.json").read_text())
    assert 2 * 150 < len(records) < 9 * 150
    assert "churned" in (out / "customers.csv").read_text().splitlines()[0]


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sample_data.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("customers.csv", "transactions.json", "cutoff", "--with-label", "--transactions-per-customer"):
        assert word in text, word
