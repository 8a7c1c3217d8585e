"""The one feature definition: which features a schema holds, and how they are computed from cleaned data.

:func:`derive_schema` decides which features exist for a data set (feature_engineering writes it as
``feature_schema.json``); :func:`features_for` computes a frozen schema's features from customers and
transactions. Training, the promotion gate (the champion's features with the champion's own schema),
batch scoring and the demo all call :func:`features_for`, so a feature means the same everywhere; the
serving container validates requests against the saved schema and the drift check picks a metric per
feature from it.

Only transactions on or before the cutoff are used, so nothing from the label window leaks in.
Without a transaction log (customers-only data), the schema holds ``tenure_days`` and the customer
attributes only: no transaction feature is invented as a constant.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.schema import ID_COLUMN, LABEL_COLUMN, FeatureSchema, FeatureSpec

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from churn.interim import Interim

FEATURE_SET_VERSION = 1
MIX_FIELDS = ("category", "channel")
MAX_MIX_VALUES = 8
RESERVED_CUSTOMER_COLUMNS = frozenset({ID_COLUMN, "signup_date", LABEL_COLUMN})
DAY_NS = 86_400 * 10**9
# The transaction columns derive_schema and features_for use (of those a file has).
TRANSACTION_COLUMNS = (ID_COLUMN, "timestamp", "amount", "is_refund", *MIX_FIELDS)
_NUMERIC_PROBE = 1000
# A text attribute with more distinct values than this, and more than half as many as customers with a
# value, identifies customers (an email, a name) rather than describing them: it is left out of the schema.
MAX_ATTRIBUTE_CATEGORIES = 100
TENURE = "tenure_days"
_TENURE_DESCRIPTION = "days from signup to the cutoff"
# Computed from the transaction log (tenure needs only signup_date, so it is not among them).
_DERIVED = (
    ("recency_days", "days from the last purchase to the cutoff (tenure when there is none)"),
    ("frequency", "purchases up to the cutoff"),
    ("frequency_30d", "purchases in the 30 days before the cutoff"),
    ("frequency_90d", "purchases in the 90 days before the cutoff"),
    ("monetary_total", "net amount up to the cutoff (refunds subtract)"),
    ("monetary_avg", "average purchase amount"),
    ("monetary_90d", "purchase amount in the 90 days before the cutoff"),
    ("trend_frequency", "log((purchases last 90d + 1) / (purchases the 90d before + 1)); < 0 means slowing"),
    ("trend_monetary", "log((amount last 90d + 1) / (amount the 90d before + 1))"),
    ("refund_count", "refunds up to the cutoff"),
)
TRANSACTION_FEATURES = frozenset(name for name, _ in _DERIVED)
# Attribute names that would collide with these get an ``attr_`` prefix, with or without a log, so an
# attribute's feature name does not depend on whether the data had transactions.
_RESERVED_NAMES = TRANSACTION_FEATURES | {TENURE}
# The transaction columns every transaction feature needs.
_REQUIRED_TRANSACTION_COLUMNS = (ID_COLUMN, "timestamp", "amount", "is_refund")


class FeatureInputError(ValueError):
    """The data cannot give a schema's features; the message names what is missing and the fix."""


