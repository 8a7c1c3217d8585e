"""Stage 1 — data_prep: raw customers + transactions → interim (clean, labelled, split).

Raw data is never edited. Every raw row ends up either kept (``data/interim/cleaned_customers.csv``,
``data/interim/filtered_sales.csv``) or rejected with a reason (``data/interim/rejected_<input>.csv``),
and the counts add up: raw = kept + rejected, per input. With a ``churned`` column in customers.csv
the transaction log is optional (absent, empty or ``[]``: ``has_transactions: false``).

This stage also fixes the label and the train/validation split (stratified, seeded, by customer);
feature_engineering turns that into ``data/processed/train.csv`` and ``validation.csv``.

Two implementations of the transactions rules write the same files byte for byte: pandas/pyarrow
(:func:`prepare`, any input) and DuckDB (:func:`run_fast`, JSON Lines files of plain, uniformly
typed fields; it steps aside for anything else). :func:`run` tries DuckDB first.

Run alone: ``python components/data_prep.py --raw-dir data/raw --out-dir data/interim``.
"""


import argparse
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.isotime import time_of_day_chars
from churn.schema import ID_COLUMN, LABEL_COLUMN

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from kfp.dsl import PythonComponent

logger = logging.getLogger(__name__)

CUSTOMERS_FILE = "customers.csv"
TRANSACTIONS_FILE = "transactions.json"
REQUIRED_CUSTOMER_COLUMNS = (ID_COLUMN, "signup_date")
REQUIRED_TRANSACTION_FIELDS = (ID_COLUMN, "timestamp", "amount")
# Plausibility rules (README, "Raw data contract"): a transaction outside them is rejected with a reason.
MAX_ABS_AMOUNT = 1e9  # |amount| above this is "implausible amount" (sums of kept amounts stay finite)
EARLIEST_TIMESTAMP = "1900-01-01T00:00:00Z"  # inclusive
LATEST_TIMESTAMP = "2200-01-01T00:00:00Z"  # exclusive
# "timestamp after the log's end": more than LOG_END_GRACE_DAYS after the log's reference end, its
# 99.9th percentile but at least its 3rd latest timestamp (see log_end_limit), so that a few stray
# future rows cannot move the cutoff.
LOG_END_QUANTILE_PER_MILLE = 999
LOG_END_MIN_TAIL = 2
LOG_END_GRACE_DAYS = 30
REFUND_STATUSES = frozenset({"refund", "refunded", "returned", "chargeback"})
LABEL_VALUES = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "1.0": 1, "0.0": 0}
SOURCE_ROW = "source_row"
REASON = "reason"
NOT_UTF8 = "not valid UTF-8"
MALFORMED = "malformed JSON record (not an object)"
IMPLAUSIBLE_TIMESTAMP = "implausible timestamp (before 1900-01-01 or from 2200-01-01 on)"
IMPLAUSIBLE_AMOUNT = f"implausible amount (|amount| above {MAX_ABS_AMOUNT:,.0f})"
AFTER_LOG_END = (f"timestamp after the log's end (more than {LOG_END_GRACE_DAYS} days after the log's "
                 f"{LOG_END_QUANTILE_PER_MILLE / 10:g}th percentile timestamp)")
UNKNOWN_CUSTOMER = "unknown customer_id (not in kept customers)"
DUPLICATE_TRANSACTION = "duplicate transaction_id (first occurrence kept)"

CLEANED_CUSTOMERS = "cleaned_customers.csv"
FILTERED_SALES = "filtered_sales.csv"
LABELS_FILE = "labels.csv"
METADATA_FILE = "prep_metadata.json"
_DAY_SECONDS = 86_400
_FIRST_4_DIGIT_YEAR_DAY = -354_285  # 1000-01-01 in days since 1970-01-01
_LAST_4_DIGIT_YEAR_DAY = 2_932_896  # 9999-12-31


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
        return _accounting(self.raw_rows, len(self.kept), self.rejected)


def _accounting(raw_rows: int, kept_rows: int, rejected: pd.DataFrame) -> dict:
    reasons = rejected[REASON].value_counts().to_dict() if len(rejected) else {}
    return {
        "raw": int(raw_rows),
        "kept": int(kept_rows),
        "rejected": int(len(rejected)),
        "reasons": {str(k): int(v) for k, v in sorted(reasons.items())},
    }


@dataclass(frozen=True)
class Labels:
    """Who is trained on, with which label, and the cutoff the features must respect.

    Attributes:
        frame: ``customer_id``, ``churned`` (0/1) and ``split`` (train/validation).
        cutoff: Features may only use transactions on or before this instant (UTC).
        end: Latest kept transaction (UTC); None without a transaction log.
        source: ``derived`` (from activity after the cutoff) or ``provided`` (customers.csv column).
        excluded: Kept customers not trained on, by reason (reasons with no customer left out).
    """

    frame: pd.DataFrame
    cutoff: pd.Timestamp
    end: pd.Timestamp | None
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
        header = _csv_header(path)
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RawDataError(f"{path}: cannot be read as CSV ({exc}). Fix the file's format.") from exc
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise RawDataError(
            f"{path}: column name(s) {repeated} appear more than once in the header. Give every column "
            f"a unique name (or remove the repeated column)."
        )
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_CUSTOMER_COLUMNS if c not in raw.columns]
    if missing:
        raise RawDataError(
            f"{path}: missing required column(s) {missing}; found {list(raw.columns)}. "
            f"customers.csv needs {list(REQUIRED_CUSTOMER_COLUMNS)}."
        )
    return raw


def _csv_header(path: Path) -> list[str]:
    """The header's column names as written (stripped); pandas would rename repeats to ``name.1``."""
    import csv

    with path.open(newline="", encoding="utf-8-sig") as fh:
        return [name.strip() for name in next(csv.reader(fh), [])]


def clean_customers(raw: pd.DataFrame) -> Cleaned:
    """Validates customer rows.

    Rules, first match wins: empty ``customer_id``; ``signup_date`` not an ISO date, or outside
    [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP); ``churned``
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
    implausible = signup.notna() & ((signup < pd.Timestamp(EARLIEST_TIMESTAMP))
                                    | (signup >= pd.Timestamp(LATEST_TIMESTAMP)))
    conditions = [df[ID_COLUMN] == "", signup.isna(), implausible]
    reasons = ["missing customer_id", "unparseable signup_date (expected an ISO date like 2024-01-31)",
               "implausible signup_date (before 1900-01-01 or from 2200-01-01 on)"]
    label = None
    if LABEL_COLUMN in df.columns:
        lowered = df[LABEL_COLUMN].str.lower()
        label = lowered.map(LABEL_VALUES)
        conditions.append((lowered != "") & label.isna())
        reasons.append("invalid churned value (use 0/1, true/false or yes/no)")
    # First matching rule per row as a small integer (0 = none); texts only for the rejected rows.
    rule = np.select([np.asarray(c, dtype=bool) for c in conditions], np.arange(1, len(reasons) + 1), default=0)
    valid = pd.Series(rule == 0, index=df.index)
    dup = valid & df[ID_COLUMN].duplicated(keep=False)
    dup &= df[ID_COLUMN].where(valid).duplicated(keep="first")
    reasons.append("duplicate customer_id (first occurrence kept)")
    rule = np.where(dup.to_numpy(), len(reasons), rule)

    bad = pd.Series(rule > 0, index=df.index)
    rejected = df[bad].copy()
    rejected.insert(0, REASON, pd.Series(np.array(reasons)[rule[bad.to_numpy()] - 1], index=rejected.index))
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


def _iter_line_chunks(path: Path, chunk_bytes: int) -> Iterator[memoryview | bytes]:
    """Yields blocks of whole lines of about ``chunk_bytes`` (read in place: no copies of the blocks)."""
    with path.open("rb") as fh:
        rest = b""
        first = True
        while True:
            buf = bytearray(len(rest) + chunk_bytes)
            buf[: len(rest)] = rest
            end = len(rest)
            view = memoryview(buf)
            while end < len(buf):
                got = fh.readinto(view[end:])
                if not got:
                    break
                end += got
            if end == len(rest):
                if rest.strip():
                    yield rest
                return
            start = 3 if first and buf.startswith(b"\xef\xbb\xbf") else 0
            first = False
            cut = buf.rfind(b"\n", start, end)
            if cut < 0:
                rest = bytes(view[start:end])
                continue
            rest = bytes(view[cut + 1 : end])
            yield view[start : cut + 1]


class _JsonNumberText(str):
    """A JSON number that is not a finite double (``NaN``, ``Infinity``, ``1e999``), kept as its text."""


def _json_float(text: str) -> float | _JsonNumberText:
    value = float(text)
    return value if np.isfinite(value) else _JsonNumberText(text)


def _loads(text: str) -> object:
    """``json.loads`` that keeps non-finite numbers as their original text (:class:`_JsonNumberText`)."""
    return json.loads(text, parse_constant=_JsonNumberText, parse_float=_json_float)


def _records_from_lines(block: memoryview | bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parses JSON lines one by one (the slow, forgiving path).

    Returns:
        ``(records, malformed)``: one record per non-blank line (``{}`` for a malformed one), and the
        malformed lines' positions, original text and reason.
    """
    records, malformed = [], []
    for line in bytes(block).splitlines():
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            records.append({})
            malformed.append((len(records) - 1, line.decode("utf-8", errors="backslashreplace")[:500], NOT_UTF8))
            continue
        try:
            obj = _loads(text)
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            records.append(obj)
        else:
            records.append({})
            malformed.append((len(records) - 1, text[:500], MALFORMED))
    bad = pd.DataFrame(malformed, columns=["_pos", "raw_record", REASON])
    return _records_frame(records), bad


