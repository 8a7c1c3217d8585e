"""Seeded, vectorised generator of realistic raw customer-churn data.

Writes the raw data contract (docs/data-contract.md): ``customers.csv`` (plan, region, acquisition
channel, age, payment method, support tickets) and ``transactions.json`` (JSON Lines or one array;
amounts, quantities, categories, channels, refunds).

Churn matches the downstream labelling rule: with ``cutoff = end - churn_window_days``, a customer who
signed up by the cutoff is churned when they buy nothing in ``(cutoff, end]``. A latent propensity from
the attributes picks the churners, who slow down and then stop before the cutoff, so recency, frequency
and trend carry the signal. One seeded ``numpy.random.Generator`` and vectorised per-transaction work make
the same seed give byte-identical files, fast enough for 1M customers (docs/pipeline.md).

Example:
    ``python -m churn.sample_data --customers 5000 --seed 42 --out data/raw``
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.isotime import time_of_day_chars

_LOG = logging.getLogger(__name__)

CUSTOMERS_FILE = "customers.csv"
TRANSACTIONS_FILE = "transactions.json"

CUSTOMER_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "signup_date",
    "plan",
    "region",
    "acquisition_channel",
    "age",
    "payment_method",
    "support_tickets",
)
TRANSACTION_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "customer_id",
    "timestamp",
    "amount",
    "quantity",
    "category",
    "channel",
    "status",
)

PLANS: tuple[str, ...] = ("basic", "standard", "premium")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
ACQUISITION_CHANNELS: tuple[str, ...] = ("organic", "paid_search", "social", "referral", "partner")
PAYMENT_METHODS: tuple[str, ...] = ("card", "autopay", "invoice")
CATEGORIES: tuple[str, ...] = ("groceries", "electronics", "apparel", "home", "beauty", "sports")
CHANNELS: tuple[str, ...] = ("web", "app", "store")
STATUSES: tuple[str, ...] = ("completed", "refunded")

_DAY = 86_400
_JSONL_CHUNK_ROWS = 1_000_000

# Attribute shares.
_PLAN_SHARES = np.array([0.50, 0.33, 0.17])
_REGION_SHARES = np.array([0.22, 0.28, 0.18, 0.20, 0.12])
_ACQ_SHARES = np.array([0.35, 0.22, 0.18, 0.15, 0.10])
_PAYMENT_SHARES = np.array([0.50, 0.35, 0.15])
_AGE_MISSING_SHARE = 0.02
_POST_CUTOFF_SIGNUP_SHARE = 0.05

# Latent churn propensity (log-odds contributions; the intercept is calibrated).
_TARGET_CHURN_RATE = 0.24
_PLAN_LOGIT = np.array([0.55, 0.0, -0.65])
_ACQ_LOGIT = np.array([0.0, 0.45, 0.35, -0.30, -0.10])
_PAYMENT_LOGIT = np.array([0.0, -0.70, 0.25])
_TICKET_LOGIT = 0.30
_AGE_LOGIT = -0.025  # per year above 45: younger customers churn more

# Churn timing and fade.
_CHURN_RECENT_SHARE = 0.85  # churners stopping in the last ~120 days before the cutoff
_CHURN_RECENT_DAYS = 120
_FADE_DAYS = 90
_FADE_FACTOR = 0.5
_ACTIVE_FINAL_PURCHASE_PROB = 0.8  # actives with no Poisson draw in the final window

# Purchasing behaviour.
_RATE_GAMMA_SHAPE = 2.5
_PLAN_RATE = np.array([0.85, 1.0, 1.25])
_PLAN_MEAN_AMOUNT = np.array([28.0, 45.0, 80.0])
_CATEGORY_SHARES = np.array([0.30, 0.10, 0.18, 0.15, 0.15, 0.12])
_CATEGORY_AMOUNT = np.array([0.6, 2.6, 1.1, 1.4, 0.7, 1.2])
_CATEGORY_EXTRA_QTY = np.array([1.2, 0.1, 0.6, 0.4, 0.8, 0.4])
_CATEGORY_CONCENTRATION = 3.0
_AMOUNT_GAMMA_SHAPE = 2.0
_CHANNEL_BY_AGE = np.array(  # web, app, store for age < 30, 30-50, > 50
    [[0.35, 0.50, 0.15], [0.40, 0.35, 0.25], [0.40, 0.15, 0.45]]
)
_CHANNEL_CONCENTRATION = 4.0
_REFUND_RATE = 0.0205  # refunds per purchase -> ~2% of rows
_REFUND_MAX_DAYS = 30


@dataclasses.dataclass(frozen=True)
class Shift:
    """A change of the simulated world, for drift demos and drift tests; the default changes nothing.

    Attributes:
        amount_scale: Every purchase amount is multiplied by this (a price change).
        plan_shares: Share of customers on basic, standard, premium (default: 50/33/17%).
        region_churn_logit: Churn log-odds added per region (north, south, east, west, central), e.g. a
            competitor opening in one region: a relationship the previous model never saw.
        churn_recent_days: Most churners stop buying within this many days before the cutoff (default 120).
        fade_factor: Purchase-rate factor in the ~90 days before a churner stops (default 0.5; 1 = churners
            leave without slowing down first, which makes churn harder to see coming).
    """

    amount_scale: float = 1.0
    plan_shares: tuple[float, float, float] = tuple(_PLAN_SHARES)
    region_churn_logit: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    churn_recent_days: int = _CHURN_RECENT_DAYS
    fade_factor: float = _FADE_FACTOR

    def __post_init__(self) -> None:
        if not self.amount_scale > 0:
            raise ValueError(f"amount_scale must be > 0, got {self.amount_scale}")
        if len(self.plan_shares) != len(PLANS) or min(self.plan_shares) < 0 or abs(sum(self.plan_shares) - 1) > 1e-9:
            raise ValueError(f"plan_shares must be {len(PLANS)} non-negative shares summing to 1, "
                             f"got {self.plan_shares}")
        if len(self.region_churn_logit) != len(REGIONS):
            raise ValueError(f"region_churn_logit needs {len(REGIONS)} values ({', '.join(REGIONS)})")
        if self.churn_recent_days < 1:
            raise ValueError(f"churn_recent_days must be >= 1, got {self.churn_recent_days}")
        if not 0 < self.fade_factor <= 1:
            raise ValueError(f"fade_factor must be in (0, 1], got {self.fade_factor}")


NO_SHIFT = Shift()
# What ``make demo`` sends to production: prices up 30%, more customers on the basic plan, a competitor in
# the south, and churners who leave abruptly. Inputs drift (amounts, plan mix) and so does the relation
# between inputs and churn, so a model retrained on the new data beats the old one.
DRIFTED = Shift(amount_scale=1.3, plan_shares=(0.62, 0.28, 0.10), region_churn_logit=(0.0, 1.5, 0.0, 0.0, 0.0),
                churn_recent_days=45, fade_factor=1.0)
SHIFTS: dict[str, Shift] = {"none": NO_SHIFT, "drifted": DRIFTED}


@dataclasses.dataclass(frozen=True)
class SampleData:
    """Generated raw data and its ground-truth churn labels.

    Attributes:
        customers: One row per customer with the ``customers.csv`` columns
            (``CUSTOMER_COLUMNS``); ``customer_id`` is zero-padded ``str``,
            ``signup_date`` is ``datetime64[s]``, ``age`` is nullable ``Int64``
            and the categorical attributes use the ``category`` dtype.
        transactions: One row per transaction with the ``transactions.json``
            fields (``TRANSACTION_COLUMNS``) in chronological order;
            ``timestamp`` is ``datetime64[s, UTC]``.
        labels: 0/1 ``int64`` churn label named ``churned``, indexed by
            ``customer_id``, for customers who signed up on or before the cutoff.
        churn_window_days: Window ``W`` the labels were computed with.
    """

    customers: pd.DataFrame
    transactions: pd.DataFrame
    labels: pd.Series
    churn_window_days: int = 90

    @property
    def end(self) -> pd.Timestamp:
        """Latest transaction timestamp (UTC), the labelling rule's ``end``."""
        return pd.Timestamp(self.transactions["timestamp"].max())

    @property
    def cutoff(self) -> pd.Timestamp:
        """Feature cutoff ``end - churn_window_days`` (UTC)."""
        return self.end - pd.Timedelta(days=self.churn_window_days)