def _sanitize(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_") or "value"


def _is_numeric_text(values: pd.Series) -> bool:
    present = values[values.astype(str).str.strip() != ""]
    if present.empty:
        return False
    # Text columns fail on their first values: probe those before converting a million strings.
    if not pd.to_numeric(present.iloc[:_NUMERIC_PROBE], errors="coerce").notna().all():
        return False
    return bool(pd.to_numeric(present, errors="coerce").notna().all())


def derive_schema(customers: pd.DataFrame, transactions: pd.DataFrame | None, cutoff: pd.Timestamp,
                  churn_window_days: int) -> FeatureSchema:
    """Decides the feature set for this data.

    ``tenure_days`` always; the transaction features (recency, frequency, monetary, trends, refunds)
    only with a transaction log. Customer attributes (every column but ``customer_id``,
    ``signup_date``, ``churned``) become numeric features when all their non-empty values are
    numbers, categorical otherwise. A text attribute with more than MAX_ATTRIBUTE_CATEGORIES
    values, more than half as many as the customers that have one, is an identifier: it goes to
    ``left_out`` with the reason instead. For ``category`` and ``channel`` (when the transactions have
    them), the most frequent values before the cutoff (at most 8) get a purchase-share feature each.

    Args:
        customers: Cleaned customers (attributes as text).
        transactions: Cleaned transactions, or None when the data has no transaction log
            (customers-only data): then no transaction feature is in the schema.
        cutoff: Feature cutoff (UTC).
        churn_window_days: Label window, recorded in the schema.

    Returns:
        The schema.
    """
    specs = [FeatureSpec(TENURE, "numeric", "customer", _TENURE_DESCRIPTION)]
    taken = set(_RESERVED_NAMES)
    mix: dict[str, list[str]] = {}
    if transactions is not None:
        specs += [FeatureSpec(name, "numeric", "transactions", desc) for name, desc in _DERIVED]
        before = transactions["timestamp"] <= cutoff
        for fld in MIX_FIELDS:
            if fld not in transactions.columns:
                continue
            counts = _value_counts(transactions[fld], (before & ~transactions["is_refund"]).to_numpy(dtype=bool))
            ranked = sorted((v for v in counts if v != ""), key=lambda v: (-counts[v], v))
            values = ranked[:MAX_MIX_VALUES]
            if not values:
                continue
            mix[fld] = values
            for value in values:
                name = _mix_name(fld, value)
                specs.append(FeatureSpec(name, "numeric", "transactions", f"share of purchases with {fld} = {value!r}"))
                taken.add(name)
    left_out: dict[str, str] = {}
    for col in customers.columns:
        if col in RESERVED_CUSTOMER_COLUMNS:
            continue
        text = customers[col].astype(str).str.strip()
        empty = int((text == "").sum())
        nullable = empty > 0
        numeric = _is_numeric_text(text)
        cats = () if numeric else tuple(sorted(v for v in text.unique() if v != ""))
        present = len(text) - empty
        if len(cats) > MAX_ATTRIBUTE_CATEGORIES and 2 * len(cats) > present:
            left_out[str(col)] = (f"{len(cats)} different values in {present} customers: an identifier, "
                                  f"not a feature")
            continue
        name = _sanitize(col)
        if name in taken:
            name = f"attr_{name}"
        taken.add(name)
        if numeric:
            specs.append(FeatureSpec(name, "numeric", "customer", f"customer attribute {col!r}", nullable=nullable))
        else:
            specs.append(FeatureSpec(name, "categorical", "customer", f"customer attribute {col!r}",
                                     nullable=nullable, categories=cats))
    return FeatureSchema(version=FEATURE_SET_VERSION, features=tuple(specs), cutoff=cutoff.isoformat(),
                         churn_window_days=churn_window_days, mix_columns=mix, left_out=left_out)


def _mix_name(fld: str, value: str) -> str:
    return f"{fld}_share_{_sanitize(value)}"


def transaction_feature_names(schema: FeatureSchema) -> list[str]:
    """The schema's features computed from the transaction log (empty for a customers-only model).

    Decided by name, so schemas saved before ``tenure_days`` was marked a customer feature read the same.
    """
    mix = {_mix_name(fld, v) for fld, values in schema.mix_columns.items() for v in values}
    return [name for name in schema.names if name in TRANSACTION_FEATURES or name in mix]


def describe_features(schema: FeatureSchema) -> dict:
    """Counts of the schema's features by origin, for run summaries.

    Returns:
        ``total``, ``transaction`` and ``customer`` counts; ``transaction_note`` is
        ``"none (no transaction log)"`` when no feature comes from transactions, else ``""``;
        ``left_out``: the attributes that are not features, with the reason.
    """
    n_tx = len(transaction_feature_names(schema))
    return {"total": len(schema.features), "transaction": n_tx, "customer": len(schema.features) - n_tx,
            "transaction_note": "" if n_tx else "none (no transaction log)", "left_out": dict(schema.left_out)}


def _value_counts(values: pd.Series, mask: np.ndarray) -> dict[str, int]:
    """``values[mask].dropna().astype(str).value_counts()`` as a dict; text in pyarrow is counted by pyarrow,
    a categorical by its codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()[mask]
        counts = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories))
        return {str(v): int(c) for v, c in zip(values.cat.categories, counts, strict=True) if c}
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        counted = pc.value_counts(pc.filter(pa.chunked_array(pa.array(values)), pa.array(mask)))
        found, counts = counted.field("values").to_pylist(), counted.field("counts").to_pylist()
        return {v: int(c) for v, c in zip(found, counts, strict=True) if v is not None}
    tallies = values[mask].dropna().astype(str).value_counts()
    return {str(v): int(c) for v, c in tallies.items()}


def _attribute_source(schema: FeatureSchema, customers: pd.DataFrame) -> dict[str, str]:
    """Maps attribute feature names back to customers.csv columns (as :func:`derive_schema` named them)."""
    out = {}
    for col in customers.columns:
        if col in RESERVED_CUSTOMER_COLUMNS:
            continue
        for name in (_sanitize(col), f"attr_{_sanitize(col)}"):
            if name in _RESERVED_NAMES or name in out or name not in schema.names:
                continue
            if schema.get(name).source == "customer":
                out[name] = col
                break
    return out


def _arrow_text(values: pd.Series) -> pa.ChunkedArray | None:
    """The pyarrow strings behind a text column without missing values (no copy), else None."""
    import pyarrow as pa

    if not (isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow") or values.hasnans:
        return None
    return pa.chunked_array(pa.array(values))


def _positions(ids: pd.Index, values: pd.Series) -> np.ndarray:
    """``ids.get_indexer(values.astype(str))``: each value's position in the unique ``ids``, -1 if absent."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = _arrow_text(values)
    if text is None or not ids.is_unique or ids.hasnans:
        return ids.get_indexer(pd.Index(values.astype(str)))
    id_set = pa.array(ids.to_numpy(), type=text.type)
    positions = pc.index_in(text, value_set=id_set)
    return np.asarray(pc.fill_null(positions, -1), dtype=np.intp)


def text_isin(values: pd.Series | pd.Index, allowed: pd.Series | pd.Index) -> np.ndarray:
    """``values.astype(str).isin(allowed.astype(str))`` as a numpy mask, by pyarrow's hash lookup:
    pandas' ``isin`` on Arrow-backed strings walks the allowed values in Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def text(column: pd.Series | pd.Index) -> pa.Array | pa.ChunkedArray:
        arrow = _arrow_text(pd.Series(column, copy=False))
        if arrow is not None:
            return arrow.cast(pa.large_string())
        return pa.array(column.astype(str).to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)

    return pc.is_in(text(values), value_set=text(allowed)).to_numpy(zero_copy_only=False).astype(bool)


def _value_codes(column: pd.Series, values: list[str]) -> np.ndarray:
    """``pd.Categorical(column.to_numpy().astype(str), categories=values).codes`` (as int32)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column.dtype, pd.CategoricalDtype) and not column.hasnans and len(set(values)) == len(values):
        where = {v: i for i, v in enumerate(values)}
        lookup = np.array([where.get(str(c), -1) for c in column.cat.categories], dtype=np.int32)
        return lookup[column.cat.codes.to_numpy()] if len(lookup) else np.full(len(column), -1, np.int32)
    text = _arrow_text(column)
    if text is None or len(set(values)) < len(values) or not all(isinstance(v, str) for v in values):
        return pd.Categorical(column.to_numpy().astype(str), categories=values).codes.astype(np.int32)
    codes = pc.index_in(text, value_set=pa.array(values, text.type))
    return np.asarray(pc.fill_null(codes, -1), dtype=np.int32)


