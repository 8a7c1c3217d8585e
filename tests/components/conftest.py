"""Fixtures for stage tests: processed splits built once from generated data, and hand-made interim folders."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.features import read_split
from churn.schema import FeatureSchema
from components import data_prep, feature_engineering


@dataclass(frozen=True)
class Processed:
    folder: Path
    schema: FeatureSchema

    def split(self, name: str):
        return read_split(self.folder / f"{name}.csv", self.schema)


@pytest.fixture(scope="session")
def processed(sample_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Processed:
    """data_prep + feature_engineering on 1,500 generated customers."""
    root = tmp_path_factory.mktemp("stages")
    data_prep.run(sample_raw_dir, root / "interim", seed=11)
    feature_engineering.run(root / "interim", root / "features", root / "processed", root / "processed")
    return Processed(folder=root / "processed", schema=FeatureSchema.load(root / "processed"))


def write_interim(folder: Path, customers: pd.DataFrame, labels: pd.DataFrame, *, cutoff: str,
                  transactions: pd.DataFrame | None = None, churn_window_days: int = 90,
                  excluded: dict[str, int] | None = None) -> Path:
    """Writes an interim folder as data_prep does: cleaned_customers.csv, filtered_sales.csv (header only
    and ``has_transactions: false`` without transactions), labels.csv, prep_metadata.json."""
    folder.mkdir(parents=True, exist_ok=True)
    customers.to_csv(folder / "cleaned_customers.csv", index=False)
    if transactions is None:
        (folder / "filtered_sales.csv").write_text("customer_id,timestamp,amount,is_refund\n")
    else:
        transactions.to_csv(folder / "filtered_sales.csv", index=False)
    labels.to_csv(folder / "labels.csv", index=False)
    counts = labels.groupby(["split", "churned"]).size()
    metadata = {
        "cutoff": pd.Timestamp(cutoff).isoformat(), "end": pd.Timestamp(cutoff).isoformat(),
        "churn_window_days": churn_window_days, "label_source": "provided", "seed": 0, "validation_fraction": 0.2,
        "rows": {}, "excluded_from_training": excluded or {},
        "labelled": {f"{s}_{'churned' if y else 'retained'}": int(n) for (s, y), n in counts.items()},
        "churn_rate": float(labels["churned"].mean()), "has_transactions": transactions is not None,
    }
    (folder / "prep_metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return folder


def split_labels(ids: pd.Series, churned: np.ndarray, seed: int = 0, validation_fraction: float = 0.2) -> pd.DataFrame:
    """labels.csv: a stratified, seeded train/validation split."""
    from sklearn.model_selection import train_test_split

    _, val = train_test_split(np.arange(len(ids)), test_size=validation_fraction, random_state=seed,
                              stratify=churned)
    split = np.full(len(ids), "train", dtype=object)
    split[val] = "validation"
    return pd.DataFrame({"customer_id": ids.to_numpy(), "churned": churned.astype(int), "split": split})


TELCO_CUTOFF = "2024-12-31T00:00:00+00:00"


def telco_customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A telco-like customers-only table (one row per customer, a ``churned`` label, no transactions).

    Churn follows a known logistic model of tenure (from ``signup_date``), contract, internet service,
    monthly charges, payment method and senior status, like the IBM telco table's main effects.

    Returns:
        The cleaned customers (``churned`` included) and each customer's true churn probability.
    """
    rng = np.random.default_rng(seed)
    tenure_months = rng.uniform(0, 72, n)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.55, 0.21, 0.24])
    internet = rng.choice(["DSL", "Fiber optic", "No"], n, p=[0.34, 0.44, 0.22])
    base = np.select([internet == "No", internet == "DSL"], [20.0, 55.0], 85.0)
    charges = np.round(base + rng.normal(0, 8, n), 2)
    payment = rng.choice(["Electronic check", "Mailed check", "Bank transfer", "Credit card"], n)
    senior = rng.binomial(1, 0.16, n)
    logit = (-0.3 - 0.045 * tenure_months
             + np.select([contract == "Month-to-month", contract == "One year"], [1.0, -0.6], -1.6)
             + 0.6 * (internet == "Fiber optic") - 0.5 * (internet == "No") + 0.01 * (charges - 65)
             + 0.5 * (payment == "Electronic check") + 0.3 * senior)
    p = 1 / (1 + np.exp(-logit))
    churned = rng.binomial(1, p)
    signup = pd.Timestamp(TELCO_CUTOFF) - pd.to_timedelta(np.round(tenure_months * 30.44), "D")
    customers = pd.DataFrame({
        "customer_id": [f"{i:04d}-TLC" for i in range(n)],
        "signup_date": signup.strftime("%Y-%m-%d"),
        "contract": contract, "internet_service": internet, "monthly_charges": charges,
        "payment_method": payment, "senior_citizen": senior, "churned": churned,
    })
    return customers, p


@pytest.fixture(scope="session")
def telco_interim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.Series]:
    """An interim folder of 4,000 telco-like customers without a transaction log, and the true churn
    probability per customer id."""
    customers, p = telco_customers(4000, seed=5)
    labels = split_labels(customers["customer_id"], customers["churned"].to_numpy(), seed=5)
    folder = write_interim(tmp_path_factory.mktemp("telco") / "interim", customers, labels, cutoff=TELCO_CUTOFF)
    return folder, pd.Series(p, index=customers["customer_id"])


SHOP_CUTOFF = "2024-06-30T00:00:00+00:00"


def shop_interim(folder: Path, n: int, seed: int, category_weights: dict[str, float]) -> Path:
    """An interim folder with a transaction log whose categories are drawn with ``category_weights``.

    Churners buy less and stop 20-150 days before the cutoff, so recency and frequency carry the signal;
    the top-8 categories (the mix features) follow the weights.
    """
    rng = np.random.default_rng(seed)
    cutoff = pd.Timestamp(SHOP_CUTOFF)
    plan = rng.choice(["basic", "premium"], n)
    churned = rng.binomial(1, np.where(plan == "basic", 0.35, 0.2))
    signup_days = rng.uniform(200, 700, n)
    stop_days = np.where(churned == 1, rng.uniform(20, 150, n), 0.0)
    rate = np.where(churned == 1, 0.05, 0.12) * rng.gamma(4, 0.25, n)  # purchases per day
    counts = rng.poisson(rate * (signup_days - stop_days))
    owner = np.repeat(np.arange(n), counts)
    days_before = stop_days[owner] + rng.uniform(0, 1, len(owner)) * (signup_days - stop_days)[owner]
    names, weights = list(category_weights), np.array(list(category_weights.values()))
    ids = pd.Series([f"C{i:05d}" for i in range(n)])
    transactions = pd.DataFrame({
        "customer_id": ids.to_numpy()[owner],
        "timestamp": (cutoff - pd.to_timedelta(np.round(days_before * 86400), "s")).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "amount": np.round(rng.gamma(2, 15, len(owner)), 2), "is_refund": False,
        "category": rng.choice(names, len(owner), p=weights / weights.sum()),
        "channel": rng.choice(["web", "app", "store"], len(owner)),
    })
    signup = (cutoff - pd.to_timedelta(signup_days, "D")).strftime("%Y-%m-%d")
    customers = pd.DataFrame({"customer_id": ids, "signup_date": signup, "plan": plan, "churned": churned})
    labels = split_labels(ids, churned, seed=seed)
    return write_interim(folder, customers, labels, cutoff=SHOP_CUTOFF, transactions=transactions)
