"""Stage 1 — data_prep: raw customers + transactions → interim (clean, labelled, split).

Raw data is never edited. Every raw row ends up either kept (``data/interim/cleaned_customers.csv``,
``data/interim/filtered_sales.csv``) or rejected with a reason (``data/interim/rejected_<input>.csv``),
and the counts add up: raw = kept + rejected, per input.

This stage also fixes the label and the train/validation split (stratified, seeded, by customer);
feature_engineering turns that into ``data/processed/train.csv`` and ``validation.csv``.

Run alone: ``python components/data_prep.py --raw-dir data/raw --out-dir data/interim``.
"""


import argparse
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.schema import ID_COLUMN, LABEL_COLUMN

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import PythonComponent

logger = logging.getLogger(__name__)

CUSTOMERS_FILE = "customers.csv"
TRANSACTIONS_FILE = "transactions.json"
REQUIRED_CUSTOMER_COLUMNS = (ID_COLUMN, "signup_date")
REQUIRED_TRANSACTION_FIELDS = (ID_COLUMN, "timestamp", "amount")
REFUND_STATUSES = frozenset({"refund", "refunded", "returned", "chargeback"})
LABEL_VALUES = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "1.0": 1, "0.0": 0}
SOURCE_ROW = "source_row"
REASON = "reason"

CLEANED_CUSTOMERS = "cleaned_customers.csv"
FILTERED_SALES = "filtered_sales.csv"
LABELS_FILE = "labels.csv"
METADATA_FILE = "prep_metadata.json"


class RawDataError(ValueError):
    """Raw input that cannot be used at all (missing file, missing required column, no usable rows)."""


@dataclass(frozen=True)
class Cleaned:
    """Rows of one input split into kept and rejected.

    Attributes:
        kept: Usable rows, typed.
        rejected: Unusable rows with their original values, a ``reason`` and a ``source_row``.
        raw_rows: How many rows (records) the input had.
    """

    kept: pd.DataFrame
    rejected: pd.DataFrame
    raw_rows: int

    def accounting(self) -> dict:
        """Row counts and rejection reasons; raw always equals kept + rejected."""
        reasons = self.rejected[REASON].value_counts().to_dict() if len(self.rejected) else {}
        return {
            "raw": int(self.raw_rows),
            "kept": int(len(self.kept)),
            "rejected": int(len(self.rejected)),
            "reasons": {str(k): int(v) for k, v in sorted(reasons.items())},
        }


@dataclass(frozen=True)
class Labels:
    """Who is trained on, with which label, and the cutoff the features must respect.

    Attributes:
        frame: ``customer_id``, ``churned`` (0/1) and ``split`` (train/validation).
        cutoff: Features may only use transactions on or before this instant (UTC).
        end: Latest kept transaction (UTC).
        source: ``derived`` (from activity after the cutoff) or ``provided`` (customers.csv column).
        excluded: Customers kept but not trained on, by reason.
    """

    frame: pd.DataFrame
    cutoff: pd.Timestamp
    end: pd.Timestamp
    source: str
    excluded: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- customers


def read_customers(path: Path) -> pd.DataFrame:
    """Reads customers.csv with every column as text (ids keep leading zeros).

    Args:
        path: The CSV file.

    Returns:
        The raw table, empty cells as empty strings.

    Raises:
        RawDataError: The file is missing, unreadable or lacks a required column.
    """
    if not path.is_file():
        raise RawDataError(
            f"{path}: customers file not found. Put {CUSTOMERS_FILE} in the raw folder "
            f"(or run `make data` to generate sample data)."
        )
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RawDataError(f"{path}: cannot be read as CSV ({exc}). Fix the file's format.") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_CUSTOMER_COLUMNS if c not in raw.columns]
    if missing:
        raise RawDataError(
            f"{path}: missing required column(s) {missing}; found {list(raw.columns)}. "
            f"customers.csv needs {list(REQUIRED_CUSTOMER_COLUMNS)}."
        )
    return raw