def features_for(schema: FeatureSchema, customers: pd.DataFrame, transactions: pd.DataFrame | None,
                 cutoff: pd.Timestamp) -> pd.DataFrame:
    """Computes a model's features from raw-shaped data: the one feature definition.

    Training and the promotion gate (the champion's features with the champion's schema) call it;
    batch scoring, and anything else that turns raw data into model inputs, must call it too, so a
    feature means the same everywhere. The schema alone decides what is computed: a mix value absent
    from these transactions gives a share of 0, a value the schema does not list counts in no share
    column.

    Args:
        schema: A model's frozen feature schema (from :func:`derive_schema` or a model folder).
        customers: Cleaned customers: ``customer_id``, ``signup_date`` (UTC) and the attribute
            columns the schema takes (text).
        transactions: Cleaned transactions (``customer_id``, ``timestamp`` UTC, ``amount``,
            ``is_refund`` and the schema's mix fields), or None when there is no transaction log.
            Only those on or before ``cutoff`` are used.
        cutoff: Feature cutoff (UTC).

    Returns:
        ``customer_id`` then the schema's features, one row per customer, in ``customers`` order.

    Raises:
        FeatureInputError: A column the schema needs is missing (named), or the schema needs
            transaction features and there is no transaction log: computing them as if nobody had
            bought anything would score every customer as a churner, so that is refused.
    """
    _check_inputs(schema, customers, transactions)
    ids = pd.Index(customers[ID_COLUMN].astype(str))
    n = len(ids)
    tenure = np.zeros(n)
    if TENURE in schema.names or "recency_days" in schema.names:
        tenure = np.clip((cutoff - customers["signup_date"]).dt.total_seconds().to_numpy() / 86_400, 0, None)
    out = {TENURE: tenure}
    if transaction_feature_names(schema):
        assert transactions is not None  # _check_inputs refused a schema needing them without a log
        out.update(_transaction_features(schema, ids, transactions, cutoff, tenure))
    attr_cols = _attribute_source(schema, customers)
    frame = pd.DataFrame({ID_COLUMN: ids.to_numpy()})
    for spec in schema.features:
        if spec.name in out:
            frame[spec.name] = out[spec.name]
        elif spec.name in attr_cols:
            text = customers[attr_cols[spec.name]].astype(str).str.strip().to_numpy()
            if spec.kind == "numeric":
                frame[spec.name] = pd.to_numeric(pd.Series(text).replace("", None), errors="coerce").astype("float64")
            else:
                frame[spec.name] = pd.Series(text, dtype=object).replace("", None)
        else:
            raise FeatureInputError(
                f"feature {spec.name!r} of the schema (v{schema.version}) cannot be computed: its customers.csv "
                f"column is missing ({spec.description or 'customers.csv attribute'}). Add the column to "
                f"customers.csv or retrain with a new schema."
            )
    return frame