def _records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record (``{}`` too), one object column per key in order of first appearance,
    values as parsed (no type inference: a :class:`_JsonNumberText` stays one)."""
    keys = dict.fromkeys(k for r in records for k in r)
    return pd.DataFrame({k: pd.Series([r.get(k) for r in records], dtype=object) for k in keys},
                        index=pd.RangeIndex(len(records)))


def _is_utf8(block: memoryview | bytes) -> bool:
    if int(np.frombuffer(block, dtype=np.uint8).max(initial=0)) < 128:
        return True
    try:
        str(block, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _timestamp_position(block: memoryview | bytes, lines: int = 1000) -> int | None:
    """Where ``timestamp`` comes among the block's fields in order of first appearance (as pyarrow
    orders inferred columns), from its first lines; None when none of them has one."""
    seen: dict[str, None] = {}
    for line in bytes(block[: 1 << 20]).splitlines()[:lines]:
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(obj, dict):
            return None
        for key in obj:
            if key == "timestamp":
                return len(seen)
            seen.setdefault(key)
    return None


def _parse_block(block: memoryview | bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parses a block of JSON lines: pyarrow when the block is clean, line by line otherwise.

    pyarrow's parser neither checks UTF-8 nor keeps the text of ``NaN``/``Infinity``, and it
    reads ISO timestamps as timestamps (a rejected row would lose its original text): timestamps
    stay text, and a block with invalid UTF-8 or a non-finite number is read line by line.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    position = _timestamp_position(block)
    if position is None or not _is_utf8(block):
        return _records_from_lines(block)
    try:
        table = pj.read_json(
            pa.BufferReader(block), read_options=pj.ReadOptions(block_size=max(len(block), 1 << 20)),
            parse_options=pj.ParseOptions(explicit_schema=pa.schema([("timestamp", pa.string())]),
                                          unexpected_field_behavior="infer"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _records_from_lines(block)
    for column in table.columns:
        if pa.types.is_floating(column.type) and pc.any(pc.invert(pc.is_finite(column))).as_py():
            return _records_from_lines(block)
    names = [n for n in table.column_names if n != "timestamp"]  # the schema put it first
    table = table.select(names[:position] + ["timestamp"] + names[position:])
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    return frame, pd.DataFrame(columns=["_pos", "raw_record", REASON])


def _parse_blocks(path: Path, chunk_bytes: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Parses the blocks of a JSON Lines file in order, a few blocks ahead in worker threads.

    pyarrow parses one block on one core (and releases the GIL), so parsing the next blocks while
    the caller validates the current one keeps every core busy. At most ``workers + 1`` blocks
    are held at a time.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(4, os.cpu_count() or 1))
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="json-block") as pool:
        for block in _iter_line_chunks(path, chunk_bytes):
            pending.append(pool.submit(_parse_block, block))
            del block
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _string_buffers(array: "pa.Array") -> tuple[np.ndarray, np.ndarray] | None:
    """Offsets (int64, one more than rows) and bytes of a pyarrow string/large_string array, else None."""
    import pyarrow as pa

    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return None
    if not len(array):
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    offset_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    return offsets.astype(np.int64), (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8))


def _to_text(col: pd.Series) -> pd.Series:
    """Converts a parsed JSON field to text, keeping nulls; 17.0 becomes '17'."""
    if pd.api.types.is_string_dtype(col) and col.dtype != object:
        return col.str.strip()
    if pd.api.types.is_float_dtype(col):
        whole = (col.abs() < 1e18) & (col % 1 == 0)  # False for NaN and inf
        as_int = col.astype(object)
        as_int[whole] = col[whole].round().astype("int64").astype(str)
        return as_int.astype("string").str.replace(r"\.0$", "", regex=True)
    if pd.api.types.is_integer_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col.astype("string")

    def conv(v: object) -> object:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return pd.NA
        if isinstance(v, float) and v.is_integer() and abs(v) < 1e18:
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
    """A parsed JSON field as float64: NaN for missing or non-numeric values, ``NaN``/``Infinity``
    number texts (:class:`_JsonNumberText`) as their values."""
    if pd.api.types.is_bool_dtype(col):
        return pd.Series(np.nan, index=col.index)
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    if col.dtype == object:
        values = col.map(lambda v: np.nan if isinstance(v, bool)
                         else float(v) if isinstance(v, _JsonNumberText) else v)
    else:
        values = col
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _is_number_text(col: pd.Series) -> np.ndarray:
    """Per value: a JSON number that is not a finite double (see :class:`_JsonNumberText`)."""
    if col.dtype != object:
        return np.zeros(len(col), dtype=bool)
    return np.fromiter((isinstance(v, _JsonNumberText) for v in col), dtype=bool, count=len(col))


def validate_transaction_records(frame: pd.DataFrame, first_row: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Applies the per-record rules to parsed transaction records.

    Rules, first match wins: missing ``customer_id``; missing or unparseable ``timestamp``;
    timestamp outside [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP); missing, non-numeric or non-finite
    ``amount`` (``NaN``, ``Infinity``); ``|amount|`` above MAX_ABS_AMOUNT; negative ``amount`` whose
    ``status`` is not a refund (refund, refunded, returned, chargeback).

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
    number_text = _is_number_text(raw_amount)
    status = _to_text(frame["status"]).str.lower() if "status" in frame else empty
    is_refund = status.isin(REFUND_STATUSES).fillna(False).astype(bool)
    implausible_ts = ts.notna() & ((ts < pd.Timestamp(EARLIEST_TIMESTAMP)) | (ts >= pd.Timestamp(LATEST_TIMESTAMP)))

    conditions = [
        cid.isna() | (cid == ""),
        raw_ts.isna(),
        ts.isna(),
        implausible_ts,
        raw_amount.isna(),
        amount.isna() & ~number_text,
        number_text | ~np.isfinite(amount.fillna(0.0)),
        amount.abs() > MAX_ABS_AMOUNT,
        (amount < 0) & ~is_refund,
    ]
    reasons = [
        "missing customer_id",
        "missing timestamp",
        "unparseable timestamp (expected ISO 8601, e.g. 2024-01-31T13:45:00Z)",
        IMPLAUSIBLE_TIMESTAMP,
        "missing amount",
        "non-numeric amount",
        "non-finite amount",
        IMPLAUSIBLE_AMOUNT,
        "negative amount not marked as a refund (set status to 'refunded')",
    ]
    # First matching rule per row as a small integer (0 = no rule); texts only for the rejected rows.
    rule = np.select([np.asarray(c, dtype=bool) for c in conditions], np.arange(1, len(reasons) + 1, dtype=np.int8),
                     default=np.int8(0))
    bad = rule > 0

    rejected = frame[bad].copy()
    for col in rejected.columns:
        rejected[col] = _to_text(rejected[col])
    rejected.insert(0, REASON, pd.Series(np.array(reasons)[rule[bad] - 1]).to_numpy())
    rejected.insert(0, SOURCE_ROW, source_row[bad].to_numpy())

    kept = frame[~bad].copy() if bad.any() else frame.copy(deep=False)
    kept[ID_COLUMN] = cid[~bad]
    kept["timestamp"] = ts[~bad]
    kept["amount"] = amount[~bad]
    kept["is_refund"] = is_refund[~bad].to_numpy()
    kept.insert(0, SOURCE_ROW, source_row[~bad].to_numpy())
    for col in kept.columns:
        if col in (ID_COLUMN, "timestamp", "amount", "is_refund", SOURCE_ROW):
            continue
        if col == "quantity":
            quantity = _to_amount(kept[col])  # float64 already: to_numeric would change nothing
            kept[col] = quantity if quantity.dtype == np.float64 else pd.to_numeric(quantity, errors="coerce")
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
    total = objects = 0
    started = time.monotonic()
    if _is_json_array(path):
        try:
            items = _loads(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise RawDataError(
                f"{path}: not valid UTF-8 ({exc}). Save the file as UTF-8, or write one JSON object per "
                f"line (JSON Lines) so that only the records with bad bytes are rejected."
            ) from exc
        except (json.JSONDecodeError, RecursionError) as exc:
            raise RawDataError(
                f"{path}: starts with '[' but is not a valid JSON array ({exc}). "
                f"Fix the file or write one JSON object per line (JSON Lines)."
            ) from exc
        if not isinstance(items, list):
            raise RawDataError(f"{path}: starts with '[' but is not a JSON array. Fix the file or write "
                               f"one JSON object per line (JSON Lines).")
        blocks = [(_records_frame([i if isinstance(i, dict) else {} for i in items]),
                   pd.DataFrame([(k, json.dumps(i)[:500], MALFORMED) for k, i in enumerate(items)
                                 if not isinstance(i, dict)], columns=["_pos", "raw_record", REASON]))]
    else:
        blocks = _parse_blocks(path, chunk_bytes)
    for frame, malformed in blocks:
        seen_fields.update(frame.columns)
        objects += len(frame) - len(malformed)
        if len(malformed):
            bad_pos = malformed["_pos"].to_numpy()
            mask = np.zeros(len(frame), dtype=bool)
            mask[bad_pos] = True
            rej = malformed.rename(columns={"_pos": SOURCE_ROW})[[SOURCE_ROW, REASON, "raw_record"]]
            rej[SOURCE_ROW] = rej[SOURCE_ROW] + total + 1
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
    if objects and missing:
        raise RawDataError(
            f"{path}: required field(s) {missing} appear in no record; found {sorted(map(str, seen_fields))}. "
            f"Each transaction needs {list(REQUIRED_TRANSACTION_FIELDS)}."
        )
    kept = _concat(kept_parts)
    rejected = _concat(rejected_parts)
    del kept_parts, rejected_parts
    _release_arrow_memory()  # the JSON parser's buffers
    return Cleaned(kept=kept, rejected=rejected, raw_rows=total)


def _release_arrow_memory() -> None:
    """Gives memory that pyarrow's pool keeps for reuse back to the system (lower peak RSS later)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p) or len(p.columns)]
    if not parts:
        return pd.DataFrame({SOURCE_ROW: pd.Series(dtype="int64"), REASON: pd.Series(dtype="string")})
    return pd.concat(parts, ignore_index=True, sort=False)