def clean_customers(raw: pd.DataFrame) -> Cleaned:
    """Validates customer rows.

    Rules, first match wins: empty ``customer_id``; ``signup_date`` not an ISO date; ``churned``
    (when present) not one of 0/1/true/false/yes/no (empty means unlabelled and is kept);
    a ``customer_id`` seen on an earlier row (the first one is kept).

    Args:
        raw: Table from :func:`read_customers`.

    Returns:
        Kept rows (``signup_date`` as a UTC timestamp, ``churned`` as nullable Int8 when present,
        attributes as stripped text) and rejected rows with reasons.
    """
    df = raw.apply(lambda s: s.str.strip()).reset_index(drop=True)
    source_row = pd.Series(np.arange(1, len(df) + 1), index=df.index)
    signup = pd.to_datetime(df["signup_date"], format="ISO8601", utc=True, errors="coerce")
    conditions = [df[ID_COLUMN] == "", signup.isna()]
    reasons = ["missing customer_id", "unparseable signup_date (expected an ISO date like 2024-01-31)"]
    label = None
    if LABEL_COLUMN in df.columns:
        lowered = df[LABEL_COLUMN].str.lower()
        label = lowered.map(LABEL_VALUES)
        conditions.append((lowered != "") & label.isna())
        reasons.append("invalid churned value (use 0/1, true/false or yes/no)")
    reason = pd.Series(np.select(conditions, reasons, default=""), index=df.index)
    dup = (reason == "") & df[ID_COLUMN].duplicated(keep=False)
    dup &= df[ID_COLUMN].where(reason == "").duplicated(keep="first")
    reason = reason.mask(dup, "duplicate customer_id (first occurrence kept)")

    bad = reason != ""
    rejected = df[bad].copy()
    rejected.insert(0, REASON, reason[bad])
    rejected.insert(0, SOURCE_ROW, source_row[bad])
    kept = df[~bad].copy()
    kept["signup_date"] = signup[~bad]
    if label is not None:
        kept[LABEL_COLUMN] = label[~bad].astype("Int8")
    return Cleaned(kept=kept.reset_index(drop=True), rejected=rejected.reset_index(drop=True), raw_rows=len(df))


# --------------------------------------------------------------------------- transactions