def generate(
    n_customers: int,
    seed: int = 42,
    *,
    end_date: dt.date = dt.date(2026, 6, 30),
    history_days: int = 730,
    churn_window_days: int = 90,
    avg_transactions: float = 20.0,
    shift: Shift = NO_SHIFT,
) -> SampleData:
    """Generate customers, transactions and churn labels.

    Signup dates are spread over the ``history_days`` ending at ``end_date``
    (~5% after the cutoff). Churners (~24% of customers who signed up on or
    before the cutoff) are drawn from a latent propensity (basic plan,
    paid_search/social acquisition, more support tickets and younger age raise
    it; autopay and premium lower it), stop purchasing before the cutoff and
    purchase at half their rate in the 90 days before stopping. Purchase rates
    are gamma-distributed and scaled so that the expected number of purchases
    per customer is ``avg_transactions``; ~2% of rows are refunds.

    Args:
        n_customers: Number of customers (>= 1).
        seed: Seed for ``numpy.random.default_rng``; same seed, same data.
        end_date: Last day of the simulated history (UTC).
        history_days: Length of the history in days, ending at ``end_date``.
        churn_window_days: Churn window ``W`` used for the labels.
        avg_transactions: Expected purchases per customer over the history.
        shift: Changes to the simulated world (``DRIFTED`` for drift demos); the default changes nothing.

    Returns:
        The generated ``SampleData``; ``labels`` follow the labelling rule
        recomputed from the generated transactions.

    Raises:
        ValueError: If a parameter is out of range.
    """
    if n_customers < 1:
        raise ValueError(f"n_customers must be >= 1, got {n_customers}")
    if churn_window_days < 1:
        raise ValueError(f"churn_window_days must be >= 1, got {churn_window_days}")
    if history_days <= churn_window_days + 1:
        raise ValueError(
            f"history_days ({history_days}) must exceed churn_window_days + 1 ({churn_window_days + 1})"
        )
    if not avg_transactions > 0:
        raise ValueError(f"avg_transactions must be > 0, got {avg_transactions}")

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    start_day = np.datetime64(end_date, "D") - np.timedelta64(history_days - 1, "D")
    start_s = int(start_day.astype("datetime64[s]").astype(np.int64))
    end_s = start_s + history_days * _DAY - 1  # end_date 23:59:59
    cutoff_s = end_s - churn_window_days * _DAY

    attrs = _draw_customers(rng, n_customers, history_days, churn_window_days, shift)
    signup_s = start_s + attrs["signup_day"] * _DAY
    churner, stop_s = _draw_churn(rng, attrs, signup_s, cutoff_s, shift)
    _LOG.info(
        "drew %d customers (%d latent churners); simulating purchases", n_customers, int(churner.sum())
    )
    cust, ts = _draw_purchase_times(rng, attrs, churner, signup_s, stop_s, cutoff_s, end_s, avg_transactions,
                                    shift.fade_factor)
    _LOG.info("drew %d purchase times (%.1fs); drawing details and refunds", ts.size, _since(started))
    tx = _draw_purchase_details(rng, attrs, cust, ts, shift.amount_scale)
    tx = _add_refunds(rng, tx, n_customers)
    _LOG.info("sorting %d transactions and building frames (%.1fs)", tx["ts"].size, _since(started))
    order = _chronological_order(tx["ts"])
    tx = {key: values[order] for key, values in tx.items()}

    id_width = max(6, len(str(n_customers)))
    customer_ids = _fixed_width_ids(np.arange(1, n_customers + 1), id_width)
    customers = _customers_frame(attrs, customer_ids, start_day)
    transactions = _transactions_frame(tx, id_width)
    eligible, churned = _rule_labels(tx["cust"], tx["ts"], signup_s, churn_window_days, end_s)
    labels = pd.Series(
        churned,
        index=pd.Index(customers["customer_id"].to_numpy()[eligible], name="customer_id"),
        name="churned",
    )

    _LOG.info(
        "generated %d customers and %d transactions (%d refunds) in %.1fs; churn rate %.1f%% of %d "
        "labelled customers (latent churners %.1f%%, label differs from latent state for %.1f%%)",
        n_customers,
        len(transactions),
        int(tx["refunded"].sum()),
        _since(started),
        100.0 * float(churned.mean()) if churned.size else 0.0,
        churned.size,
        100.0 * float(churner[eligible].mean()) if churned.size else 0.0,
        100.0 * float(np.mean(churned != churner[eligible])) if churned.size else 0.0,
    )
    return SampleData(customers, transactions, labels, churn_window_days)