def _log_end_rank(n: int) -> int:
    """0-based rank (from the earliest) of :func:`log_end_limit`'s reference among ``n`` timestamps."""
    return max(0, min((n - 1) * LOG_END_QUANTILE_PER_MILLE // 1000, n - 1 - LOG_END_MIN_TAIL))


def log_end_limit(timestamps: pd.Series) -> pd.Timestamp | None:
    """The latest timestamp the log's end allows: LOG_END_GRACE_DAYS after the log's reference end.

    The reference end is the k-th smallest of the n timestamps (0-based), k = (n - 1) * 999 // 1000
    (LOG_END_QUANTILE_PER_MILLE) but at most n - 1 - LOG_END_MIN_TAIL: the latest 0.1% of the rows,
    and at least the 2 latest, cannot move it, however far in the future they are.

    Args:
        timestamps: UTC timestamps of the records that pass the per-record rules.

    Returns:
        The limit (UTC), or None for no timestamps.
    """
    n = len(timestamps)
    if not n:
        return None
    k = _log_end_rank(n)
    values = timestamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    reference = pd.Timestamp(np.partition(values, k)[k]).tz_localize("UTC")
    return reference + pd.Timedelta(days=LOG_END_GRACE_DAYS)


def clean_transactions(parsed: Cleaned, known_customers: pd.Series) -> Cleaned:
    """Applies the cross-record rules: the log's end, unknown customers and duplicate transaction ids.

    A transaction after :func:`log_end_limit` is rejected; so is one of a customer not among the
    kept customers, and a ``transaction_id`` seen on an earlier record (the first one is kept;
    records rejected by these rules count as earlier records, those rejected per record don't).

    Args:
        parsed: Output of :func:`parse_transactions`.
        known_customers: Kept ``customer_id`` values.

    Returns:
        All kept and rejected records of the input.
    """
    tx = parsed.kept
    limit = log_end_limit(tx["timestamp"])
    late = (tx["timestamp"] > limit).to_numpy() if limit is not None else np.zeros(len(tx), dtype=bool)
    unknown = ~_isin_text(tx[ID_COLUMN], known_customers)
    dup = np.zeros(len(tx), dtype=bool)
    if "transaction_id" in tx.columns:
        dup = _duplicated_text(tx["transaction_id"])
    bad = late | unknown | dup
    reasons = np.select([late[bad], unknown[bad]], [AFTER_LOG_END, UNKNOWN_CUSTOMER], DUPLICATE_TRANSACTION)
    rejected = _all_rejected(parsed.rejected, tx[bad], reasons)
    kept = tx[~bad].reset_index(drop=True) if bad.any() else tx.reset_index(drop=True)
    return Cleaned(kept=kept, rejected=rejected, raw_rows=parsed.raw_rows)


def _all_rejected(per_record: pd.DataFrame, cross: pd.DataFrame, reasons: np.ndarray) -> pd.DataFrame:
    """Per-record rejects plus the kept records the cross-record rules reject, by source row.

    Args:
        per_record: Rejected rows of :func:`parse_transactions`.
        cross: The kept records (typed, as :func:`validate_transaction_records` keeps them) that a
            cross-record rule rejects.
        reasons: Per row of ``cross``: the reason.
    """
    newly = cross.copy()
    if len(newly):
        newly.insert(1, REASON, np.asarray(reasons, dtype=object))
        newly = newly.drop(columns=["is_refund"])
        for col in newly.columns:
            if col not in (SOURCE_ROW, REASON):
                newly[col] = _to_text(newly[col]) if col != "timestamp" else newly[col].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    return _concat([per_record, newly]).sort_values(SOURCE_ROW, kind="stable").reset_index(drop=True)


def _is_arrow_text(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"


_MAX_DIGITS = 18  # int64 holds every 18-digit number


def _digit_keys(values: pd.Series) -> tuple[np.ndarray, int] | None:
    """Fixed-width digit strings as numbers: ``(int64 values, width)``, or None for any other text.

    Strings of one width made of ASCII digits only map one-to-one to their numbers, so ids like
    ``000123`` can be matched as integers instead of hashed as strings.
    """
    import pyarrow as pa

    if not _is_arrow_text(values) or values.hasnans:
        return None
    parts, width = [], None
    for chunk in pa.chunked_array(pa.array(values)).chunks:
        buffers = _string_buffers(chunk)
        if buffers is None:
            return None
        if not len(chunk):
            continue
        offsets, data = buffers
        chunk_width = int(offsets[1] - offsets[0])
        if width not in (None, chunk_width) or not 0 < chunk_width <= _MAX_DIGITS:
            return None
        width = chunk_width
        if offsets[-1] - offsets[0] != chunk_width * len(chunk) or (np.diff(offsets) != chunk_width).any():
            return None
        chars = data[offsets[0] : offsets[-1]].reshape(len(chunk), chunk_width)
        if ((chars < ord("0")) | (chars > ord("9"))).any():
            return None
        number = np.zeros(len(chunk), dtype=np.int64)
        for j in range(chunk_width):
            number *= 10
            number += chars[:, j] - ord("0")
        parts.append(number)
    if width is None:
        return None
    return np.concatenate(parts), width


def digit_id_positions(ids: pd.Series, values: pd.Series) -> np.ndarray | None:
    """Position of each value in ``ids`` (-1 when absent) for fixed-width digit ids, else None.

    Uses a lookup table indexed by the id's number (no hashing). None when either side is not
    fixed-width digit text of the same width, when ``ids`` repeat, or when the numbers are too
    sparse for a table (more than 16 slots per id).
    """
    id_keys, value_keys = _digit_keys(ids), _digit_keys(values)
    if id_keys is None or value_keys is None or id_keys[1] != value_keys[1]:
        return None
    id_numbers, value_numbers = id_keys[0], value_keys[0]
    size = int(max(id_numbers.max(), value_numbers.max())) + 1
    if size > max(1 << 22, 16 * len(id_numbers)):
        return None
    table = np.full(size, -1, dtype=np.int64)
    table[id_numbers] = np.arange(len(id_numbers))
    if np.count_nonzero(table >= 0) != len(id_numbers):  # repeated ids
        return None
    return table[value_numbers]


def _isin_text(values: pd.Series, known: pd.Series) -> np.ndarray:
    """``values.isin(known).to_numpy()``; for text in pyarrow, without pandas' per-value Python loop."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (_is_arrow_text(values) and _is_arrow_text(known)):
        return values.isin(known).to_numpy()
    if len(values) and len(known):
        positions = digit_id_positions(known, values)
        if positions is not None:
            return positions >= 0
    value_set = pa.array(known)
    if isinstance(value_set, pa.ChunkedArray):
        value_set = value_set.combine_chunks()
    return np.asarray(pc.is_in(pa.array(values), value_set=value_set.cast(pa.string())), dtype=bool)


_HASH_ROWS = 1 << 20


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on uint64."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _text_hashes(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each string of a pyarrow string array, given its buffers (nulls hash like '')."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    hashes = np.empty(n, dtype=np.uint64)
    for lo in range(0, n, _HASH_ROWS):
        hi = min(lo + _HASH_ROWS, n)
        length = lengths[lo:hi]
        width = -(-int(length.max(initial=0)) // 8) * 8
        chars = np.zeros((hi - lo, max(width, 8)), dtype=np.uint8)
        if width:
            if length.min() == length.max():  # fixed width: one contiguous slice
                chars[:, : length[0]] = data[offsets[lo] : offsets[hi]].reshape(hi - lo, length[0])
            else:
                cols = np.arange(width)
                inside = cols < length[:, None]
                chars[inside] = data[(offsets[lo:hi, None] + cols)[inside]]
        h = _mix64(length.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
        for j, word in enumerate(chars.view(np.uint64).T):  # words past a string's end leave its hash alone
            mixed = _mix64(h ^ word)
            h = mixed if j == 0 or length.min() > 8 * j else np.where(length > 8 * j, mixed, h)
        hashes[lo:hi] = h
    return hashes


def _duplicated_text(values: pd.Series) -> np.ndarray:
    """``(values.notna() & values.duplicated(keep="first")).to_numpy()``, fast for text in pyarrow.

    Hashes every string with numpy and sorts the hashes (cheap); only rows whose hash occurs
    more than once are compared exactly, with pandas. Hash collisions cost time, never accuracy.
    """
    import pyarrow as pa

    if not _is_arrow_text(values):
        return (values.notna() & values.duplicated(keep="first")).to_numpy()
    buffers = [_string_buffers(c) for c in pa.chunked_array(pa.array(values)).chunks]
    if any(b is None for b in buffers):
        return (values.notna() & values.duplicated(keep="first")).to_numpy()
    hashes = np.concatenate([_text_hashes(*b) for b in buffers]) if buffers else np.zeros(0, np.uint64)
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    result = np.zeros(len(values), dtype=bool)
    if repeated.size:
        candidates = np.isin(hashes, np.unique(repeated))
        subset = values[candidates]
        result[candidates] = (subset.notna() & subset.duplicated(keep="first")).to_numpy()
    return result


# --------------------------------------------------------------------------- labels and split


def parse_cutoff(value: "str | pd.Timestamp | None") -> pd.Timestamp | None:
    """Reads a cutoff given as an ISO date or instant (UTC when it has no zone); None or '' for none.

    Raises:
        ValueError: Not a date.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        ts = pd.Timestamp(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"cutoff {value!r}: not an ISO date or instant (e.g. 2024-06-30 or "
                         f"2024-06-30T00:00:00Z)") from exc
    if pd.isna(ts):
        raise ValueError(f"cutoff {value!r}: not an ISO date or instant (e.g. 2024-06-30)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def label_cutoff(customers: pd.DataFrame, end: pd.Timestamp | None, churn_window_days: int,
                 cutoff: pd.Timestamp | None = None) -> pd.Timestamp:
    """The cutoff: ``cutoff`` when given, else the latest transaction (provided labels), the newest
    ``signup_date`` (provided labels, no transaction log) or the latest transaction − window (derived).

    Args:
        customers: Kept customers (``signup_date`` UTC).
        end: Latest kept transaction, None without a transaction log.
        churn_window_days: Label window in days.
        cutoff: The cutoff asked for (UTC), or None.

    Returns:
        The cutoff (UTC).

    Raises:
        RawDataError: Derived labels whose window (cutoff, cutoff + window] goes past the log's end.
    """
    if churn_window_days <= 0:
        raise ValueError(f"churn_window_days must be positive, got {churn_window_days}")
    window = pd.Timedelta(days=churn_window_days)
    if LABEL_COLUMN in customers.columns:
        if cutoff is not None:
            return cutoff
        return end if end is not None else customers["signup_date"].max()
    if end is None:
        raise ValueError("derived labels need a transaction log")
    if cutoff is None:
        return end - window
    if cutoff + window > end:
        raise RawDataError(
            f"cutoff {cutoff.isoformat()}: the label window ({churn_window_days} days) would end on "
            f"{(cutoff + window).isoformat()}, after the last transaction ({end.isoformat()}), and customers would "
            f"count as churned for lack of data. Use a cutoff on or before {(end - window).isoformat()} "
            f"(or a shorter churn window)."
        )
    return cutoff


def make_labels(customers: pd.DataFrame, transactions: pd.DataFrame | None, churn_window_days: int,
                cutoff: pd.Timestamp | None = None) -> Labels:
    """Fixes the cutoff and the label of every trainable customer.

    With a ``churned`` column in customers.csv, that label is used; otherwise a customer is
    churned (1) when they have no purchase (refunds don't count) in (cutoff, cutoff + window].
    The cutoff is :func:`label_cutoff`'s. Customers who signed up after the cutoff, or have no
    provided label, are not trained on.

    Args:
        customers: Kept customers (``signup_date`` UTC).
        transactions: Kept transactions (``timestamp`` UTC, ``is_refund``); None without a log.
        churn_window_days: Label window in days.
        cutoff: The cutoff asked for, or None for the default.

    Returns:
        The labels (without split yet: ``split`` is filled by :func:`split_customers`).
    """
    end = transactions["timestamp"].max() if transactions is not None and len(transactions) else None
    cutoff = label_cutoff(customers, end, churn_window_days, cutoff)
    active_after = None
    if LABEL_COLUMN not in customers.columns:
        ts = transactions["timestamp"]
        in_window = ~transactions["is_refund"] & (ts > cutoff) & (ts <= cutoff + pd.Timedelta(days=churn_window_days))
        ids = transactions.loc[in_window, ID_COLUMN].unique()
        active_after = pd.Series(ids, dtype=ids.dtype)
    return labels_at(customers, end, active_after, churn_window_days, cutoff)


def labels_at(customers: pd.DataFrame, end: pd.Timestamp | None, active_after: pd.Series | None,
              churn_window_days: int, cutoff: pd.Timestamp | None = None) -> Labels:
    """:func:`make_labels` given what it needs of the transactions.

    Args:
        customers: Kept customers (``signup_date`` UTC).
        end: Latest kept transaction (UTC), None without a transaction log.
        active_after: Customers with a purchase (not a refund) in (cutoff, cutoff + window]; only
            used (and only needed) when customers.csv has no ``churned`` column.
        churn_window_days: Label window in days.
        cutoff: The cutoff asked for, or None for the default (:func:`label_cutoff`).

    Returns:
        The labels, without split. Every kept customer is either in the frame or counted in
        ``excluded``, first reason first: no churned label; signed up after the cutoff.
    """
    cutoff = label_cutoff(customers, end, churn_window_days, cutoff)
    excluded: dict[str, int] = {}
    eligible = customers["signup_date"] <= cutoff
    if LABEL_COLUMN in customers.columns:
        has_label = customers[LABEL_COLUMN].notna()
        excluded["no churned label"] = int((~has_label).sum())
        excluded["signed up after cutoff"] = int((has_label & ~eligible).sum())
        frame = customers.loc[has_label & eligible, [ID_COLUMN, LABEL_COLUMN]].copy()
        frame[LABEL_COLUMN] = frame[LABEL_COLUMN].astype("int8")
        source = "provided"
    else:
        excluded["signed up after cutoff"] = int((~eligible).sum())
        frame = customers.loc[eligible, [ID_COLUMN]].copy()
        active = _isin_text(frame[ID_COLUMN], active_after)
        frame[LABEL_COLUMN] = pd.Series(~active, index=frame.index).astype("int8")
        source = "derived"
    excluded = {reason: n for reason, n in excluded.items() if n}
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
    has_transactions: bool = True

    def metadata(self, churn_window_days: int, seed: int, validation_fraction: float) -> dict:
        """Run facts: cutoff, label source, row accounting per input, exclusions."""
        return _metadata(self.labels, self.customers.accounting(), self.transactions.accounting(),
                         churn_window_days, seed, validation_fraction, self.has_transactions)


def _metadata(labels: Labels, customers: dict, transactions: dict, churn_window_days: int, seed: int,
              validation_fraction: float, has_transactions: bool = True) -> dict:
    split_counts = labels.frame.groupby(["split", LABEL_COLUMN]).size()
    return {
        "cutoff": labels.cutoff.isoformat(),
        "end": labels.end.isoformat() if labels.end is not None else None,
        "has_transactions": has_transactions,
        "churn_window_days": churn_window_days,
        "label_source": labels.source,
        "seed": seed,
        "validation_fraction": validation_fraction,
        "rows": {CUSTOMERS_FILE: customers, TRANSACTIONS_FILE: transactions},
        "excluded_from_training": labels.excluded,
        "labelled": {f"{s}_{'churned' if y else 'retained'}": int(n) for (s, y), n in split_counts.items()},
        "churn_rate": float(labels.frame[LABEL_COLUMN].mean()),
    }


def has_transaction_log(path: Path) -> bool:
    """False when transactions.json is absent, 0 bytes, whitespace only or ``[]``: "no transaction log"."""
    if not path.is_file():
        return False
    content = b""
    with path.open("rb") as fh:
        while len(content) <= 2 and (chunk := fh.read(1 << 20)):
            content += re.sub(rb"\s+", b"", chunk.replace(b"\xef\xbb\xbf", b""))
    return content not in (b"", b"[]")


def _no_transaction_log(tx_path: Path, customers_path: Path, customers: Cleaned) -> Cleaned:
    """The transactions of a run without a transaction log (none), or the error when labels need one."""
    if LABEL_COLUMN not in customers.kept.columns:
        state = "transactions file not found" if not tx_path.is_file() else "transactions file holds no records"
        raise RawDataError(
            f"{tx_path}: {state}, and {customers_path} has no `{LABEL_COLUMN}` column to label customers "
            f"without one. Put the transactions in {TRANSACTIONS_FILE} (JSON Lines or a JSON array), or add a "
            f"`{LABEL_COLUMN}` column (0/1) to {CUSTOMERS_FILE} (or run `make data` for sample data)."
        )
    logger.info("%s: no transaction log; labels from %s, features from customer attributes",
                TRANSACTIONS_FILE, CUSTOMERS_FILE)
    kept = pd.DataFrame({SOURCE_ROW: pd.Series(dtype="int64"), ID_COLUMN: pd.Series(dtype=pd.StringDtype("pyarrow")),
                         "timestamp": pd.Series(dtype="datetime64[us, UTC]"), "amount": pd.Series(dtype="float64"),
                         "is_refund": pd.Series(dtype=bool)})
    return Cleaned(kept=kept, rejected=_concat([]), raw_rows=0)


def prepare(raw_dir: Path, *, churn_window_days: int = 90, validation_fraction: float = 0.2, seed: int = 42,
            cutoff: "str | pd.Timestamp | None" = None) -> Prepared:
    """Runs data_prep on a raw folder.

    Args:
        raw_dir: Folder with customers.csv and (optional with a ``churned`` column) transactions.json.
        churn_window_days: Label window.
        validation_fraction: Share of labelled customers in validation.
        seed: Split seed.
        cutoff: ISO date or instant (UTC) to cut features and labels at, or None for the default
            (:func:`label_cutoff`).

    Returns:
        Cleaned inputs, labels and split.

    Raises:
        RawDataError: An input is missing, lacks required columns, or has no usable rows.
    """
    started = time.monotonic()
    cutoff_at = parse_cutoff(cutoff)
    customers_path = raw_dir / CUSTOMERS_FILE
    customers = clean_customers(read_customers(customers_path))
    logger.info("customers: %d raw, %d kept, %d rejected", customers.raw_rows, len(customers.kept), len(customers.rejected))
    if customers.kept.empty:
        raise RawDataError(f"{customers_path}: no usable rows ({customers.accounting()['reasons']}).")
    tx_path = raw_dir / TRANSACTIONS_FILE
    if not has_transaction_log(tx_path):
        transactions = _no_transaction_log(tx_path, customers_path, customers)
        labels = split_customers(make_labels(customers.kept, None, churn_window_days, cutoff_at),
                                 validation_fraction, seed)
        return Prepared(customers=customers, transactions=transactions, labels=labels, has_transactions=False)
    transactions = clean_transactions(parse_transactions(tx_path), customers.kept[ID_COLUMN])
    logger.info(
        "transactions: %d raw, %d kept, %d rejected (%.1fs)",
        transactions.raw_rows, len(transactions.kept), len(transactions.rejected), time.monotonic() - started,
    )
    if transactions.kept.empty:
        raise RawDataError(f"{tx_path}: no usable rows ({transactions.accounting()['reasons']}).")
    labels = split_customers(make_labels(customers.kept, transactions.kept, churn_window_days, cutoff_at),
                             validation_fraction, seed)
    logger.info(
        "labels (%s): cutoff %s, %d customers, churn rate %.1f%%",
        labels.source, labels.cutoff.date(), len(labels.frame), 100 * labels.frame[LABEL_COLUMN].mean(),
    )
    return Prepared(customers=customers, transactions=transactions, labels=labels)


def _iso_utc_slow(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(r"\.000000Z$", "Z", regex=True)


def _iso_utc(ts: pd.Series) -> pd.Series:
    """Formats UTC timestamps as ``2024-01-31T13:45:00Z`` (``.ffffff`` before the Z only when not zero).

    Same text as ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` minus a zero fraction, built from byte tables
    of days and seconds of the day (``strftime`` costs about a microsecond per row). Missing values
    and years outside 1000-9999 go through ``strftime``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(ts) == 0 or ts.isna().any():
        return _iso_utc_slow(ts)
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[ts.dt.unit]
    ticks = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().view(np.int64)
    seconds = ticks // per_second if per_second > 1 else ticks
    days = seconds // _DAY_SECONDS
    first, last = int(days.min()), int(days.max())
    if first < _FIRST_4_DIGIT_YEAR_DAY or last > _LAST_4_DIGIT_YEAR_DAY:
        return _iso_utc_slow(ts)
    micros = (ticks - seconds * per_second) * 10**6 // per_second if per_second > 1 else None
    fraction = micros is not None and bool(micros.any())
    day_text = np.datetime_as_string(np.arange(first, last + 1).astype("datetime64[D]"), unit="D").astype("S10")
    day_chars = np.frombuffer(day_text.tobytes(), dtype=np.uint8).reshape(-1, 10)
    second_chars = time_of_day_chars()
    n, width = len(ts), 19 if fraction else 20
    chars = np.empty((n, width), dtype=np.uint8)
    for lo in range(0, n, 1 << 20):  # bounded temporaries
        hi = min(lo + (1 << 20), n)
        chars[lo:hi, :10] = day_chars[days[lo:hi] - first]
        chars[lo:hi, 10:19] = second_chars[seconds[lo:hi] - days[lo:hi] * _DAY_SECONDS]
    if not fraction:
        chars[:, 19] = ord("Z")
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    text = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))
    if fraction:
        dot, empty, zulu = (pa.scalar(c, pa.large_string()) for c in (".", "", "Z"))
        digits = pc.utf8_lpad(pc.cast(pa.array(micros), pa.large_string()), 6, "0")
        suffix = pc.if_else(pa.array(micros == 0), empty, pc.binary_join_element_wise(dot, digits, empty))
        text = pc.binary_join_element_wise(text, suffix, zulu, empty)
    return pd.Series(pd.array(text, dtype=pd.StringDtype("pyarrow")), index=ts.index)


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

    def write_sales(path: Path) -> None:
        tx = prepared.transactions.kept.drop(columns=[SOURCE_ROW])
        table = pa.Table.from_pandas(tx.assign(timestamp=_iso_utc(tx["timestamp"])), preserve_index=False)
        pacsv.write_csv(table, path)

    return _write_interim_files(out_dir, prepared.customers, write_sales, prepared.transactions.rejected,
                                prepared.labels, metadata)


def _write_interim_files(out_dir: Path, customers: Cleaned, write_sales, rejected_transactions: pd.DataFrame,
                         labels: Labels, metadata: dict) -> dict[str, Path]:
    """Writes the interim files; ``write_sales(path)`` writes filtered_sales.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    kept_customers = customers.kept.copy()
    kept_customers["signup_date"] = kept_customers["signup_date"].dt.strftime("%Y-%m-%d")
    paths[CLEANED_CUSTOMERS] = out_dir / CLEANED_CUSTOMERS
    write_csv(kept_customers, paths[CLEANED_CUSTOMERS])

    paths[FILTERED_SALES] = out_dir / FILTERED_SALES
    write_sales(paths[FILTERED_SALES])

    for name, rejected in (("customers", customers.rejected), ("transactions", rejected_transactions)):
        path = out_dir / f"rejected_{name}.csv"
        rejected.to_csv(path, index=False)
        paths[path.name] = path
    paths[LABELS_FILE] = out_dir / LABELS_FILE
    write_csv(labels.frame, paths[LABELS_FILE])
    paths[METADATA_FILE] = out_dir / METADATA_FILE
    paths[METADATA_FILE].write_text(json.dumps(metadata, indent=2) + "\n")
    return paths


_CSV_SPECIAL = re.compile(r'[,"\r\n]')
_CSV_ROWS_PER_PIECE = 1 << 19


def csv_column_text(col: pd.Series) -> "pa.Array | None":
    """One column as text exactly as ``DataFrame.to_csv`` writes it, or None when this can't promise that.

    Args:
        col: The column.

    Returns:
        A pyarrow string array (one cell per row), or None for other column types and for text
        that would need CSV quoting.

    Floats are printed by pyarrow, which finds the same shortest round-trip digits as numpy (what
    pandas uses) but switches to exponent notation at other magnitudes: values outside
    [1e-4, 1e9) are printed by numpy instead, and whole numbers get numpy's trailing ``.0``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype == np.float64:
        values = col.to_numpy()
        magnitude = np.abs(values)
        by_numpy = (magnitude != 0) & ~((magnitude >= 1e-4) & (magnitude < 1e9))  # NaN and inf included
        whole = ~by_numpy & (values == np.trunc(values))
        text = pc.binary_join_element_wise(
            pc.cast(pa.array(values), pa.string()), pa.array(["", ".0"]).take(pa.array(whole.view(np.int8))), "")
        if by_numpy.any():
            rows = values[by_numpy]
            printed = np.where(np.isnan(rows), "", rows.astype(str))  # pandas writes NaN as ''
            text = pc.replace_with_mask(text, pa.array(by_numpy), pa.array(printed, pa.string()))
        return text
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return pc.cast(pa.array(col.to_numpy()), pa.string())
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        return pa.array(["False", "True"]).take(pa.array(col.to_numpy().view(np.int8)))
    if pd.api.types.is_integer_dtype(dtype):  # nullable integers: missing is ''
        return pc.fill_null(pc.cast(pa.array(col, from_pandas=True), pa.string()), "")
    if isinstance(dtype, pd.StringDtype) or (dtype == object and pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty")):
        text = pa.array(col, type=pa.string(), from_pandas=True)
        if isinstance(text, pa.ChunkedArray):
            text = text.combine_chunks()
        if pc.any(pc.match_substring_regex(text, _CSV_SPECIAL.pattern)).as_py():
            return None  # would need quoting: leave it to pandas
        return pc.fill_null(text, "")
    return None


@dataclass(frozen=True)
class CsvText:
    """A table rendered as CSV text exactly as ``DataFrame.to_csv(index=False)`` writes it.

    Attributes:
        header: The header line, without the line end.
        rows: One pyarrow string array per block of rows: each string a row without its line end.
    """

    header: str
    rows: list


def csv_text(frame: pd.DataFrame) -> CsvText | None:
    """Renders ``frame`` as CSV text with pyarrow, or None when only pandas can promise the same bytes.

    Columns are formatted in threads (pyarrow releases the GIL). None for frames with one column,
    no rows, repeated names, column types other than float64/int/bool/text, or text that would
    need CSV quoting.

    Args:
        frame: The table.

    Returns:
        The text, or None.
    """
    import pyarrow.compute as pc
    from concurrent.futures import ThreadPoolExecutor

    names = [str(c) for c in frame.columns]
    if len(names) < 2 or frame.empty or not frame.columns.is_unique or any(_CSV_SPECIAL.search(n) for n in names):
        return None
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for lo in range(0, len(frame), _CSV_ROWS_PER_PIECE):
            part = frame.iloc[lo : lo + _CSV_ROWS_PER_PIECE]
            columns = list(pool.map(csv_column_text, [part.iloc[:, i] for i in range(len(names))]))
            if any(c is None for c in columns):
                return None
            rows.append(pc.binary_join_element_wise(*columns, ","))
    return CsvText(header=",".join(names), rows=rows)


def write_csv_text(text: CsvText, path: Path) -> None:
    """Writes what :func:`csv_text` rendered (line ends as ``to_csv``: ``os.linesep``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    with open(path, "wb") as fh:
        fh.write((text.header + os.linesep).encode("utf-8"))
        for block in text.rows:
            for lo in range(0, len(block), _CSV_ROWS_PER_PIECE):
                lines = pc.binary_join_element_wise(block.slice(lo, _CSV_ROWS_PER_PIECE), os.linesep, "")
                if isinstance(lines, pa.ChunkedArray):
                    lines = lines.combine_chunks()
                offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
                fh.write(lines.buffers()[2][int(offsets[0]) : int(offsets[-1])])


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Writes ``frame`` byte for byte as ``frame.to_csv(path, index=False)`` does, several times faster.

    Args:
        frame: The table.
        path: Target file.
    """
    text = csv_text(frame)
    if text is None:
        frame.to_csv(path, index=False)
    else:
        write_csv_text(text, path)


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


def read_interim(interim_dir: Path, columns: "Sequence[str] | None" = None,
                 categorical: "Sequence[str]" = ()) -> Interim:
    """Reads what :func:`write_interim` wrote (ids stay text, timestamps UTC).

    Args:
        interim_dir: data_prep's output folder.
        columns: The transaction columns wanted (those the file has), or None for all. Fewer
            columns are read with every core (all columns are read block by block: less memory).
        categorical: Transaction text columns with few distinct values (say ``category``), read as
            pandas categoricals: an integer code per row instead of a string.

    Returns:
        The interim data.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    meta_path = interim_dir / METADATA_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: not found; run data_prep first (python components/data_prep.py).")
    metadata = json.loads(meta_path.read_text())
    transactions = _read_sales(interim_dir / FILTERED_SALES, columns, categorical)
    customers = pd.read_csv(interim_dir / CLEANED_CUSTOMERS, dtype=str, keep_default_na=False, na_filter=False)
    customers["signup_date"] = pd.to_datetime(customers["signup_date"], format="ISO8601", utc=True)
    if LABEL_COLUMN in customers.columns:
        customers[LABEL_COLUMN] = pd.to_numeric(customers[LABEL_COLUMN].replace("", None)).astype("Int8")
    labels = pd.read_csv(interim_dir / LABELS_FILE, dtype={ID_COLUMN: str, LABEL_COLUMN: "int8", "split": str})
    return Interim(customers=customers, transactions=transactions, labels=labels, metadata=metadata)


def _read_sales(path: Path, columns: "Sequence[str] | None", categorical: "Sequence[str]" = ()) -> pd.DataFrame:
    """filtered_sales.csv (``columns`` of it, or all) with pyarrow: text as text (``categorical`` ones as
    pandas categoricals), timestamps UTC."""
    import csv

    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Text is read as large_string, which is what pandas keeps it as (reading string would mean a
    # converted copy of every text column in to_pandas).
    text_cols = {"customer_id": pa.large_string(), "transaction_id": pa.large_string(), "category": pa.large_string(),
                 "channel": pa.large_string(), "status": pa.large_string()}
    # Dictionary-encoded while parsing: a code per row, no string per row (a third of the read time
    # of 20M rows went into the strings of two columns of a handful of values each).
    text_cols.update({c: pa.dictionary(pa.int32(), pa.string()) for c in categorical})
    read_options = pacsv.ReadOptions(block_size=16 << 20)  # fewer, larger blocks: less overhead per block
    include = []  # all
    if columns is not None:
        with path.open(newline="", encoding="utf-8") as fh:
            include = [c for c in next(csv.reader(fh), []) if c in set(columns)]
    convert_options = pacsv.ConvertOptions(column_types={**text_cols, "timestamp": pa.timestamp("us", tz="UTC")},
                                           include_columns=include)
    _release_arrow_memory()
    try:
        if include:  # a few columns: in threads (read_csv holds about the whole file on top of them)
            table = pacsv.read_csv(path, read_options=read_options, convert_options=convert_options)
        else:
            # Block by block: read_csv holds about the whole file on top of the table (~2.5 GB more
            # for 20M rows). The other columns' types come from the first block here ...
            with pacsv.open_csv(path, read_options=read_options, convert_options=convert_options) as reader:
                table = reader.read_all()
    except pa.ArrowInvalid:
        # ... and from all blocks in read_csv: a later block that doesn't fit (say, the first
        # decimal amount after a block of whole ones) needs it.
        table = pacsv.read_csv(path, read_options=read_options,
                               convert_options=convert_options)
    _release_arrow_memory()
    text = pd.StringDtype("pyarrow")
    transactions = table.to_pandas(types_mapper={pa.string(): text, pa.large_string(): text}.get)
    del table
    return transactions


# --------------------------------------------------------------------------- fast path (DuckDB)
#
# The same transactions rules in DuckDB, for JSON Lines files whose every field has one plain JSON
# type: the file is parsed once, in several threads, and the transactions never become a pandas
# frame. DuckDB builds each kept row's line of filtered_sales.csv as pyarrow's CSV writer would
# write it; rejected rows go through the pandas functions above. Whatever the fast path cannot
# promise to treat exactly like the pandas path (see :func:`_fast_transactions`) it leaves to that
# path: such a run is as slow as before, never different.
# tests/components/test_prep_fast_path.py runs both paths on the same inputs and compares the files.

_FAST_NUMERIC = ("amount", "quantity")
_FAST_RESERVED = frozenset({SOURCE_ROW, REASON, "is_refund", "raw_record", "_pos"})
_FAST_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .-]*")
# Number texts (as DuckDB re-serialises JSON numbers) that pyarrow's CSV writer prints the same
# way once a trailing ".0" is dropped: plain decimals below 1e9 (checked in the tests).
_NUMBER_SAFE = r"-?(0|[1-9][0-9]{0,8})(\.[0-9]+)?"
# ISO 8601 texts that DuckDB and pandas' format="ISO8601" read alike (checked in the tests); the
# other texts are parsed by pandas itself, once per distinct text.
_TS_SAFE = (r"(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
            r"([T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?")
_MAX_ODD_TIMESTAMPS = 100_000
_SCAN_BYTES = 64 << 20
_NOT_FAST = "fast path: a value it does not take (other JSON type, spaces at the ends, no fields)"
_PENDING = "NULL::TINYINT"
_TS_OUTSIDE = f"(ts < TIMESTAMPTZ '{EARLIEST_TIMESTAMP}' OR ts >= TIMESTAMPTZ '{LATEST_TIMESTAMP}')"
# Codes of the cross-record rules in table tx (1-7: per record; 0: kept).
_CROSS_REASONS = {8: UNKNOWN_CUSTOMER, 9: DUPLICATE_TRANSACTION, 10: AFTER_LOG_END}


@dataclass(frozen=True)
class _ByteFacts:
    """What a byte scan of the file tells: all ASCII, any ``\\``, how many ``"``."""

    ascii: bool
    backslash: bool
    quotes: int


def _byte_facts(path: Path) -> _ByteFacts:
    import mmap

    if path.stat().st_size == 0:
        return _ByteFacts(True, False, 0)
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if mm.find(b"\\") >= 0:
            return _ByteFacts(True, True, 0)
        data = np.frombuffer(mm, dtype=np.uint8)
        quotes, is_ascii = 0, True
        for lo in range(0, len(data), _SCAN_BYTES):
            block = data[lo : lo + _SCAN_BYTES]
            is_ascii = is_ascii and int(block.max()) < 128
            quotes += int(np.count_nonzero(block == ord('"')))
        del data, block
    return _ByteFacts(is_ascii, False, quotes)


def _sql(con, statement: str) -> None:
    """Runs a statement that returns no rows (DuckDB wants every result finished)."""
    con.execute(statement).fetchall()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _iso_sql(ts: str) -> str:
    """SQL for :func:`_iso_utc`'s text of a TIMESTAMPTZ (the session runs in UTC)."""
    return (f"CASE WHEN microsecond({ts}) % 1000000 = 0 THEN strftime({ts}, '%Y-%m-%dT%H:%M:%SZ') "
            f"ELSE strftime({ts}, '%Y-%m-%dT%H:%M:%S.%fZ') END")


def _line_sql(fields: list[str], json_of: dict[str, str], ts_out: str, is_refund: str) -> str:
    """SQL for a row of filtered_sales.csv as pyarrow writes it, from the fields' JSON texts.

    A JSON string without escapes is the field as pyarrow quotes it; numbers lose a trailing
    ``.0``; missing values are empty.
    """
    parts = []
    for f in fields:
        j = json_of[f]
        if f == "timestamp":
            parts.append(f"'\"' || {ts_out} || '\"'")
        elif f in _FAST_NUMERIC:
            parts.append(f"coalesce(CASE WHEN ends_with({j}, '.0') THEN substr({j}, 1, length({j}) - 2) ELSE {j} END, '')")
        else:
            parts.append(f"coalesce({j}, '')")
    parts.append(f"CASE WHEN {is_refund} THEN 'true' ELSE 'false' END")
    return "concat(" + ", ',', ".join(parts) + ", chr(10))"


@dataclass(frozen=True)
class _FastTx:
    """Transactions cleaned in DuckDB; the kept rows are ``rule = 0`` in table ``tx``."""

    fields: list[str]
    raw_rows: int
    kept_rows: int
    rejected: pd.DataFrame


def _fast_transactions(path: Path, con, known_customers: "Callable[[], pd.Series]") -> _FastTx | None:
    """Applies every transactions rule in DuckDB, or returns None when the pandas path must do it.

    The fast path takes a file only when it reads it exactly as :func:`parse_transactions` does:
    JSON Lines, ASCII without escapes (``\\``), every line an object; the first line holds every
    key there is; ``amount``/``quantity`` are JSON numbers written as plain decimals below 1e9;
    every other field is a JSON string without a space at either end. No unknown or repeated keys
    and no explicit nulls: the file's ``"`` count must equal what the parsed values account for
    (each of those would add quotes nothing accounts for). DuckDB stops at any line it cannot
    parse (the pandas path rejects such a line on its own).
    Rejected rows are rendered by the pandas functions (:func:`validate_transaction_records`,
    :func:`_all_rejected`), from the rows' JSON texts.

    Args:
        path: transactions.json.
        con: A DuckDB connection (session time zone UTC); the result stays in its table ``tx``.
        known_customers: Gives the kept customer ids; called once the file is read (the customers
            can be cleaned meanwhile).

    Returns:
        Row counts and the rejected rows, or None.
    """
    import threading

    import duckdb
    import pyarrow as pa

    with path.open("rb") as fh:
        first_line = fh.readline(1 << 20)
    try:
        first = json.loads(first_line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(first, dict) or not first:
        return None
    fields = list(first)
    if (any(not _FAST_KEY.fullmatch(f) or f in _FAST_RESERVED for f in fields)
            or any(f not in fields for f in REQUIRED_TRANSACTION_FIELDS)):
        return None
    facts: list[_ByteFacts] = []
    scan = threading.Thread(target=lambda: facts.append(_byte_facts(path)), name="json-byte-scan")
    scan.start()

    j = {f: f"j{i}" for i, f in enumerate(fields)}  # each field's JSON text
    text_fields = [f for f in fields if f not in _FAST_NUMERIC]
    checks, quotes = [], []
    for f in fields:
        if f in _FAST_NUMERIC:
            checks.append(f"({j[f]} IS NULL OR regexp_full_match({j[f]}, {_sql_text(_NUMBER_SAFE)}))")
            quotes.append(f"CASE WHEN {j[f]} IS NULL THEN 0 ELSE 2 END")
        else:
            checks.append(f"({j[f]} IS NULL OR starts_with({j[f]}, '\"'))")
            quotes.append(f"CASE WHEN {j[f]} IS NULL THEN 0 ELSE 4 END")
    checks.append("(" + " OR ".join(f"{j[f]} IS NOT NULL" for f in fields) + ")")  # `{}` and `null` lines
    # No string starts or ends with a space: the line's fields are JSON texts side by side, with no
    # space between them, so a quote next to a space is inside a string.
    checks.append("NOT contains(line, '\" ') AND NOT contains(line, ' \"')")
    jts, jcid, jamount = j["timestamp"], j[ID_COLUMN], j["amount"]
    refund_texts = ", ".join(_sql_text(f'"{s}"') for s in sorted(REFUND_STATUSES))
    is_refund = f"coalesce(lower({j['status']}) IN ({refund_texts}), false)" if "status" in j else "false"
    canonical = (f"(length({jts}) = 22 AND substr({jts}, 12, 1) = 'T' AND ends_with({jts}, 'Z\"'))")
    ts_out = f"CASE WHEN {canonical} THEN substr({jts}, 2, 20) ELSE {_iso_sql('ts')} END"
    rule = (f"CASE WHEN {jcid} IS NULL OR {jcid} = '\"\"' THEN 1 WHEN {jts} IS NULL THEN 2 "
            f"WHEN NOT ts_safe THEN {_PENDING} WHEN ts IS NULL OR {_TS_OUTSIDE} THEN 3 WHEN {jamount} IS NULL THEN 4 "
            f"WHEN abs(try_cast({jamount} AS DOUBLE)) > {MAX_ABS_AMOUNT!r} THEN 6 "
            f"WHEN try_cast({jamount} AS DOUBLE) < 0 AND NOT is_refund THEN 7 ELSE 0 END")
    # Rows not kept (yet) carry their fields' JSON texts in `line` instead, for the pandas rules.
    raw_line = "concat_ws(chr(1), " + ", ".join(f"coalesce({j[f]}, chr(2))" for f in fields) + ")"
    json_columns = "{" + ", ".join(f"{_sql_text(f)}: 'JSON'" for f in fields) + "}"
    started = time.monotonic()
    try:
        _sql(con, f"""
            CREATE TABLE tx AS
            SELECT line, {jcid} AS cid, {j['transaction_id'] if 'transaction_id' in j else 'NULL::VARCHAR'} AS tid,
                   ts, is_refund, rule::TINYINT AS rule,
                   CASE WHEN {' AND '.join(checks)} THEN ({' + '.join(quotes)})::UTINYINT
                        ELSE error({_sql_text(_NOT_FAST)}) END AS quotes
            FROM (SELECT *, CASE WHEN rule = 0 THEN {_line_sql(fields, j, ts_out, 'is_refund')} ELSE {raw_line} END AS line
            FROM (SELECT *, {rule} AS rule FROM (
                  SELECT *, CASE WHEN ts_safe THEN try_cast(substr({jts}, 2, length({jts}) - 2) AS TIMESTAMPTZ) END AS ts,
                         {is_refund} AS is_refund
                  FROM (SELECT *, coalesce(regexp_full_match({jts}, {_sql_text('"' + _TS_SAFE + '"')}), false) AS ts_safe
                        FROM (SELECT {', '.join(f'{_ident(f)}::VARCHAR AS {j[f]}' for f in fields)}
                              FROM read_json({_sql_text(str(path))}, format='newline_delimited', columns={json_columns}))))))
        """)
    except duckdb.Error as exc:  # unreadable for DuckDB (or out of memory): the pandas path decides
        scan.join()
        logger.info("%s: fast path not taken (%s)", path.name, str(exc).splitlines()[0])
        return None
    rows, expected_quotes, pending = con.execute(
        "SELECT count(*), coalesce(sum(quotes), 0), count(*) FILTER (WHERE rule IS NULL) FROM tx").fetchall()[0]
    scan.join()
    fact = facts[0] if facts else None
    why = None
    if fact is None or not fact.ascii or fact.backslash:
        why = "not ASCII, or escapes in strings"
    elif rows == 0:
        why = "no records"
    elif fact.quotes != expected_quotes:
        why = "keys beyond the first line's, repeated keys or explicit nulls"
    if why:
        logger.info("%s: fast path not taken (%s)", path.name, why)
        return None
    logger.info("%s: %d records read by DuckDB (%.1fs)", path.name, rows, time.monotonic() - started)
    jraw = {f: f"nullif(string_split(line, chr(1))[{i + 1}], chr(2))" for i, f in enumerate(fields)}
    if pending:
        texts = [r[0] for r in con.execute(
            f"SELECT DISTINCT {jraw['timestamp']} FROM tx WHERE rule IS NULL").fetchall()]
        if len(texts) > _MAX_ODD_TIMESTAMPS:
            logger.info("%s: fast path not taken (%d distinct timestamps in other formats)", path.name, len(texts))
            return None
        parsed = pd.to_datetime(pd.Series([json.loads(t) for t in texts], dtype=object), format="ISO8601",
                                utc=True, errors="coerce")
        # Outside the plausible range: NULL here, so rejected (the pandas rules give the reason).
        parsed = parsed.mask((parsed < pd.Timestamp(EARLIEST_TIMESTAMP)) | (parsed >= pd.Timestamp(LATEST_TIMESTAMP)))
        if (parsed.dropna().dt.as_unit("ns").astype("int64") % 1000 != 0).any():
            logger.info("%s: fast path not taken (timestamps finer than microseconds)", path.name)
            return None
        con.register("odd_ts", pd.DataFrame({"t": texts, "ts": parsed}))
        amount_raw = jraw["amount"]
        _sql(con, f"UPDATE tx SET ts = odd_ts.ts FROM odd_ts WHERE tx.rule IS NULL AND {jraw['timestamp']} = odd_ts.t")
        new_rule = (f"CASE WHEN ts IS NULL THEN 3 WHEN {amount_raw} IS NULL THEN 4 "
                    f"WHEN abs(try_cast({amount_raw} AS DOUBLE)) > {MAX_ABS_AMOUNT!r} THEN 6 "
                    f"WHEN try_cast({amount_raw} AS DOUBLE) < 0 AND NOT is_refund THEN 7 ELSE 0 END")
        _sql(con, f"UPDATE tx SET rule = {new_rule}, line = CASE WHEN {new_rule} = 0 THEN "
                  f"{_line_sql(fields, jraw, _iso_sql('ts'), 'is_refund')} ELSE line END WHERE rule IS NULL")
        con.unregister("odd_ts")

    late = "false"
    passed = con.execute("SELECT count(*) FROM tx WHERE rule = 0").fetchall()[0][0]
    if passed:  # log_end_limit's k-th smallest, as the (passed - 1 - k)-th largest: a small top-N
        k = _log_end_rank(passed)
        reference = con.execute(
            f"SELECT ts FROM tx WHERE rule = 0 ORDER BY ts DESC LIMIT 1 OFFSET {passed - 1 - k}").fetchall()[0][0]
        limit = pd.Timestamp(reference).tz_convert("UTC") + pd.Timedelta(days=LOG_END_GRACE_DAYS)
        late = f"ts > TIMESTAMPTZ '{limit.isoformat()}'"
    ids = known_customers().astype(str).to_numpy()
    con.register("known_customers", pa.table({"id": pa.array(ids, pa.string())}))
    known = "(SELECT '\"' || id || '\"' FROM known_customers)"
    _sql(con, f"""
        CREATE TABLE cross_rejected AS
        SELECT rid, CASE WHEN late THEN 10 WHEN unknown THEN 8 ELSE 9 END AS code FROM (
            SELECT rid, late, unknown,
                   CASE WHEN maybe_dup THEN row_number() OVER (PARTITION BY tid ORDER BY rid) END AS nth
            FROM (SELECT rowid AS rid, tid, {late} AS late, NOT (cid IN {known}) AS unknown,
                         coalesce(tid IN (SELECT tid FROM tx WHERE rule = 0 AND tid IS NOT NULL
                                          GROUP BY tid HAVING count(*) > 1), false) AS maybe_dup
                  FROM tx WHERE rule = 0)
            WHERE late OR unknown OR maybe_dup)
        WHERE late OR unknown OR nth > 1
    """)
    con.unregister("known_customers")
    _sql(con, "UPDATE tx SET rule = c.code FROM cross_rejected c WHERE tx.rowid = c.rid")

    per_record = _fast_rejected_records(con, fields)
    if per_record is None:
        logger.warning("%s: fast path not taken (its rules kept rows the pandas rules reject)", path.name)
        return None
    rejected = _all_rejected(per_record, *_fast_cross_rejected(con, fields))
    kept_rows = rows - len(rejected)
    return _FastTx(fields=fields, raw_rows=rows, kept_rows=kept_rows, rejected=rejected)


def _text_frame(columns: dict[str, list]) -> pd.DataFrame:
    text = pd.StringDtype("pyarrow")
    return pd.DataFrame({k: pd.Series(v, dtype=text if k not in _FAST_NUMERIC else "float64")
                         for k, v in columns.items()})


def _fast_rejected_records(con, fields: list[str]) -> pd.DataFrame | None:
    """Rows the per-record rules reject, rendered by :func:`validate_transaction_records`, or None
    when that function would keep one of them."""
    rows = con.execute("SELECT rowid + 1, line FROM tx WHERE rule BETWEEN 1 AND 7 ORDER BY rowid").fetchall()
    values = {f: [] for f in fields}
    for _, raw in rows:
        for f, text in zip(fields, raw.split("\x01")):
            value = None if text == "\x02" else json.loads(text)
            values[f].append(float(value) if f in _FAST_NUMERIC and value is not None else value)
    still_kept, rejected = validate_transaction_records(_text_frame(values))
    if len(still_kept):
        return None
    source_rows = np.array([r[0] for r in rows], dtype=np.int64)
    rejected[SOURCE_ROW] = source_rows[rejected[SOURCE_ROW].to_numpy() - 1]
    return rejected


def _fast_cross_rejected(con, fields: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Kept records the cross-record rules reject, typed as :func:`validate_transaction_records` keeps
    them, and their reasons."""
    import csv
    import io

    codes = ", ".join(map(str, _CROSS_REASONS))
    rows = con.execute(f"SELECT rowid + 1, line, ts, is_refund, rule FROM tx WHERE rule IN ({codes}) ORDER BY rowid"
                       ).fetchall()
    parsed = list(csv.reader(io.StringIO("".join(r[1] for r in rows))))
    columns = {f: [row[i] for row in parsed] for i, f in enumerate(fields)}
    for f in fields:
        if f in _FAST_NUMERIC:
            columns[f] = [float(v) if v != "" else None for v in columns[f]]
        elif f != "timestamp":
            # pyarrow writes a missing text as nothing and an empty one as "": both read back as ''
            # here, and both are written as '' to rejected_transactions.csv.
            columns[f] = [v if v != "" else None for v in columns[f]]
    frame = _text_frame({f: v for f, v in columns.items() if f != "timestamp"})
    frame.insert(fields.index("timestamp"), "timestamp",
                 pd.Series(pd.to_datetime([r[2] for r in rows], utc=True), dtype="datetime64[ns, UTC]"))
    frame = frame[fields]
    frame.insert(0, SOURCE_ROW, np.array([r[0] for r in rows], dtype=np.int64))
    frame["is_refund"] = np.array([r[3] for r in rows], dtype=bool)
    return frame, np.array([_CROSS_REASONS[r[4]] for r in rows], dtype=object)


def _write_text_bytes(fh, lines: "pa.Array") -> None:
    """Writes the strings of a pyarrow string array back to back."""
    import pyarrow as pa

    if isinstance(lines, pa.ChunkedArray):
        for chunk in lines.chunks:
            _write_text_bytes(fh, chunk)
        return
    if lines.null_count or not len(lines):
        if lines.null_count:
            raise ValueError("a line of filtered_sales.csv is missing")
        return
    width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    if not (pa.types.is_string(lines.type) or pa.types.is_large_string(lines.type)):
        lines = lines.cast(pa.large_string())
        width = np.int64
    offsets = np.frombuffer(lines.buffers()[1], dtype=width)[lines.offset : lines.offset + len(lines) + 1]
    fh.write(lines.buffers()[2][int(offsets[0]) : int(offsets[-1])])


def run_fast(raw_dir: Path, out_dir: Path, *, churn_window_days: int = 90, validation_fraction: float = 0.2,
             seed: int = 42, cutoff: "str | pd.Timestamp | None" = None) -> dict | None:
    """:func:`run` with DuckDB for the transactions, or None (nothing written) when the input needs the pandas path.

    Writes the same interim files as :func:`prepare` + :func:`write_interim`, byte for byte.

    Args:
        raw_dir: Folder with customers.csv and transactions.json.
        out_dir: Interim folder.
        churn_window_days: Label window.
        validation_fraction: Share of labelled customers in validation.
        seed: Split seed.
        cutoff: As :func:`prepare`.

    Returns:
        The metadata, or None.

    Raises:
        RawDataError: As :func:`prepare`.
    """
    import importlib
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is pinned in requirements.txt
        return None

    if churn_window_days <= 0 or not 0 < validation_fraction < 1:
        return None  # the pandas path raises the error
    cutoff_at = parse_cutoff(cutoff)
    tx_path = raw_dir / TRANSACTIONS_FILE
    if not has_transaction_log(tx_path) or _is_json_array(tx_path):
        return None
    started = time.monotonic()
    customers_path = raw_dir / CUSTOMERS_FILE

    def cleaned_customers() -> Cleaned:
        importlib.import_module("sklearn.model_selection")  # seconds of imports the split needs later
        cleaned = clean_customers(read_customers(customers_path))
        logger.info("customers: %d raw, %d kept, %d rejected", cleaned.raw_rows, len(cleaned.kept),
                    len(cleaned.rejected))
        if cleaned.kept.empty:
            raise RawDataError(f"{customers_path}: no usable rows ({cleaned.accounting()['reasons']}).")
        return cleaned

    # The customers are cleaned (pandas, one core) while DuckDB reads the transactions.
    with tempfile.TemporaryDirectory(prefix="duckdb-") as spill, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="customers") as pool:
        pending_customers = pool.submit(cleaned_customers)
        con = duckdb.connect(config={"threads": max(1, os.cpu_count() or 1), "preserve_insertion_order": True,
                                     "temp_directory": spill, "memory_limit": "4GB"})
        try:
            _sql(con, "SET TimeZone = 'UTC'")
            fast = _fast_transactions(tx_path, con, lambda: pending_customers.result().kept[ID_COLUMN])
            if fast is None:
                pending_customers.cancel()
                return None
            customers = pending_customers.result()
            tx_acc = _accounting(fast.raw_rows, fast.kept_rows, fast.rejected)
            logger.info("transactions: %d raw, %d kept, %d rejected (%.1fs)", fast.raw_rows, fast.kept_rows,
                        len(fast.rejected), time.monotonic() - started)
            if fast.kept_rows == 0:
                raise RawDataError(f"{tx_path}: no usable rows ({tx_acc['reasons']}).")
            end = pd.Timestamp(con.execute("SELECT max(ts) FROM tx WHERE rule = 0").fetchall()[0][0]).tz_convert("UTC")
            active = None
            cutoff_at = label_cutoff(customers.kept, end, churn_window_days, cutoff_at)
            if LABEL_COLUMN not in customers.kept.columns:
                window_end = cutoff_at + pd.Timedelta(days=churn_window_days)
                ids = con.sql("SELECT DISTINCT substr(cid, 2, length(cid) - 2) FROM tx WHERE rule = 0 "
                              f"AND NOT is_refund AND ts > TIMESTAMPTZ '{cutoff_at.isoformat()}' "
                              f"AND ts <= TIMESTAMPTZ '{window_end.isoformat()}'").to_arrow_table().column(0)
                active = pd.Series(ids.to_pandas(types_mapper={ids.type: pd.StringDtype("pyarrow")}.get))
            labels = split_customers(labels_at(customers.kept, end, active, churn_window_days, cutoff_at),
                                     validation_fraction, seed)
            logger.info("labels (%s): cutoff %s, %d customers, churn rate %.1f%%", labels.source,
                        labels.cutoff.date(), len(labels.frame), 100 * labels.frame[LABEL_COLUMN].mean())
            metadata = _metadata(labels, customers.accounting(), tx_acc, churn_window_days, seed, validation_fraction,
                                 has_transactions=True)

            def write_sales(path: Path) -> None:
                header = ",".join(f'"{f}"' for f in [*fast.fields, "is_refund"]) + "\n"
                reader = con.sql("SELECT line FROM tx WHERE rule = 0").to_arrow_reader(1 << 20)
                with open(path, "wb") as fh:
                    fh.write(header.encode())
                    for batch in reader:
                        _write_text_bytes(fh, batch.column(0))

            _write_interim_files(out_dir, customers, write_sales, fast.rejected, labels, metadata)
        finally:
            con.close()
    return metadata


def run(raw_dir: Path, out_dir: Path, *, churn_window_days: int = 90, validation_fraction: float = 0.2, seed: int = 42,
        fast: bool = True, cutoff: "str | pd.Timestamp | None" = None) -> dict:
    """Runs the stage on folders and returns its metadata (row accounting included).

    With ``fast`` (the default), :func:`run_fast` does it when the input allows; the files are the
    same either way. ``cutoff``: as :func:`prepare`.
    """
    if fast:
        metadata = run_fast(raw_dir, out_dir, churn_window_days=churn_window_days,
                            validation_fraction=validation_fraction, seed=seed, cutoff=cutoff)
        if metadata is not None:
            return metadata
    prepared = prepare(raw_dir, churn_window_days=churn_window_days, validation_fraction=validation_fraction, seed=seed,
                       cutoff=cutoff)
    metadata = prepared.metadata(churn_window_days, seed, validation_fraction)
    write_interim(prepared, out_dir, metadata)
    return metadata


def cutoff_arg(text: str) -> str:
    """argparse type of ``--cutoff``: the cutoff as ISO text in UTC ('' for none), or a usage error."""
    try:
        cutoff = parse_cutoff(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return cutoff.isoformat() if cutoff is not None else ""


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
        epilog=("Label rule: cutoff = latest transaction - window; churned = no purchase in (cutoff, cutoff+window]. "
                "With a churned column in customers.csv, transactions.json is optional and the cutoff defaults to "
                "the latest transaction (no log: the newest signup_date)."),
    )
    parser.add_argument("--raw-dir", type=Path, default=layout.raw, help="folder with the raw inputs (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=layout.interim, help="interim folder (default: %(default)s)")
    parser.add_argument("--churn-window-days", type=int, default=90, help="label window in days (default: %(default)s)")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="validation share (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="split seed (default: %(default)s)")
    parser.add_argument("--cutoff", type=cutoff_arg, default="",
                        help="ISO date or instant (UTC) for features and labels (default: from the data, see below)")
    args = parser.parse_args(argv)
    setup_cli_logging()
    try:
        meta = run(args.raw_dir, args.out_dir, churn_window_days=args.churn_window_days,
                   validation_fraction=args.validation_fraction, seed=args.seed, cutoff=args.cutoff or None)
    except RawDataError as exc:
        logger.error("%s", exc)
        return 2
    for name, acc in meta["rows"].items():
        print(f"{name}: raw {acc['raw']} = kept {acc['kept']} + rejected {acc['rejected']} {acc['reasons'] or ''}")
    if not meta["has_transactions"]:
        print(f"{TRANSACTIONS_FILE}: no transaction log; labels from {CUSTOMERS_FILE}")
    print(f"cutoff {meta['cutoff']}, churn rate {meta['churn_rate']:.1%}, written to {args.out_dir}")
    return 0


def component(base_image: str) -> "PythonComponent":
    """The KFP component, built for the project's image (a compile-time setting)."""
    from kfp import dsl
    from kfp.dsl import Dataset, Output

    @dsl.component(base_image=base_image, install_kfp_package=False)
    def data_prep(raw_dir: str, churn_window_days: int, validation_fraction: float, seed: int,
                  interim: Output[Dataset], raw_digest: str = "", cutoff: str = ""):
        """Cleans raw inputs, fixes labels and split; rejected rows are kept with reasons.

        ``cutoff``: ISO date or instant (UTC) for features and labels; "" for the default (from the data).

        ``raw_digest`` (``churn.vertex.raw_digest`` of ``raw_dir`` at submit time) is part of the task's
        cache key, so new raw files under the same folder never hit an old cache entry.
        """
        from pathlib import Path

        from churn.layout import setup_cli_logging
        from churn.storage import local_input_dir
        from components.data_prep import run

        setup_cli_logging()
        with local_input_dir(raw_dir) as raw:
            meta = run(raw, Path(interim.path), churn_window_days=churn_window_days,
                       validation_fraction=validation_fraction, seed=seed, cutoff=cutoff or None)
        interim.metadata.update({"cutoff": meta["cutoff"], "label_source": meta["label_source"],
                                 "rows": meta["rows"], "churn_rate": meta["churn_rate"],
                                 "has_transactions": meta["has_transactions"],
                                 "raw_dir": raw_dir, "raw_digest": raw_digest})

    return data_prep


if __name__ == "__main__":
    raise SystemExit(main())
