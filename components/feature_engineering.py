"""Stage 2 — feature_engineering: per-customer features at the cutoff.

This module is the single definition of the model's inputs: :func:`derive_schema` decides which
features exist (and writes ``feature_schema.json``), :func:`features_for` computes a schema's
features from customers and transactions. Training uses both; the promotion gate computes the
champion's features with the champion's own schema; the serving container validates requests
against the saved schema; the drift check picks a metric per feature from it.

Only transactions on or before the cutoff are used, so nothing from the label window leaks in.
Without a transaction log (customers-only data), the schema holds ``tenure_days`` and the customer
attributes only: no transaction feature is invented as a constant.

Run alone: ``python components/feature_engineering.py --interim-dir data/interim``.
"""


import argparse
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.schema import ID_COLUMN, LABEL_COLUMN, FeatureSchema, FeatureSpec

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from kfp.dsl import PythonComponent

    from churn.interim import Interim

logger = logging.getLogger(__name__)

FEATURE_SET_VERSION = 1
MIX_FIELDS = ("category", "channel")
MAX_MIX_VALUES = 8
RESERVED_CUSTOMER_COLUMNS = frozenset({ID_COLUMN, "signup_date", LABEL_COLUMN})
DAY_NS = 86_400 * 10**9
# The transaction columns derive_schema and build_features use (of those a file has).
TRANSACTION_COLUMNS = (ID_COLUMN, "timestamp", "amount", "is_refund", *MIX_FIELDS)
_NUMERIC_PROBE = 1000

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


def feature_file_name(version: int = FEATURE_SET_VERSION) -> str:
    """``customer_features_v<N>.csv``."""
    return f"customer_features_v{version}.csv"


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
    numbers, categorical otherwise. For ``category`` and ``channel`` (when the transactions have
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
    for col in customers.columns:
        if col in RESERVED_CUSTOMER_COLUMNS:
            continue
        name = _sanitize(col)
        if name in taken:
            name = f"attr_{name}"
        taken.add(name)
        values = customers[col].astype(str).str.strip()
        nullable = bool((values == "").any())
        if _is_numeric_text(values):
            specs.append(FeatureSpec(name, "numeric", "customer", f"customer attribute {col!r}", nullable=nullable))
        else:
            cats = tuple(sorted(v for v in values.unique() if v != ""))
            specs.append(FeatureSpec(name, "categorical", "customer", f"customer attribute {col!r}",
                                     nullable=nullable, categories=cats))
    return FeatureSchema(version=FEATURE_SET_VERSION, features=tuple(specs), cutoff=cutoff.isoformat(),
                         churn_window_days=churn_window_days, mix_columns=mix)


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
        ``"none (no transaction log)"`` when no feature comes from transactions, else ``""``.
    """
    n_tx = len(transaction_feature_names(schema))
    return {"total": len(schema.features), "transaction": n_tx, "customer": len(schema.features) - n_tx,
            "transaction_note": "" if n_tx else "none (no transaction log)"}


def _value_counts(values: pd.Series, mask: np.ndarray) -> dict[str, int]:
    """``values[mask].dropna().astype(str).value_counts()`` as a dict; text in pyarrow is counted by pyarrow,
    a categorical by its codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()[mask]
        counts = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories))
        return {str(v): int(c) for v, c in zip(values.cat.categories, counts) if c}
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        counted = pc.value_counts(pc.filter(pa.chunked_array(pa.array(values)), pa.array(mask)))
        return {v: int(c) for v, c in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist())
                if v is not None}
    counts = values[mask].dropna().astype(str).value_counts()
    return {str(v): int(c) for v, c in counts.items()}


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


def _arrow_text(values: pd.Series) -> "pa.ChunkedArray | None":
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
        return ids.get_indexer(values.astype(str))
    id_set = pa.array(ids.to_numpy(), type=text.type)
    positions = pc.index_in(text, value_set=id_set)
    return np.asarray(pc.fill_null(positions, -1), dtype=np.intp)


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