def write_raw(
    data: SampleData,
    raw_dir: Path | str,
    *,
    fmt: Literal["jsonl", "array"] = "jsonl",
    include_label: bool = False,
) -> dict[str, Path]:
    """Write ``customers.csv`` and ``transactions.json`` into ``raw_dir``.

    Transactions are formatted and written in chunks of at most 1M rows, so
    the JSON text of 20M rows never sits in memory at once. ``customer_id``
    and ``transaction_id`` are JSON strings, ``amount`` always has two
    decimals and ``quantity`` is an integer.

    Args:
        data: Output of ``generate``.
        raw_dir: Target directory; created if missing.
        fmt: ``"jsonl"`` for one JSON object per line, ``"array"`` for a
            single JSON array (one object per line inside the brackets).
        include_label: Add a ``churned`` column (0/1, empty for customers who
            signed up after the cutoff) to ``customers.csv``.

    Returns:
        ``{"customers": path, "transactions": path}``.

    Raises:
        ValueError: If ``fmt`` is not ``"jsonl"`` or ``"array"``.
    """
    if fmt not in ("jsonl", "array"):
        raise ValueError(f"fmt must be 'jsonl' or 'array', got {fmt!r}")
    out = Path(raw_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"customers": out / CUSTOMERS_FILE, "transactions": out / TRANSACTIONS_FILE}

    started = time.perf_counter()
    customers = data.customers.loc[:, list(CUSTOMER_COLUMNS)]
    if include_label:
        churned = data.labels.reindex(customers["customer_id"]).astype("Int64")
        customers = customers.assign(churned=churned.array)
    customers.to_csv(paths["customers"], index=False, date_format="%Y-%m-%d", lineterminator="\n")
    _LOG.info(
        "wrote %d customers to %s in %.1fs", len(customers), paths["customers"], _since(started)
    )

    started = time.perf_counter()
    _write_transactions(data.transactions, paths["transactions"], fmt)
    _LOG.info(
        "wrote %d transactions (%s) to %s in %.1fs",
        len(data.transactions),
        fmt,
        paths["transactions"],
        _since(started),
    )
    return paths