def _check_inputs(schema: FeatureSchema, customers: pd.DataFrame, transactions: pd.DataFrame | None) -> None:
    """Raises :class:`FeatureInputError` naming the first columns the schema needs and the data lacks."""
    needed = [ID_COLUMN]
    if TENURE in schema.names or "recency_days" in schema.names:
        needed.append("signup_date")
    missing = [c for c in needed if c not in customers.columns]
    if missing:
        raise FeatureInputError(f"customers lack column(s) {missing} that feature schema v{schema.version} needs; "
                                f"give cleaned customers (customers.csv columns, see the raw data contract).")
    tx_names = transaction_feature_names(schema)
    if not tx_names:
        return
    if transactions is None:
        shown = ", ".join(tx_names[:4]) + (", ..." if len(tx_names) > 4 else "")
        raise FeatureInputError(
            f"this model's feature schema (v{schema.version}) needs transaction features ({shown}; "
            f"{len(tx_names)} in all) and the data has no transaction log. Give transactions.json, or use "
            f"a model trained on the customer attributes only."
        )
    needed = [*_REQUIRED_TRANSACTION_COLUMNS, *schema.mix_columns]
    missing = [c for c in needed if c not in transactions.columns]
    if missing:
        raise FeatureInputError(f"transactions lack column(s) {missing} that feature schema v{schema.version} "
                                f"needs; add them to transactions.json or retrain with a new schema.")