def _is_json_array(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _iter_line_chunks(path: Path, chunk_bytes: int):
    """Yields blocks of whole lines of about ``chunk_bytes``."""
    with path.open("rb") as fh:
        rest = b""
        first = True
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                if rest.strip():
                    yield rest
                return
            if first:
                block = block.removeprefix(b"\xef\xbb\xbf")
                first = False
            block = rest + block
            cut = block.rfind(b"\n")
            if cut < 0:
                rest = block
                continue
            rest = block[cut + 1 :]
            yield block[: cut + 1]


def _records_from_lines(block: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parses JSON lines one by one (the slow, forgiving path)."""
    records, malformed = [], []
    for line in block.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            obj = None
        if isinstance(obj, dict):
            records.append(obj)
        else:
            records.append({})
            malformed.append((len(records) - 1, line.decode("utf-8", errors="replace")[:500]))
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame = frame.astype(object)
    bad = pd.DataFrame(malformed, columns=["_pos", "raw_record"])
    return frame, bad


def _parse_block(block: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parses a block of JSON lines: pyarrow when the block is clean, line by line otherwise."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        table = pj.read_json(io.BytesIO(block), read_options=pj.ReadOptions(block_size=max(len(block), 1 << 20)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _records_from_lines(block)
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    return frame, pd.DataFrame(columns=["_pos", "raw_record"])


def _to_text(col: pd.Series) -> pd.Series:
    """Converts a parsed JSON field to text, keeping nulls; 17.0 becomes '17'."""
    if pd.api.types.is_string_dtype(col) and col.dtype != object:
        return col.str.strip()
    if pd.api.types.is_float_dtype(col):
        as_int = col.where(col.isna() | (col % 1 != 0), col.round().astype("Int64").astype(str).astype(object))
        return as_int.astype("string").str.replace(r"\.0$", "", regex=True)
    if pd.api.types.is_integer_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col.astype("string")

    def conv(v: object) -> object:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return pd.NA
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if isinstance(v, (dict, list)):
            return json.dumps(v)
        return str(v).strip()

    return col.map(conv).astype("string")


def _to_timestamp(col: pd.Series) -> pd.Series:
    """Parses ISO 8601 dates/date-times, with or without zone, to UTC (naive = UTC)."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(col):
        return col.dt.tz_localize("UTC")
    text = _to_text(col)
    return pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")


def _to_amount(col: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(col):
        return pd.Series(np.nan, index=col.index)
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    values = col.map(lambda v: np.nan if isinstance(v, bool) else v) if col.dtype == object else col
    return pd.to_numeric(values, errors="coerce").astype("float64")


def validate_transaction_records(frame: pd.DataFrame, first_row: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Applies the per-record rules to parsed transaction records.

    Rules, first match wins: missing ``customer_id``; missing or unparseable ``timestamp``;
    missing, non-numeric or non-finite ``amount``; negative ``amount`` whose ``status`` is not a
    refund (refund, refunded, returned, chargeback).

    Args:
        frame: Parsed records (any field types), one per source record, in file order.
        first_row: Source row number of the first record (1-based).

    Returns:
        ``(kept, rejected)``: kept rows typed (``customer_id``/``transaction_id`` text,
        ``timestamp`` UTC, ``amount`` float, ``is_refund`` bool); rejected rows with original values
        as text plus ``source_row`` and ``reason``.
    """
    n = len(frame)
    frame = frame.reset_index(drop=True)
    source_row = pd.Series(np.arange(first_row, first_row + n), dtype="int64")
    empty = pd.Series(pd.NA, index=frame.index, dtype="string")
    cid = _to_text(frame[ID_COLUMN]) if ID_COLUMN in frame else empty
    raw_ts = frame["timestamp"] if "timestamp" in frame else pd.Series(None, index=frame.index, dtype=object)
    ts = _to_timestamp(raw_ts)
    raw_amount = frame["amount"] if "amount" in frame else pd.Series(np.nan, index=frame.index)
    amount = _to_amount(raw_amount)
    status = _to_text(frame["status"]).str.lower() if "status" in frame else empty
    is_refund = status.isin(REFUND_STATUSES).fillna(False).astype(bool)

    conditions = [
        cid.isna() | (cid == ""),
        raw_ts.isna(),
        ts.isna(),
        raw_amount.isna(),
        amount.isna(),
        ~np.isfinite(amount.fillna(0.0)),
        (amount < 0) & ~is_refund,
    ]
    reasons = [
        "missing customer_id",
        "missing timestamp",
        "unparseable timestamp (expected ISO 8601, e.g. 2024-01-31T13:45:00Z)",
        "missing amount",
        "non-numeric amount",
        "non-finite amount",
        "negative amount not marked as a refund (set status to 'refunded')",
    ]
    reason = pd.Series(np.select([np.asarray(c, dtype=bool) for c in conditions], reasons, default=""))
    bad = (reason != "").to_numpy()

    rejected = frame[bad].copy()
    for col in rejected.columns:
        rejected[col] = _to_text(rejected[col])
    rejected.insert(0, REASON, reason[bad].to_numpy())
    rejected.insert(0, SOURCE_ROW, source_row[bad].to_numpy())

    kept = frame[~bad].copy()
    kept[ID_COLUMN] = cid[~bad]
    kept["timestamp"] = ts[~bad]
    kept["amount"] = amount[~bad]
    kept["is_refund"] = is_refund[~bad].to_numpy()
    kept.insert(0, SOURCE_ROW, source_row[~bad].to_numpy())
    for col in kept.columns:
        if col in (ID_COLUMN, "timestamp", "amount", "is_refund", SOURCE_ROW):
            continue
        if col == "quantity":
            kept[col] = pd.to_numeric(_to_amount(kept[col]), errors="coerce")
        elif col == "transaction_id" or not pd.api.types.is_numeric_dtype(kept[col]):
            kept[col] = _to_text(kept[col])
    return kept.reset_index(drop=True), rejected.reset_index(drop=True)


def parse_transactions(path: Path, *, chunk_bytes: int = 64 << 20) -> Cleaned:
    """Reads transactions.json (JSON Lines or one JSON array) and applies the per-record rules.

    JSON Lines is read in blocks with pyarrow's multithreaded parser; a block with a malformed line
    is re-read line by line so that one bad line costs only its own row.

    Args:
        path: The file.
        chunk_bytes: Block size for JSON Lines.

    Returns:
        Kept and rejected records (cross-record rules are applied by :func:`clean_transactions`).

    Raises:
        RawDataError: The file is missing, or a required field appears in no record.
    """
    if not path.is_file():
        raise RawDataError(
            f"{path}: transactions file not found. Put {TRANSACTIONS_FILE} (JSON Lines or a JSON array) "
            f"in the raw folder (or run `make data`)."
        )
    kept_parts, rejected_parts, seen_fields = [], [], set()
    total = 0
    started = time.monotonic()
    if _is_json_array(path):
        try:
            items = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise RawDataError(
                f"{path}: starts with '[' but is not a valid JSON array ({exc}). "
                f"Fix the file or write one JSON object per line (JSON Lines)."
            ) from exc
        blocks = [(pd.DataFrame.from_records([i if isinstance(i, dict) else {} for i in items]).astype(object),
                   pd.DataFrame([(k, json.dumps(i)[:500]) for k, i in enumerate(items) if not isinstance(i, dict)],
                                columns=["_pos", "raw_record"]))]
    else:
        blocks = (_parse_block(b) for b in _iter_line_chunks(path, chunk_bytes))
    for frame, malformed in blocks:
        seen_fields.update(frame.columns)
        if len(malformed):
            bad_pos = malformed["_pos"].to_numpy()
            mask = np.zeros(len(frame), dtype=bool)
            mask[bad_pos] = True
            rej = malformed.rename(columns={"_pos": SOURCE_ROW})
            rej[SOURCE_ROW] = rej[SOURCE_ROW] + total + 1
            rej.insert(1, REASON, "malformed JSON record (not an object)")
            rejected_parts.append(rej)
            positions = np.flatnonzero(~mask)
            good = frame.iloc[positions].reset_index(drop=True)
        else:
            positions = np.arange(len(frame))
            good = frame
        kept, rejected = validate_transaction_records(good, first_row=total + 1)
        # Source rows must count malformed lines too: map positions back.
        if len(malformed):
            kept[SOURCE_ROW] = positions[kept[SOURCE_ROW].to_numpy() - total - 1] + total + 1
            if len(rejected):
                rejected[SOURCE_ROW] = positions[rejected[SOURCE_ROW].to_numpy() - total - 1] + total + 1
        kept_parts.append(kept)
        rejected_parts.append(rejected)
        total += len(frame)
        logger.debug("%s: %d records parsed (%.1fs)", path.name, total, time.monotonic() - started)
    missing = [f for f in REQUIRED_TRANSACTION_FIELDS if f not in seen_fields]
    if total and missing:
        raise RawDataError(
            f"{path}: required field(s) {missing} appear in no record; found {sorted(map(str, seen_fields))}. "
            f"Each transaction needs {list(REQUIRED_TRANSACTION_FIELDS)}."
        )
    kept = _concat(kept_parts)
    rejected = _concat(rejected_parts)
    return Cleaned(kept=kept, rejected=rejected, raw_rows=total)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p) or len(p.columns)]
    if not parts:
        return pd.DataFrame({SOURCE_ROW: pd.Series(dtype="int64"), REASON: pd.Series(dtype="string")})
    return pd.concat(parts, ignore_index=True, sort=False)


def clean_transactions(parsed: Cleaned, known_customers: pd.Series) -> Cleaned:
    """Applies the cross-record rules: unknown customers and duplicate transaction ids.

    A transaction of a customer not among the kept customers is rejected; so is a
    ``transaction_id`` seen on an earlier record (the first one is kept).

    Args:
        parsed: Output of :func:`parse_transactions`.
        known_customers: Kept ``customer_id`` values.

    Returns:
        All kept and rejected records of the input.
    """
    tx = parsed.kept
    unknown = ~tx[ID_COLUMN].isin(known_customers).to_numpy()
    dup = np.zeros(len(tx), dtype=bool)
    if "transaction_id" in tx.columns:
        tid = tx["transaction_id"]
        dup = (tid.notna() & tid.duplicated(keep="first")).to_numpy() & ~unknown
    bad = unknown | dup
    reason = np.where(unknown, "unknown customer_id (not in kept customers)", "duplicate transaction_id (first occurrence kept)")
    newly = tx[bad].copy()
    if len(newly):
        newly.insert(1, REASON, reason[bad])
        newly = newly.drop(columns=["is_refund"])
        for col in newly.columns:
            if col not in (SOURCE_ROW, REASON):
                newly[col] = _to_text(newly[col]) if col != "timestamp" else newly[col].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    rejected = _concat([parsed.rejected, newly]).sort_values(SOURCE_ROW, kind="stable").reset_index(drop=True)
    kept = tx[~bad].reset_index(drop=True)
    return Cleaned(kept=kept, rejected=rejected, raw_rows=parsed.raw_rows)


# --------------------------------------------------------------------------- labels and split


def make_labels(customers: pd.DataFrame, transactions: pd.DataFrame, churn_window_days: int) -> Labels:
    """Fixes the cutoff and the label of every trainable customer.

    With a ``churned`` column in customers.csv, that label is used and the cutoff is the latest
    transaction. Otherwise cutoff = latest transaction − ``churn_window_days`` and a customer is
    churned (1) when they have no purchase (refunds don't count) in (cutoff, cutoff + window].
    Customers who signed up after the cutoff, or have no provided label, are not trained on.

    Args:
        customers: Kept customers (``signup_date`` UTC).
        transactions: Kept transactions (``timestamp`` UTC, ``is_refund``).
        churn_window_days: Label window in days.

    Returns:
        The labels (without split yet: ``split`` is filled by :func:`split_customers`).
    """
    if churn_window_days <= 0:
        raise ValueError(f"churn_window_days must be positive, got {churn_window_days}")
    end = transactions["timestamp"].max()
    window = pd.Timedelta(days=churn_window_days)
    excluded: dict[str, int] = {}
    if LABEL_COLUMN in customers.columns:
        cutoff = end
        has_label = customers[LABEL_COLUMN].notna()
        excluded["no churned label"] = int((~has_label).sum())
        frame = customers.loc[has_label, [ID_COLUMN, LABEL_COLUMN]].copy()
        frame[LABEL_COLUMN] = frame[LABEL_COLUMN].astype("int8")
        source = "provided"
    else:
        cutoff = end - window
        eligible = customers["signup_date"] <= cutoff
        excluded["signed up after cutoff"] = int((~eligible).sum())
        purchases = transactions.loc[~transactions["is_refund"], [ID_COLUMN, "timestamp"]]
        after = purchases["timestamp"] > cutoff
        active_after = set(purchases.loc[after & (purchases["timestamp"] <= cutoff + window), ID_COLUMN].unique())
        frame = customers.loc[eligible, [ID_COLUMN]].copy()
        frame[LABEL_COLUMN] = (~frame[ID_COLUMN].isin(active_after)).astype("int8")
        source = "derived"
    return Labels(frame=frame.reset_index(drop=True), cutoff=cutoff, end=end, source=source, excluded=excluded)


def split_customers(labels: Labels, validation_fraction: float, seed: int) -> Labels:
    """Assigns each labelled customer to train or validation, stratified by label, seeded.

    Args:
        labels: Output of :func:`make_labels`.
        validation_fraction: Share of customers in validation, in (0, 1).
        seed: Random seed.

    Returns:
        The same labels with a ``split`` column.

    Raises:
        RawDataError: Too few customers of a class to stratify.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    counts = labels.frame[LABEL_COLUMN].value_counts()
    if len(counts) < 2 or counts.min() < 2:
        raise RawDataError(
            f"cannot split: need at least 2 churned and 2 retained customers, got {counts.to_dict()} "
            f"(label source: {labels.source}, cutoff {labels.cutoff}). Provide more history or a "
            f"different churn_window_days."
        )
    frame = labels.frame.copy()
    _, val_idx = train_test_split(
        frame.index, test_size=validation_fraction, random_state=seed, stratify=frame[LABEL_COLUMN]
    )
    frame["split"] = "train"
    frame.loc[val_idx, "split"] = "validation"
    return Labels(frame=frame, cutoff=labels.cutoff, end=labels.end, source=labels.source, excluded=labels.excluded)


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class Prepared:
    """Everything data_prep produces."""

    customers: Cleaned
    transactions: Cleaned
    labels: Labels

    def metadata(self, churn_window_days: int, seed: int, validation_fraction: float) -> dict:
        """Run facts: cutoff, label source, row accounting per input, exclusions."""
        split_counts = self.labels.frame.groupby(["split", LABEL_COLUMN]).size()
        return {
            "cutoff": self.labels.cutoff.isoformat(),
            "end": self.labels.end.isoformat(),
            "churn_window_days": churn_window_days,
            "label_source": self.labels.source,
            "seed": seed,
            "validation_fraction": validation_fraction,
            "rows": {
                CUSTOMERS_FILE: self.customers.accounting(),
                TRANSACTIONS_FILE: self.transactions.accounting(),
            },
            "excluded_from_training": self.labels.excluded,
            "labelled": {f"{s}_{'churned' if y else 'retained'}": int(n) for (s, y), n in split_counts.items()},
            "churn_rate": float(self.labels.frame[LABEL_COLUMN].mean()),
        }


def prepare(raw_dir: Path, *, churn_window_days: int = 90, validation_fraction: float = 0.2, seed: int = 42) -> Prepared:
    """Runs data_prep on a raw folder.

    Args:
        raw_dir: Folder with customers.csv and transactions.json.
        churn_window_days: Label window.
        validation_fraction: Share of labelled customers in validation.
        seed: Split seed.

    Returns:
        Cleaned inputs, labels and split.

    Raises:
        RawDataError: An input is missing, lacks required columns, or has no usable rows.
    """
    started = time.monotonic()
    customers_path = raw_dir / CUSTOMERS_FILE
    customers = clean_customers(read_customers(customers_path))
    logger.info("customers: %d raw, %d kept, %d rejected", customers.raw_rows, len(customers.kept), len(customers.rejected))
    if customers.kept.empty:
        raise RawDataError(f"{customers_path}: no usable rows ({customers.accounting()['reasons']}).")
    tx_path = raw_dir / TRANSACTIONS_FILE
    transactions = clean_transactions(parse_transactions(tx_path), customers.kept[ID_COLUMN])
    logger.info(
        "transactions: %d raw, %d kept, %d rejected (%.1fs)",
        transactions.raw_rows, len(transactions.kept), len(transactions.rejected), time.monotonic() - started,
    )
    if transactions.kept.empty:
        raise RawDataError(f"{tx_path}: no usable rows ({transactions.accounting()['reasons']}).")
    labels = split_customers(make_labels(customers.kept, transactions.kept, churn_window_days), validation_fraction, seed)
    logger.info(
        "labels (%s): cutoff %s, %d customers, churn rate %.1f%%",
        labels.source, labels.cutoff.date(), len(labels.frame), 100 * labels.frame[LABEL_COLUMN].mean(),
    )
    return Prepared(customers=customers, transactions=transactions, labels=labels)


def _iso_utc(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(r"\.000000Z$", "Z", regex=True)


def write_interim(prepared: Prepared, out_dir: Path, metadata: dict) -> dict[str, Path]:
    """Writes the interim files.

    Args:
        prepared: Output of :func:`prepare`.
        out_dir: Target folder (created).
        metadata: Output of :meth:`Prepared.metadata`.

    Returns:
        Paths by file name.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    customers = prepared.customers.kept.copy()
    customers["signup_date"] = customers["signup_date"].dt.strftime("%Y-%m-%d")
    paths[CLEANED_CUSTOMERS] = out_dir / CLEANED_CUSTOMERS
    customers.to_csv(paths[CLEANED_CUSTOMERS], index=False)

    tx = prepared.transactions.kept.drop(columns=[SOURCE_ROW])
    table = pa.Table.from_pandas(tx.assign(timestamp=_iso_utc(tx["timestamp"])), preserve_index=False)
    paths[FILTERED_SALES] = out_dir / FILTERED_SALES
    pacsv.write_csv(table, paths[FILTERED_SALES])

    for name, cleaned in (("customers", prepared.customers), ("transactions", prepared.transactions)):
        path = out_dir / f"rejected_{name}.csv"
        cleaned.rejected.to_csv(path, index=False)
        paths[path.name] = path
    paths[LABELS_FILE] = out_dir / LABELS_FILE
    prepared.labels.frame.to_csv(paths[LABELS_FILE], index=False)
    paths[METADATA_FILE] = out_dir / METADATA_FILE
    paths[METADATA_FILE].write_text(json.dumps(metadata, indent=2) + "\n")
    return paths


@dataclass(frozen=True)
class Interim:
    """The interim files read back, typed, for feature engineering."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    labels: pd.DataFrame
    metadata: dict

    @property
    def cutoff(self) -> pd.Timestamp:
        return pd.Timestamp(self.metadata["cutoff"])


def read_interim(interim_dir: Path) -> Interim:
    """Reads what :func:`write_interim` wrote (ids stay text, timestamps UTC)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    meta_path = interim_dir / METADATA_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: not found; run data_prep first (python components/data_prep.py).")
    metadata = json.loads(meta_path.read_text())
    customers = pd.read_csv(interim_dir / CLEANED_CUSTOMERS, dtype=str, keep_default_na=False, na_filter=False)
    customers["signup_date"] = pd.to_datetime(customers["signup_date"], format="ISO8601", utc=True)
    if LABEL_COLUMN in customers.columns:
        customers[LABEL_COLUMN] = pd.to_numeric(customers[LABEL_COLUMN].replace("", None)).astype("Int8")
    text_cols = {"customer_id": pa.string(), "transaction_id": pa.string(), "category": pa.string(),
                 "channel": pa.string(), "status": pa.string()}
    table = pacsv.read_csv(
        interim_dir / FILTERED_SALES,
        convert_options=pacsv.ConvertOptions(column_types={**text_cols, "timestamp": pa.timestamp("us", tz="UTC")}),
    )
    transactions = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    labels = pd.read_csv(interim_dir / LABELS_FILE, dtype={ID_COLUMN: str, LABEL_COLUMN: "int8", "split": str})
    return Interim(customers=customers, transactions=transactions, labels=labels, metadata=metadata)


def run(raw_dir: Path, out_dir: Path, *, churn_window_days: int = 90, validation_fraction: float = 0.2, seed: int = 42) -> dict:
    """Runs the stage on folders and returns its metadata (row accounting included)."""
    prepared = prepare(raw_dir, churn_window_days=churn_window_days, validation_fraction=validation_fraction, seed=seed)
    metadata = prepared.metadata(churn_window_days, seed, validation_fraction)
    write_interim(prepared, out_dir, metadata)
    return metadata


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python components/data_prep.py --help``."""
    from churn.layout import DataLayout, setup_cli_logging

    layout = DataLayout()
    parser = argparse.ArgumentParser(
        prog="data_prep",
        description=(
            "Clean raw customers.csv + transactions.json into data/interim: cleaned_customers.csv, "
            "filtered_sales.csv, rejected_<input>.csv (each bad row with its reason), labels.csv "
            "(churn label and train/validation split per customer) and prep_metadata.json (cutoff, row counts)."
        ),
        epilog="Label rule: cutoff = latest transaction - window; churned = no purchase in (cutoff, cutoff+window].",
    )
    parser.add_argument("--raw-dir", type=Path, default=layout.raw, help="folder with the raw inputs (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=layout.interim, help="interim folder (default: %(default)s)")
    parser.add_argument("--churn-window-days", type=int, default=90, help="label window in days (default: %(default)s)")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="validation share (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="split seed (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_cli_logging()
    try:
        meta = run(args.raw_dir, args.out_dir, churn_window_days=args.churn_window_days,
                   validation_fraction=args.validation_fraction, seed=args.seed)
    except RawDataError as exc:
        logger.error("%s", exc)
        return 2
    for name, acc in meta["rows"].items():
        print(f"{name}: raw {acc['raw']} = kept {acc['kept']} + rejected {acc['rejected']} {acc['reasons'] or ''}")
    print(f"cutoff {meta['cutoff']}, churn rate {meta['churn_rate']:.1%}, written to {args.out_dir}")
    return 0


def component(base_image: str) -> "PythonComponent":
    """The KFP component, built for the project's image (a compile-time setting)."""
    from kfp import dsl
    from kfp.dsl import Dataset, Output

    @dsl.component(base_image=base_image, install_kfp_package=False)
    def data_prep(raw_dir: str, churn_window_days: int, validation_fraction: float, seed: int,
                  interim: Output[Dataset]):
        """Cleans raw inputs, fixes labels and split; rejected rows are kept with reasons."""
        from pathlib import Path

        from churn.layout import setup_cli_logging
        from churn.storage import local_input_dir
        from components.data_prep import run

        setup_cli_logging()
        with local_input_dir(raw_dir) as raw:
            meta = run(raw, Path(interim.path), churn_window_days=churn_window_days,
                       validation_fraction=validation_fraction, seed=seed)
        interim.metadata.update({"cutoff": meta["cutoff"], "label_source": meta["label_source"],
                                 "rows": meta["rows"], "churn_rate": meta["churn_rate"]})

    return data_prep


if __name__ == "__main__":
    raise SystemExit(main())