# --------------------------------------------------------------------------- #
# Simulation helpers
# --------------------------------------------------------------------------- #


def _since(started: float) -> float:
    """Seconds elapsed since ``started`` (a ``time.perf_counter`` value)."""
    return time.perf_counter() - started


def _draw_customers(
    rng: np.random.Generator, n: int, history_days: int, churn_window_days: int, shift: Shift = NO_SHIFT
) -> dict[str, np.ndarray]:
    """Draw customer attributes and signup day offsets (0 = first history day)."""
    plan = rng.choice(len(PLANS), size=n, p=np.asarray(shift.plan_shares)).astype(np.int8)
    region = rng.choice(len(REGIONS), size=n, p=_REGION_SHARES).astype(np.int8)
    acq = rng.choice(len(ACQUISITION_CHANNELS), size=n, p=_ACQ_SHARES).astype(np.int8)
    payment = rng.choice(len(PAYMENT_METHODS), size=n, p=_PAYMENT_SHARES).astype(np.int8)
    age = np.clip(np.rint(rng.normal(42.0, 13.0, size=n)), 18, 80).astype(np.int64)
    age_missing = rng.random(n) < _AGE_MISSING_SHARE
    tickets = rng.negative_binomial(1.5, 1.5 / (1.5 + np.where(plan == 0, 1.4, 1.0)), size=n).astype(np.int64)

    cutoff_day = history_days - 1 - churn_window_days  # signups on this day are before the cutoff
    after = rng.random(n) < _POST_CUTOFF_SIGNUP_SHARE
    before_day = rng.integers(0, cutoff_day + 1, size=n)
    after_day = rng.integers(cutoff_day + 1, history_days, size=n)
    signup_day = np.where(after, after_day, before_day).astype(np.int64)
    return {
        "plan": plan,
        "region": region,
        "acq": acq,
        "payment": payment,
        "age": age,
        "age_missing": age_missing,
        "tickets": tickets,
        "signup_day": signup_day,
    }