def build_features(customers: pd.DataFrame, transactions: pd.DataFrame | None, cutoff: pd.Timestamp,
                   schema: FeatureSchema) -> pd.DataFrame:
    """:func:`features_for` with the arguments in the older order (kept for existing callers)."""
    return features_for(schema, customers, transactions, cutoff)


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
        lost = labels.loc[~labels[ID_COLUMN].isin(merged[ID_COLUMN]), ID_COLUMN]
        raise FeatureInputError(f"{len(lost)} labelled customer(s) have no feature row "
                                f"(e.g. {lost.iloc[:3].tolist()}); every customer of labels.csv must be trained on "
                                f"or counted as excluded by data_prep.")
    cols = [ID_COLUMN, *[c for c in features.columns if c != ID_COLUMN], LABEL_COLUMN]
    return {split: merged.loc[merged["split"] == split, cols].reset_index(drop=True)
            for split in ("train", "validation")}

def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Writes a table as CSV with a header, by DuckDB (numbers in their shortest round-trip form)."""
    import duckdb

    with duckdb.connect(config={"threads": max(1, os.cpu_count() or 1)}) as con:
        con.register("frame", frame)
        con.execute(f"COPY (SELECT * FROM frame) TO '{str(path).replace(chr(39), chr(39) * 2)}' (FORMAT csv, HEADER true)")


def interim_transactions(interim: "Interim") -> pd.DataFrame | None:
    """The interim transactions, or None when data_prep found no transaction log (``has_transactions``
    false in prep_metadata.json; a missing key means there was one)."""
    return interim.transactions if interim.metadata.get("has_transactions", True) else None


def customers_to_featurize(customers: pd.DataFrame, labels: pd.DataFrame, cutoff: pd.Timestamp,
                           source: str = "cleaned_customers.csv") -> pd.DataFrame:
    """The customers that get a feature row: every labelled one, and every other one signed up by the cutoff.

    Who is trained on is data_prep's decision (labels.csv); this never drops a labelled customer.

    Args:
        customers: Cleaned customers.
        labels: labels.csv (``customer_id`` unique).
        cutoff: Feature cutoff (UTC).
        source: Name of the customers file, for errors.

    Returns:
        Those customers, in ``customers`` order.

    Raises:
        FeatureInputError: labels.csv repeats a customer or names one the customers file lacks.
    """
    ids = customers[ID_COLUMN].astype(str)
    labelled = labels[ID_COLUMN].astype(str)
    repeated = labelled[labelled.duplicated()]
    if len(repeated):
        raise FeatureInputError(f"labels.csv: customer(s) {repeated.iloc[:3].tolist()} appear more than once "
                                f"({len(repeated)} repeats); rerun data_prep.")
    unknown = labelled[~labelled.isin(ids)]
    if len(unknown):
        raise FeatureInputError(f"labels.csv: {len(unknown)} labelled customer(s) are not in {source} "
                                f"(e.g. {unknown.iloc[:3].tolist()}); the interim files come from different "
                                f"runs: rerun data_prep.")
    keep = (customers["signup_date"] <= cutoff).to_numpy() | ids.isin(labelled).to_numpy()
    return customers[keep].reset_index(drop=True)


def split_features(schema: FeatureSchema, interim: "Interim", split: str) -> pd.DataFrame:
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
    customers = interim.customers[interim.customers[ID_COLUMN].astype(str).isin(labels[ID_COLUMN].astype(str))]
    features = features_for(schema, customers, interim_transactions(interim), interim.cutoff)
    return processed_splits(features, labels)[split]


def run(interim_dir: Path, features_dir: Path, train_dir: Path, validation_dir: Path, *, fast: bool = True) -> dict:
    """Runs the stage on folders.

    Args:
        interim_dir: data_prep's output.
        features_dir: Receives ``customer_features_v<N>.csv`` and ``feature_schema.json``.
        train_dir: Receives ``train.csv`` (and a copy of the schema).
        validation_dir: Receives ``validation.csv`` (and a copy of the schema); may equal ``train_dir``.
        fast: Read only the transaction columns the features use, ``category``/``channel`` as
            categoricals (the files written are the same either way).

    Returns:
        Facts about the run: schema version, feature count, features by origin, rows per file, paths.

    Raises:
        FeatureInputError: The interim files disagree (a labelled customer without a customer row).
    """
    from churn.interim import CLEANED_CUSTOMERS, read_interim

    started = time.monotonic()
    interim = read_interim(interim_dir, TRANSACTION_COLUMNS, MIX_FIELDS) if fast else read_interim(interim_dir)
    cutoff = interim.cutoff
    transactions = interim_transactions(interim)
    logger.info("read interim: %d customers, %s (%.1fs)", len(interim.customers),
                "no transaction log" if transactions is None else f"{len(transactions)} transactions",
                time.monotonic() - started)
    schema = derive_schema(interim.customers, transactions, cutoff, interim.metadata["churn_window_days"])
    customers = customers_to_featurize(interim.customers, interim.labels, cutoff,
                                       str(interim_dir / CLEANED_CUSTOMERS))
    features = features_for(schema, customers, transactions, cutoff)
    logger.info("built %d features for %d customers (%.1fs)", len(schema.features), len(features),
                time.monotonic() - started)
    labels = interim.labels
    del interim, customers, transactions  # the transactions are done with: free them before writing
    features_dir.mkdir(parents=True, exist_ok=True)
    features_path = features_dir / feature_file_name(schema.version)
    _write_csv(features, features_path)
    paths = {"features": str(features_path), "schema": str(schema.save(features_dir))}
    splits = processed_splits(features, labels)
    for name, folder in (("train", train_dir), ("validation", validation_dir)):
        folder.mkdir(parents=True, exist_ok=True)
        schema.save(folder)
        _write_csv(splits[name], folder / f"{name}.csv")
        paths[name] = str(folder / f"{name}.csv")
    return {
        "schema_version": schema.version,
        "n_features": len(schema.features),
        "features_by_origin": describe_features(schema),
        "rows": {"features": len(features), **{k: len(v) for k, v in splits.items()}},
        "paths": paths,
    }

def read_split(path: Path, schema: FeatureSchema) -> pd.DataFrame:
    """Reads a processed split with the schema's types (ids and categories stay text)."""
    dtypes = {ID_COLUMN: str, **{name: str for name in schema.categorical}}
    frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values={n: [""] for n in schema.numeric})
    for name in schema.categorical:
        frame[name] = frame[name].astype(object).where(frame[name] != "", None)
    return frame


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python components/feature_engineering.py --help``."""
    from churn.layout import DataLayout, setup_cli_logging

    layout = DataLayout()
    parser = argparse.ArgumentParser(
        prog="feature_engineering",
        description=(
            "Build per-customer features at the cutoff (recency, frequency, monetary, tenure, trends, "
            "category/channel mix, customer attributes) from data/interim. Writes "
            f"{feature_file_name()} + feature_schema.json to the features folder and train.csv / "
            "validation.csv (customer_id, features, churned) to the processed folder."
        ),
    )
    parser.add_argument("--interim-dir", type=Path, default=layout.interim, help="data_prep output (default: %(default)s)")
    parser.add_argument("--features-dir", type=Path, default=layout.features, help="default: %(default)s")
    parser.add_argument("--processed-dir", type=Path, default=layout.processed, help="default: %(default)s")
    args = parser.parse_args(argv)
    setup_cli_logging()
    try:
        facts = run(args.interim_dir, args.features_dir, args.processed_dir, args.processed_dir)
    except (FileNotFoundError, FeatureInputError) as exc:
        logger.error("%s", exc)
        return 2
    note = facts["features_by_origin"]["transaction_note"]
    print(f"features v{facts['schema_version']}: {facts['n_features']} features"
          f"{'; transaction features: ' + note if note else ''}, rows {facts['rows']}")
    for name, path in facts["paths"].items():
        print(f"  {name}: {path}")
    return 0


def component(base_image: str) -> "PythonComponent":
    """The KFP component, built for the project's image (a compile-time setting)."""
    from kfp import dsl
    from kfp.dsl import Dataset, Input, Output

    @dsl.component(base_image=base_image, install_kfp_package=False)
    def feature_engineering(interim: Input[Dataset], features: Output[Dataset], train_data: Output[Dataset],
                            validation_data: Output[Dataset]):
        """Builds features at the cutoff; writes the feature schema and the processed splits."""
        from pathlib import Path

        from churn.layout import setup_cli_logging
        from components.feature_engineering import run

        setup_cli_logging()
        facts = run(Path(interim.path), Path(features.path), Path(train_data.path), Path(validation_data.path))
        for artifact, name in ((train_data, "train"), (validation_data, "validation")):
            artifact.metadata.update({"rows": facts["rows"][name], "schema_version": facts["schema_version"]})
        features.metadata.update({"rows": facts["rows"]["features"], "schema_version": facts["schema_version"],
                                  "n_features": facts["n_features"],
                                  "transaction_features": facts["features_by_origin"]["transaction"]})

    return feature_engineering


if __name__ == "__main__":
    raise SystemExit(main())
