"""Seeded, numpy-only generator of feature tables shaped like the pipeline's (for drift tests and the bench).

The monitoring environment cannot run the training pipeline (pandas < 2 there), so the calibration tests
need feature tables made without it. This module simulates customers the way ``churn.sample_data`` does
(gamma purchase rates, gamma amounts by plan, Dirichlet category and channel mixes, a ~2% refund rate,
the generator's attribute shares) and derives the columns ``components/feature_engineering.py`` writes,
with the same shapes: integer counts piled at 0, heavy-tailed amounts with a mass at 0, shares on a
lattice of small fractions with masses at 0 and 1, signed log-ratio trends, a nullable age.

It is a stand-in with the same kinds of marginals, not the pipeline: the pipeline's own features are
checked once end to end (``test_drift_check.py``) and on real pipeline output in the demo (docs/demo.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.schema import ID_COLUMN, LABEL_COLUMN, FeatureSchema, FeatureSpec

PLANS = ("basic", "standard", "premium")
PLAN_SHARES = (0.50, 0.33, 0.17)
REGIONS = ("north", "south", "east", "west", "central")
REGION_SHARES = (0.22, 0.28, 0.18, 0.20, 0.12)
ACQUISITION = ("organic", "paid_search", "social", "referral", "partner")
ACQUISITION_SHARES = (0.35, 0.22, 0.18, 0.15, 0.10)
PAYMENT = ("card", "autopay", "invoice")
PAYMENT_SHARES = (0.50, 0.35, 0.15)
CATEGORIES = ("groceries", "apparel", "home", "beauty", "sports", "electronics")
CATEGORY_SHARES = (0.30, 0.18, 0.15, 0.15, 0.12, 0.10)
CHANNELS = ("web", "app", "store")
CHANNEL_SHARES = (0.38, 0.32, 0.30)
PLAN_MEAN_AMOUNT = (28.0, 45.0, 80.0)
HISTORY_DAYS = 640

NUMERIC = (
    "tenure_days", "recency_days", "frequency", "frequency_30d", "frequency_90d", "monetary_total",
    "monetary_avg", "monetary_90d", "trend_frequency", "trend_monetary", "refund_count",
    *(f"category_share_{c}" for c in CATEGORIES), *(f"channel_share_{c}" for c in CHANNELS),
)
CATEGORICAL = {"plan": PLANS, "region": REGIONS, "acquisition_channel": ACQUISITION, "payment_method": PAYMENT}


def feature_schema() -> FeatureSchema:
    """The schema of :func:`generate`'s tables: the pipeline's feature names, kinds and order."""
    specs = [FeatureSpec(name, "numeric", "transactions") for name in NUMERIC]
    specs += [FeatureSpec(name, "categorical", "customer", categories=tuple(sorted(values)))
              for name, values in CATEGORICAL.items() if name != "payment_method"]
    specs.append(FeatureSpec("age", "numeric", "customer", nullable=True))
    specs.append(FeatureSpec("payment_method", "categorical", "customer", categories=tuple(sorted(PAYMENT))))
    specs.append(FeatureSpec("support_tickets", "numeric", "customer"))
    order = [*NUMERIC, "plan", "region", "acquisition_channel", "age", "payment_method", "support_tickets"]
    by_name = {s.name: s for s in specs}
    return FeatureSchema(version=1, features=tuple(by_name[n] for n in order),
                         mix_columns={"category": list(CATEGORIES), "channel": list(CHANNELS)})


def _mix_shares(rng: np.random.Generator, counts: np.ndarray, shares: tuple[float, ...],
                concentration: float) -> np.ndarray:
    """Per-customer share of purchases per value: Dirichlet preferences, multinomial counts / total."""
    prefs = rng.dirichlet(np.asarray(shares) * concentration, size=counts.size)
    per_value = rng.multinomial(counts, prefs)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = per_value / counts[:, None]
    return np.nan_to_num(out, nan=0.0)


def generate(n: int, seed: int) -> pd.DataFrame:
    """A feature table of ``n`` customers: ``customer_id``, the features of :func:`feature_schema`, ``churned``.

    Args:
        n: Number of rows.
        seed: Seed of ``numpy.random.default_rng``; same seed, same table.

    Returns:
        The table, with float64 numeric columns (``age`` has ~2% NaN) and str categorical columns.
    """
    rng = np.random.default_rng(seed)
    plan = rng.choice(len(PLANS), size=n, p=PLAN_SHARES)
    tenure = rng.integers(1, HISTORY_DAYS, size=n) + 0.99
    churner = rng.random(n) < np.array([0.32, 0.22, 0.14])[plan]
    rate = rng.gamma(2.5, 1.0 / 2.5, size=n) * np.array([0.85, 1.0, 1.25])[plan] * 0.06  # purchases per day
    active_days = np.where(churner, tenure * rng.uniform(0.2, 0.9, size=n), tenure)
    frequency = rng.poisson(rate * active_days)
    last90 = np.clip(90.0 - (tenure - active_days), 0.0, 90.0) / np.maximum(tenure, 1.0)
    frequency_90d = rng.binomial(frequency, np.minimum(1.0, last90 * tenure / np.maximum(active_days, 1.0)))
    frequency_30d = rng.binomial(frequency_90d, np.where(churner, 0.15, 1.0 / 3.0))
    before90 = rng.binomial(frequency - frequency_90d,
                            np.minimum(1.0, 90.0 / np.maximum(active_days - 90.0, 90.0)))
    amount = rng.gamma(5.0, np.array(PLAN_MEAN_AMOUNT)[plan] / 5.0, size=n)  # the customer's usual basket
    spend_noise = rng.gamma(8.0, 1.0 / 8.0, size=n)
    refund_count = rng.binomial(frequency, 0.0205)
    monetary_total = np.round(frequency * amount * spend_noise - refund_count * amount, 2).clip(0.0)
    monetary_avg = np.where(frequency > 0, np.round(amount * spend_noise, 2), 0.0)
    monetary_90d = np.round(frequency_90d * amount * rng.gamma(8.0, 1.0 / 8.0, size=n), 2)
    monetary_before = np.round(before90 * amount * rng.gamma(8.0, 1.0 / 8.0, size=n), 2)
    gap = rng.exponential(np.maximum(active_days, 1.0) / (frequency + 1.0))
    recency = np.minimum(tenure, (tenure - active_days) + gap)
    age = np.clip(np.rint(rng.normal(42.0, 13.0, size=n)), 18, 80)
    age[rng.random(n) < 0.02] = np.nan
    tickets = rng.negative_binomial(1.5, 1.5 / (1.5 + np.where(plan == 0, 1.4, 1.0)), size=n)

    columns: dict[str, object] = {
        ID_COLUMN: np.char.zfill(np.arange(1, n + 1).astype(str), 7),
        "tenure_days": tenure,
        "recency_days": recency,
        "frequency": frequency.astype(float),
        "frequency_30d": frequency_30d.astype(float),
        "frequency_90d": frequency_90d.astype(float),
        "monetary_total": monetary_total,
        "monetary_avg": monetary_avg,
        "monetary_90d": monetary_90d,
        "trend_frequency": np.log((frequency_90d + 1.0) / (before90 + 1.0)),
        "trend_monetary": np.log((monetary_90d + 1.0) / (monetary_before + 1.0)),
        "refund_count": refund_count.astype(float),
    }
    cat = _mix_shares(rng, frequency, CATEGORY_SHARES, 3.0)
    chan = _mix_shares(rng, frequency, CHANNEL_SHARES, 4.0)
    columns.update({f"category_share_{c}": cat[:, i] for i, c in enumerate(CATEGORIES)})
    columns.update({f"channel_share_{c}": chan[:, i] for i, c in enumerate(CHANNELS)})
    columns.update({
        "plan": np.asarray(PLANS, dtype=object)[plan],
        "region": np.asarray(REGIONS, dtype=object)[rng.choice(len(REGIONS), size=n, p=REGION_SHARES)],
        "acquisition_channel": np.asarray(ACQUISITION, dtype=object)[
            rng.choice(len(ACQUISITION), size=n, p=ACQUISITION_SHARES)],
        "age": age,
        "payment_method": np.asarray(PAYMENT, dtype=object)[rng.choice(len(PAYMENT), size=n, p=PAYMENT_SHARES)],
        "support_tickets": tickets.astype(float),
        LABEL_COLUMN: churner.astype(int),
    })
    return pd.DataFrame(columns)


def churn_probability(frame: pd.DataFrame) -> np.ndarray:
    """A fixed logistic score of a feature table (stands in for the model's ``churn_probability``)."""
    logit = (-2.4 + 0.015 * np.minimum(frame["recency_days"].to_numpy(), 200.0)
             - 0.9 * frame["trend_frequency"].to_numpy() - 0.05 * frame["frequency_90d"].to_numpy()
             + 0.25 * np.minimum(frame["support_tickets"].to_numpy(), 6.0)
             + np.where(frame["plan"].to_numpy() == "basic", 0.5, 0.0))
    return 1.0 / (1.0 + np.exp(-logit))


def prediction_log(frame: pd.DataFrame, *, model_version: str = "v1", threshold: float = 0.42) -> pd.DataFrame:
    """``frame`` as the serving prediction log: features, ``customer_id``, ``churn_probability``, the decision
    in ``churned``, ``model_version`` and ``timestamp`` (the label column of ``frame`` is dropped)."""
    prob = churn_probability(frame)
    out = frame.drop(columns=[LABEL_COLUMN], errors="ignore").copy()
    out["churn_probability"] = prob
    out[LABEL_COLUMN] = (prob >= threshold).astype(int)
    out["model_version"] = model_version
    out["timestamp"] = "2026-07-01T02:00:00Z"
    return out


TIED = ("trend_small_counts", "share_of_few", "small_count")


def tied_features(n: int, seed: int) -> pd.DataFrame:
    """Three discrete, heavily tied columns, the kind whose values clients round: a log ratio of two small
    counts (``log((a + 1) / (b + 1))``, a few dozen values), a share of a few events (``k / m`` with
    ``m`` of 1 to 6: 0.5, 1/3, 2/3 …) and a small count. For the rounding control of the calibration."""
    rng = np.random.default_rng([seed, 7])
    events = rng.integers(1, 7, size=n)
    return pd.DataFrame({
        "trend_small_counts": np.log((rng.poisson(1.5, n) + 1.0) / (rng.poisson(1.5, n) + 1.0)),
        "share_of_few": rng.binomial(events, 0.4) / events,
        "small_count": rng.poisson(0.8, n).astype(float),
    })