def _draw_churn(
    rng: np.random.Generator, attrs: dict[str, np.ndarray], signup_s: np.ndarray, cutoff_s: int,
    shift: Shift = NO_SHIFT,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw latent churners and the second at which each churner stops buying.

    Returns:
        ``(churner, stop_s)``; ``stop_s`` is meaningful only for churners and is
        always at least one day before the cutoff (and not before signup).
    """
    n = signup_s.size
    logit = (
        _PLAN_LOGIT[attrs["plan"]]
        + _ACQ_LOGIT[attrs["acq"]]
        + _PAYMENT_LOGIT[attrs["payment"]]
        + _TICKET_LOGIT * np.minimum(attrs["tickets"], 6)
        + _AGE_LOGIT * (attrs["age"] - 45)
        + np.asarray(shift.region_churn_logit)[attrs["region"]]
    )
    eligible = signup_s <= cutoff_s
    intercept = _calibrate_intercept(logit[eligible], _TARGET_CHURN_RATE)
    prob = 1.0 / (1.0 + np.exp(-(intercept + logit)))
    churner = eligible & (rng.random(n) < prob)

    last_s = cutoff_s - _DAY  # churners buy nothing in the last day before the cutoff either
    recent = rng.random(n) < _CHURN_RECENT_SHARE
    stop_recent = last_s - np.floor(rng.random(n) * shift.churn_recent_days * _DAY).astype(np.int64)
    span = np.maximum(last_s - signup_s, 0)
    stop_any = signup_s + np.floor(rng.random(n) * span).astype(np.int64)
    stop_s = np.where(recent & (stop_recent >= signup_s), stop_recent, stop_any)
    return churner, np.minimum(np.maximum(stop_s, signup_s), np.maximum(last_s, signup_s))


def _calibrate_intercept(logit: np.ndarray, target: float) -> float:
    """Bisect the intercept so that the mean churn probability equals ``target``."""
    if logit.size == 0:
        return 0.0
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(np.mean(1.0 / (1.0 + np.exp(-(mid + logit))))) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _draw_purchase_times(
    rng: np.random.Generator,
    attrs: dict[str, np.ndarray],
    churner: np.ndarray,
    signup_s: np.ndarray,
    stop_s: np.ndarray,
    cutoff_s: int,
    end_s: int,
    avg_transactions: float,
    fade_factor: float = _FADE_FACTOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw purchase times as a two-segment inhomogeneous Poisson process.

    Active customers buy at rate ``r`` on ``[signup, cutoff]`` and
    ``(cutoff, end]``; churners buy at rate ``r`` until 90 days before they
    stop and at ``r / 2`` afterwards, until they stop. Rates are scaled so the
    expected number of purchases per customer is ``avg_transactions``.

    Returns:
        ``(customer_index, timestamp_seconds)`` grouped by customer.
    """
    n = signup_s.size
    active = ~churner
    mid_active = np.maximum(signup_s, cutoff_s + 1)
    mid_churn = np.maximum(signup_s, stop_s - _FADE_DAYS * _DAY)
    mid = np.where(active, mid_active, mid_churn)
    seg_start = np.stack([signup_s, mid], axis=1)
    seg_end = np.stack([mid, np.where(active, end_s + 1, np.maximum(stop_s, mid_churn))], axis=1)
    seg_len = seg_end - seg_start
    seg_factor = np.stack([np.ones(n), np.where(active, 1.0, fade_factor)], axis=1)

    base = rng.gamma(_RATE_GAMMA_SHAPE, 1.0 / _RATE_GAMMA_SHAPE, size=n) * _PLAN_RATE[attrs["plan"]]
    exposure = (seg_len * seg_factor).sum(axis=1)
    rate = base * (avg_transactions * n / float(np.sum(base * exposure)))  # purchases per second
    counts = rng.poisson(rate[:, None] * seg_factor * seg_len)
    # Actives almost always buy in the final window (small label noise remains).
    force = active & (counts[:, 1] == 0) & (rng.random(n) < _ACTIVE_FINAL_PURCHASE_PROB)
    counts[:, 1] = np.where(force, 1, counts[:, 1])

    flat_counts = counts.ravel()
    segment = np.repeat(np.arange(2 * n, dtype=np.int64), flat_counts)
    offset = np.floor(rng.random(segment.size) * seg_len.ravel()[segment]).astype(np.int64)
    ts = seg_start.ravel()[segment] + offset
    return (segment // 2).astype(np.int32), ts


def _draw_purchase_details(
    rng: np.random.Generator, attrs: dict[str, np.ndarray], cust: np.ndarray, ts: np.ndarray,
    amount_scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Draw category, channel, quantity and amount for each purchase."""
    n = attrs["plan"].size
    cat_pref = rng.gamma(_CATEGORY_SHARES * _CATEGORY_CONCENTRATION, size=(n, len(CATEGORIES)))
    category = _sample_per_customer(rng, cat_pref, cust)

    age_group = np.digitize(attrs["age"], [30, 51])
    chan_pref = rng.gamma(_CHANNEL_BY_AGE[age_group] * _CHANNEL_CONCENTRATION)
    channel = _sample_per_customer(rng, chan_pref, cust)

    quantity = 1 + rng.poisson(_CATEGORY_EXTRA_QTY[category])
    mean = (_PLAN_MEAN_AMOUNT[attrs["plan"][cust]] * _CATEGORY_AMOUNT[category] * (1.0 + 0.35 * (quantity - 1))
            * amount_scale)
    raw = rng.standard_gamma(_AMOUNT_GAMMA_SHAPE, size=cust.size) * (mean * (100.0 / _AMOUNT_GAMMA_SHAPE))
    cents = np.clip(np.rint(raw), 50, 10_000_000).astype(np.int32)
    return {
        "cust": cust,
        "ts": ts,
        "cents": cents,
        "quantity": quantity.astype(np.int16),
        "category": category,
        "channel": channel,
        "refunded": np.zeros(cust.size, dtype=bool),
    }


def _sample_per_customer(
    rng: np.random.Generator, weights: np.ndarray, cust: np.ndarray, chunk: int = 2_000_000
) -> np.ndarray:
    """Sample one category per row from the row's customer-specific weights.

    Args:
        rng: Random generator.
        weights: ``(n_customers, k)`` non-negative weights.
        cust: Customer index of each row.
        chunk: Rows processed per vectorised step (bounds temporary memory).

    Returns:
        ``int8`` category codes in ``[0, k)``.
    """
    k = weights.shape[1]
    totals = weights.sum(axis=1, keepdims=True)
    cum = np.cumsum(weights / np.where(totals > 0, totals, 1.0), axis=1)[:, :-1]
    u = rng.random(cust.size)
    out = np.empty(cust.size, dtype=np.int8)
    for lo in range(0, cust.size, chunk):  # loop over chunks, vectorised within
        hi = min(lo + chunk, cust.size)
        out[lo:hi] = (u[lo:hi, None] >= cum[cust[lo:hi]]).sum(axis=1)
    return np.minimum(out, k - 1)


def _add_refunds(
    rng: np.random.Generator, tx: dict[str, np.ndarray], n_customers: int
) -> dict[str, np.ndarray]:
    """Append refund rows (negative amount) for ~2% of purchases.

    A refund happens within 30 days after its purchase and strictly before the
    customer's last purchase, so refunds never change recency or the labels.
    """
    cust, ts = tx["cust"], tx["ts"]
    last = np.full(n_customers, np.iinfo(np.int64).min, dtype=np.int64)
    if ts.size:
        np.maximum.at(last, cust, ts)
    room = np.minimum(last[cust] - ts, _REFUND_MAX_DAYS * _DAY)
    chosen = np.flatnonzero((room >= 3600) & (rng.random(ts.size) < _REFUND_RATE))
    delay = 1 + np.floor(rng.random(chosen.size) * (room[chosen] - 1)).astype(np.int64)
    refunds = {key: values[chosen] for key, values in tx.items()}
    refunds["ts"] = ts[chosen] + delay
    refunds["cents"] = -tx["cents"][chosen]
    refunds["refunded"] = np.ones(chosen.size, dtype=bool)
    return {key: np.concatenate([tx[key], refunds[key]]) for key in tx}


def _chronological_order(ts: np.ndarray) -> np.ndarray:
    """Stable argsort of timestamps (ties keep generation order).

    Packs ``(timestamp - min) << bits | row`` into one int64 key: a plain value
    sort of that key is several times faster than a stable argsort.
    """
    if ts.size == 0:
        return np.arange(0, dtype=np.int64)
    rel = ts - ts.min()
    bits = int(ts.size - 1).bit_length()
    if int(rel.max()).bit_length() + bits > 62:
        return np.argsort(ts, kind="stable")
    keys = np.sort((rel << bits) | np.arange(ts.size, dtype=np.int64))
    return keys & ((1 << bits) - 1)


def _rule_labels(
    cust: np.ndarray, ts: np.ndarray, signup_s: np.ndarray, churn_window_days: int, default_end_s: int
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the downstream labelling rule to the generated transactions.

    Returns:
        ``(eligible, churned)``: a per-customer mask of customers who signed up
        on or before the cutoff, and their 0/1 ``int64`` labels.
    """
    end = int(ts.max()) if ts.size else default_end_s
    cutoff = end - churn_window_days * _DAY
    recent = np.bincount(cust[ts > cutoff], minlength=signup_s.size)
    eligible = signup_s <= cutoff
    return eligible, (recent[eligible] == 0).astype(np.int64)


# --------------------------------------------------------------------------- #
# Frame building and formatting helpers
# --------------------------------------------------------------------------- #


def _fixed_width_ids(numbers: np.ndarray, width: int, prefix: str = "") -> pa.LargeStringArray:
    """Format non-negative integers as zero-padded strings without Python loops over rows."""
    numbers = np.asarray(numbers)
    numbers = numbers.astype(np.int32 if numbers.size == 0 or numbers.max() < 2**31 else np.int64)
    head = prefix.encode("ascii")
    row = len(head) + width
    chars = np.empty((numbers.size, row), dtype=np.uint8)
    if head:
        chars[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    rest = numbers.copy()
    digit = np.empty_like(rest)
    digit_chars = np.empty(rest.size, dtype=np.uint8)
    for pos in range(row - 1, len(head) - 1, -1):  # one vectorised step per digit position
        np.remainder(rest, 10, out=digit)
        np.add(digit, ord("0"), out=digit_chars, casting="unsafe")
        chars[:, pos] = digit_chars
        rest //= 10
    offsets = np.arange(0, (numbers.size + 1) * row, row, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(numbers.size, pa.py_buffer(offsets), pa.py_buffer(chars))


def _categorical(codes: np.ndarray, categories: Sequence[str]) -> pd.Categorical[str]:
    """Build a categorical with fixed categories from integer codes."""
    return pd.Categorical.from_codes(codes.astype(np.int8), categories=pd.Index(list(categories)))


def _customers_frame(
    attrs: dict[str, np.ndarray], customer_ids: pa.Array, start_day: np.datetime64
) -> pd.DataFrame:
    """Assemble the customers DataFrame in ``CUSTOMER_COLUMNS`` order."""
    age = pd.array(attrs["age"], dtype="Int64")
    age[attrs["age_missing"]] = pd.NA
    signup = (start_day + attrs["signup_day"].astype("timedelta64[D]")).astype("datetime64[s]")
    return pd.DataFrame(
        {
            "customer_id": pd.array(customer_ids, dtype="str"),
            "signup_date": signup,
            "plan": _categorical(attrs["plan"], PLANS),
            "region": _categorical(attrs["region"], REGIONS),
            "acquisition_channel": _categorical(attrs["acq"], ACQUISITION_CHANNELS),
            "age": age,
            "payment_method": _categorical(attrs["payment"], PAYMENT_METHODS),
            "support_tickets": attrs["tickets"],
        }
    )


def _transactions_frame(tx: dict[str, np.ndarray], id_width: int) -> pd.DataFrame:
    """Assemble the chronologically ordered transactions DataFrame."""
    n = tx["ts"].size
    width = max(8, len(str(n)))
    timestamps = pd.DatetimeIndex(tx["ts"].astype("datetime64[s]")).tz_localize("UTC")
    return pd.DataFrame(
        {
            "transaction_id": pd.array(_fixed_width_ids(np.arange(1, n + 1), width, "t"), dtype="str"),
            "customer_id": pd.array(_fixed_width_ids(tx["cust"] + 1, id_width), dtype="str"),
            "timestamp": timestamps,
            "amount": tx["cents"] / 100.0,
            "quantity": tx["quantity"].astype(np.int64),
            "category": _categorical(tx["category"], CATEGORIES),
            "channel": _categorical(tx["channel"], CHANNELS),
            "status": _categorical(tx["refunded"].astype(np.int8), STATUSES),
        }
    )


def _string_piece(column: pd.Series) -> pa.Array:
    """Return a column slice as a pyarrow ``string`` array (categoricals decoded)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = pa.array([str(c) for c in column.cat.categories], pa.string())
        return categories.take(pa.array(column.cat.codes.to_numpy()))
    array = pa.array(column)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.string())


def _epoch_seconds(column: pd.Series) -> np.ndarray:
    """Convert a datetime column (naive = UTC) to int64 epoch seconds."""
    values = pd.to_datetime(column, utc=True).dt.as_unit("s")
    return values.astype("int64").to_numpy()


def _timestamp_piece(seconds: np.ndarray, time_table: pa.Array) -> pa.Array:
    """Format epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ`` via day/second lookup tables."""
    days = seconds // _DAY
    first = int(days.min())
    day_range = np.arange(first, int(days.max()) + 1).astype("datetime64[D]")
    day_table = pa.array(np.datetime_as_string(day_range, unit="D").tolist(), pa.string())
    return pc.binary_join_element_wise(
        day_table.take(pa.array(days - first)), time_table.take(pa.array(seconds % _DAY)), ""
    )


def _amount_piece(amount: np.ndarray, cents_table: pa.Array) -> pa.Array:
    """Format amounts as JSON numbers with exactly two decimals (e.g. ``-12.30``)."""
    cents = np.rint(np.asarray(amount, dtype=np.float64) * 100.0).astype(np.int64)
    sign = pa.array(["", "-"], pa.string()).take(pa.array((cents < 0).astype(np.int8)))
    magnitude = np.abs(cents)
    whole = pc.cast(pa.array(magnitude // 100), pa.string())
    return pc.binary_join_element_wise(sign, whole, ".", cents_table.take(pa.array(magnitude % 100)), "")


def _time_of_day_table() -> pa.Array:
    """``THH:MM:SSZ`` for each second of a day."""
    chars = np.empty((_DAY, 10), dtype=np.uint8)
    chars[:, :9] = time_of_day_chars()
    chars[:, 9] = ord("Z")
    offsets = np.arange(0, (_DAY + 1) * 10, 10, dtype=np.int32)
    return pa.StringArray.from_buffers(_DAY, pa.py_buffer(offsets), pa.py_buffer(chars))


def _json_chunk(frame: pd.DataFrame, time_table: pa.Array, cents_table: pa.Array, suffix: str) -> pa.Buffer:
    """Render a slice of transactions as JSON objects, each followed by ``suffix``."""
    pieces = [
        '{"transaction_id":"',
        _string_piece(frame["transaction_id"]),
        '","customer_id":"',
        _string_piece(frame["customer_id"]),
        '","timestamp":"',
        _timestamp_piece(_epoch_seconds(frame["timestamp"]), time_table),
        '","amount":',
        _amount_piece(frame["amount"].to_numpy(), cents_table),
        ',"quantity":',
        pc.cast(pa.array(frame["quantity"].to_numpy(dtype=np.int64)), pa.string()),
        ',"category":"',
        _string_piece(frame["category"]),
        '","channel":"',
        _string_piece(frame["channel"]),
        '","status":"',
        _string_piece(frame["status"]),
        '"}' + suffix,
    ]
    lines = pc.binary_join_element_wise(*pieces, "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    return lines.buffers()[2][int(offsets[0]) : int(offsets[-1])]


def _write_transactions(transactions: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write transactions as JSON Lines or a JSON array, ``_JSONL_CHUNK_ROWS`` rows at a time."""
    frame = transactions.loc[:, list(TRANSACTION_COLUMNS)]
    time_table = _time_of_day_table()
    cents_table = pa.array([f"{c:02d}" for c in range(100)], pa.string())
    suffix = "\n" if fmt == "jsonl" else ",\n"
    n = len(frame)
    with open(path, "wb") as handle:
        if fmt == "array":
            handle.write(b"[\n" if n else b"[")
        for lo in range(0, n, _JSONL_CHUNK_ROWS):
            hi = min(lo + _JSONL_CHUNK_ROWS, n)
            chunk = _json_chunk(frame.iloc[lo:hi], time_table, cents_table, suffix)
            if fmt == "array" and hi == n:
                chunk = chunk[: chunk.size - 2]  # drop the trailing ",\n" of the last object
            handle.write(chunk)
            if n > _JSONL_CHUNK_ROWS:
                _LOG.info("  wrote transactions %d/%d", hi, n)
        if fmt == "array":
            handle.write(b"\n]\n" if n else b"]\n")


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


class _ElapsedFormatter(logging.Formatter):
    """Prefix log lines with the seconds elapsed since the CLI started."""

    def __init__(self) -> None:
        super().__init__()
        self._start = time.perf_counter()

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as ``[  12.3s] message``."""
        return f"[{time.perf_counter() - self._start:7.1f}s] {record.getMessage()}"


_CLI_DESCRIPTION = """\
Generate seeded, realistic raw customer-churn data: a 730-day history ending
2026-06-30 with ~N x F purchases (plus ~2% refund rows).

Files written to --out:
  customers.csv      customer_id (zero-padded text), signup_date (YYYY-MM-DD), plan,
                     region, acquisition_channel, age (empty when missing, ~2%),
                     payment_method, support_tickets [, churned with --with-label]
  transactions.json  JSON Lines (or one JSON array with --format array): transaction_id,
                     customer_id, timestamp (UTC, ...Z), amount (2 decimals, negative
                     for refunds), quantity, category, channel, status (completed|refunded)

Churn signal: with end = latest transaction and cutoff = end - 90 days, a customer who
signed up on or before the cutoff is churned when they have no transaction after the
cutoff. Churners (~24%) are drawn from a latent propensity (basic plan, paid_search or
social acquisition, more support tickets and younger age raise it; autopay and premium
lower it), stop buying mostly in the 120 days before the cutoff and buy at half their
rate in the 90 days before they stop; active customers keep buying until the end.
The same seed always produces byte-identical files.
"""


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command-line arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m churn.sample_data",
        description=_CLI_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--customers", type=int, default=5000, metavar="N", help="number of customers (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=42, metavar="S", help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/raw"),
        metavar="DIR",
        help="output directory (default: %(default)s)",
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=("jsonl", "array"),
        default="jsonl",
        help="transactions.json layout: JSON Lines or a single JSON array (default: %(default)s)",
    )
    parser.add_argument(
        "--transactions-per-customer",
        type=float,
        default=20.0,
        metavar="F",
        help="expected purchases per customer over the 730-day history (default: %(default)s)",
    )
    parser.add_argument(
        "--with-label", action="store_true", help="add the true 'churned' label column to customers.csv"
    )
    parser.add_argument(
        "--end-date",
        type=dt.date.fromisoformat,
        default=dt.date(2026, 6, 30),
        metavar="YYYY-MM-DD",
        help="last day of the simulated 730-day history (default: %(default)s)",
    )
    parser.add_argument(
        "--shift",
        choices=sorted(SHIFTS),
        default="none",
        help="'drifted' simulates a changed world for drift demos: prices +30%%, more basic plans, a "
        "competitor in the south, churners who leave abruptly (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.customers < 1:
        parser.error("--customers must be >= 1")
    if not args.transactions_per_customer > 0:
        parser.error("--transactions-per-customer must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command-line interface.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        Process exit code (0 on success).
    """
    args = _parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ElapsedFormatter())
    previous = (_LOG.level, _LOG.propagate)
    _LOG.addHandler(handler)
    _LOG.setLevel(logging.INFO)
    _LOG.propagate = False
    try:
        started = time.perf_counter()
        _LOG.info(
            "generating %d customers (seed %d, ~%g purchases each)",
            args.customers,
            args.seed,
            args.transactions_per_customer,
        )
        data = generate(args.customers, args.seed, end_date=args.end_date,
                        avg_transactions=args.transactions_per_customer, shift=SHIFTS[args.shift])
        _LOG.info("writing %s and %s (%s) to %s", CUSTOMERS_FILE, TRANSACTIONS_FILE, args.fmt, args.out)
        paths = write_raw(data, args.out, fmt=args.fmt, include_label=args.with_label)
        print(
            f"sample data: {len(data.customers)} customers, {len(data.transactions)} transactions, "
            f"churn rate {data.labels.mean():.1%} of {len(data.labels)} labelled -> "
            f"{paths['customers']}, {paths['transactions']} in {_since(started):.1f}s"
        )
    finally:
        _LOG.removeHandler(handler)
        _LOG.setLevel(previous[0])
        _LOG.propagate = previous[1]
    return 0


if __name__ == "__main__":
    sys.exit(main())