def _transaction_features(schema: FeatureSchema, ids: pd.Index, transactions: pd.DataFrame,
                          cutoff: pd.Timestamp, tenure: np.ndarray) -> dict[str, np.ndarray]:
    """The transaction features (and the mix shares the schema lists) per customer of ``ids``."""
    n = len(ids)
    code = _positions(ids, transactions[ID_COLUMN])
    ts_ns = transactions["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    keep = (code >= 0) & (ts_ns <= cutoff.value)
    code = code[keep]
    age = (cutoff.value - ts_ns[keep]) / DAY_NS
    amount = transactions["amount"].to_numpy(dtype=np.float64)[keep]
    refund = transactions["is_refund"].to_numpy(dtype=bool)[keep]
    buy = ~refund

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(code[mask], minlength=n).astype(np.float64)

    def total(mask: np.ndarray) -> np.ndarray:
        return np.bincount(code[mask], weights=amount[mask], minlength=n)

    recent, earlier = buy & (age < 90), buy & (age >= 90) & (age < 180)
    frequency = count(buy)
    spend = total(buy)
    last_age = np.full(n, np.inf)
    np.minimum.at(last_age, code[buy], age[buy])
    last_age[np.isinf(last_age)] = np.nan  # no purchase (ages are finite)
    out = {
        "recency_days": np.where(np.isnan(last_age), tenure, last_age),
        "frequency": frequency,
        "frequency_30d": count(buy & (age < 30)),
        "frequency_90d": count(recent),
        "monetary_total": total(np.ones_like(buy)),
        "monetary_avg": np.divide(spend, frequency, out=np.zeros(n), where=frequency > 0),
        "monetary_90d": total(recent),
        "trend_frequency": np.log((count(recent) + 1) / (count(earlier) + 1)),
        "trend_monetary": np.log((np.clip(total(recent), 0, None) + 1) / (np.clip(total(earlier), 0, None) + 1)),
        "refund_count": count(refund),
    }
    for fld, values in schema.mix_columns.items():
        codes = _value_codes(transactions[fld], values)[keep][buy]
        k = len(values)
        valid = codes >= 0
        grid = np.bincount(code[buy][valid] * k + codes[valid], minlength=n * k).reshape(n, k)
        shares = np.divide(grid, frequency[:, None], out=np.zeros(grid.shape), where=frequency[:, None] > 0)
        for j, value in enumerate(values):
            out[_mix_name(fld, value)] = shares[:, j]
    return out


def processed_splits(features: pd.DataFrame, labels: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Joins features with labels per split: ``customer_id``, features, ``churned``.

    Every labelled customer lands in its split: the row counts equal labels.csv's split counts.

    Args:
        features: Output of :func:`features_for`, with a row for every labelled customer.
        labels: ``customer_id``, ``churned``, ``split`` (train|validation) from data_prep.

    Returns:
        ``{"train": ..., "validation": ...}``.

    Raises:
        FeatureInputError: A labelled customer has no feature row, or a split is neither train nor validation.
    """
    odd = sorted(set(labels["split"].astype(str)) - {"train", "validation"})
    if odd:
        raise FeatureInputError(f"labels.csv: split values {odd[:5]} are neither 'train' nor 'validation'; "
                                f"rerun data_prep.")
    merged = labels.merge(features, on=ID_COLUMN, how="inner", validate="one_to_one")
    if len(merged) != len(labels):
        lost = labels.loc[~text_isin(labels[ID_COLUMN], merged[ID_COLUMN]), ID_COLUMN]
        raise FeatureInputError(f"{len(lost)} labelled customer(s) have no feature row "
                                f"(e.g. {lost.iloc[:3].tolist()}); every customer of labels.csv must be trained on "
                                f"or counted as excluded by data_prep.")
    cols = [ID_COLUMN, *[c for c in features.columns if c != ID_COLUMN], LABEL_COLUMN]
    return {split: merged.loc[merged["split"] == split, cols].reset_index(drop=True)
            for split in ("train", "validation")}


def interim_transactions(interim: Interim) -> pd.DataFrame | None:
    """The interim transactions, or None when data_prep found no transaction log (``has_transactions``
    false in prep_metadata.json; a missing key means there was one)."""
    return interim.transactions if interim.metadata.get("has_transactions", True) else None


def split_features(schema: FeatureSchema, interim: Interim, split: str) -> pd.DataFrame:
    """``schema``'s features for one split's customers of the interim data, with their labels.

    What the promotion gate scores a champion on: its own features of the same customers.

    Args:
        schema: A model's feature schema.
        interim: data_prep's output read back.
        split: ``train`` or ``validation``.

    Returns:
        Like a processed split file: ``customer_id``, the schema's features, ``churned``.
    """
    labels = interim.labels[interim.labels["split"] == split]
    customers = interim.customers[text_isin(interim.customers[ID_COLUMN], labels[ID_COLUMN])]
    features = features_for(schema, customers, interim_transactions(interim), interim.cutoff)
    return processed_splits(features, labels)[split]


def read_split(path: Path, schema: FeatureSchema) -> pd.DataFrame:
    """Reads a processed split with the schema's types (ids and categories stay text)."""
    dtypes = {ID_COLUMN: str, **dict.fromkeys(schema.categorical, str)}
    frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values={n: [""] for n in schema.numeric})
    for name in schema.categorical:
        frame[name] = frame[name].astype(object).where(frame[name] != "", None)
    return frame
