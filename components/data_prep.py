"""Stage 1 — data_prep: raw customers + transactions → interim (clean, labelled, split).

Raw data is never edited. Every raw row ends up either kept (``data/interim/cleaned_customers.csv``,
``data/interim/filtered_sales.csv``) or rejected with a reason (``data/interim/rejected_<input>.csv``),
and the counts add up: raw = kept + rejected, per input. With a ``churned`` column in customers.csv
the transaction log is optional (absent, empty or ``[]``: ``has_transactions: false``).

One engine, DuckDB: each rule is one branch of a SQL ``CASE`` that returns the row's reason, and
DuckDB writes the interim files. This stage also fixes the label and the train/validation split
(stratified, seeded, by customer); feature_engineering turns that into the processed splits.

Run alone: ``python components/data_prep.py --raw-dir data/raw --out-dir data/interim``.
"""


import argparse
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churn.interim import CLEANED_CUSTOMERS, FILTERED_SALES, LABELS_FILE, METADATA_FILE, Interim, read_interim
from churn.schema import ID_COLUMN, LABEL_COLUMN

if TYPE_CHECKING:  # pragma: no cover
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
# "timestamp after the log's end": more than LOG_END_GRACE_DAYS after the log's reference end (see
# log_end_limit), so that a few stray future rows cannot move the cutoff.
LOG_END_QUANTILE_PER_MILLE = 999
LOG_END_MIN_TAIL = 2
LOG_END_GRACE_DAYS = 30
REFUND_STATUSES = frozenset({"refund", "refunded", "returned", "chargeback"})
LABEL_VALUES = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "1.0": 1, "0.0": 0}
SOURCE_ROW = "source_row"
REASON = "reason"
RAW_RECORD = "raw_record"
NOT_UTF8 = "not valid UTF-8"
MALFORMED = "malformed JSON record (not an object)"
IMPLAUSIBLE_TIMESTAMP = "implausible timestamp (before 1900-01-01 or from 2200-01-01 on)"
IMPLAUSIBLE_AMOUNT = f"implausible amount (|amount| above {MAX_ABS_AMOUNT:,.0f})"
AFTER_LOG_END = (f"timestamp after the log's end (more than {LOG_END_GRACE_DAYS} days after the log's "
                 f"{LOG_END_QUANTILE_PER_MILLE / 10:g}th percentile timestamp)")
UNPARSEABLE_TIMESTAMP = "unparseable timestamp (expected ISO 8601, e.g. 2024-01-31T13:45:00Z)"
NEGATIVE_AMOUNT = "negative amount not marked as a refund (set status to 'refunded')"
UNKNOWN_CUSTOMER = "unknown customer_id (not in kept customers)"
DUPLICATE_TRANSACTION = "duplicate transaction_id (first occurrence kept)"

# Typed columns of filtered_sales.csv (every other field is kept as text) and names a field may not take.
_NUMERIC_FIELDS = ("amount", "quantity")
_RESERVED_FIELDS = frozenset({SOURCE_ROW, REASON, RAW_RECORD, "is_refund"})
_WHITESPACE = " \t\r\n\x0b\x0c"
_RAW_TEXT_CHARS = 500  # a rejected record's raw text is cut to this length
# A record that is a JSON object (json_type raises on invalid JSON: the CASE keeps it from seeing any).
_IS_OBJECT = "coalesce(CASE WHEN bad IS NULL THEN try(json_type(line)) = 'OBJECT' END, false)"


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
        return _accounting(self.raw_rows, len(self.kept), reasons)


def _accounting(raw_rows: int, kept_rows: int, reasons: dict) -> dict:
    return {"raw": int(raw_rows), "kept": int(kept_rows), "rejected": int(sum(reasons.values())),
            "reasons": {str(k): int(v) for k, v in sorted(reasons.items())}}


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


# --------------------------------------------------------------------------- the engine


@contextmanager
def _duckdb() -> Iterator[Any]:
    """A DuckDB connection in UTC that spills to a private temporary folder."""
    import tempfile

    import duckdb

    with tempfile.TemporaryDirectory(prefix="data-prep-") as spill:
        con = duckdb.connect(config={"threads": max(1, os.cpu_count() or 1), "preserve_insertion_order": True,
                                     "temp_directory": spill, "memory_limit": "4GB"})
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()


def _q(name: str) -> str:
    """A SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _s(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _f(fields: list[str], name: str) -> str:
    """The ``tx`` column holding field ``name``'s text (NULL when no record has the field)."""
    return f"f{fields.index(name)}" if name in fields else "NULL::VARCHAR"


def _copy(con: Any, query: str, path: Path) -> None:
    """Writes a query's rows to a CSV file with a header (DuckDB quotes what needs quoting)."""
    con.execute(f"COPY ({query}) TO {_s(str(path))} (FORMAT csv, HEADER true)")


def _frame(con: Any, query: str) -> pd.DataFrame:
    return con.execute(query).df()


# --------------------------------------------------------------------------- customers


def read_customers(path: Path) -> pd.DataFrame:
    """Reads customers.csv with every column as text (ids keep leading zeros).

    Args:
        path: The CSV file.

    Returns:
        The raw table, empty cells as empty strings.

    Raises:
        RawDataError: The file is missing, unreadable, repeats a column name or lacks a required column.
    """
    import csv

    if not path.is_file():
        raise RawDataError(f"{path}: customers file not found. Put {CUSTOMERS_FILE} in the raw folder "
                           f"(or run `make data` to generate sample data).")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = [name.strip() for name in next(csv.reader(fh), [])]
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
        raise RawDataError(f"{path}: cannot be read as CSV ({exc}). Fix the file's format.") from exc
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise RawDataError(f"{path}: column name(s) {repeated} appear more than once in the header. Give every "
                           f"column a unique name (or remove the repeated column).")
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_CUSTOMER_COLUMNS if c not in raw.columns]
    if missing:
        raise RawDataError(f"{path}: missing required column(s) {missing}; found {list(raw.columns)}. "
                           f"customers.csv needs {list(REQUIRED_CUSTOMER_COLUMNS)}.")
    return raw


def _customer_rules(con: Any, raw: pd.DataFrame) -> list[str]:
    """Creates table ``cust``: every customer row, trimmed, with ``signup`` and ``label`` typed and its
    ``reason`` (NULL = kept). Rules, first match wins: empty ``customer_id``; ``signup_date`` not an
    ISO date, or outside [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP); ``churned`` not one of
    LABEL_VALUES (empty = unlabelled, kept); a ``customer_id`` seen on an earlier kept row."""
    columns = [str(c) for c in raw.columns]
    frame = raw.astype(str).set_axis([f"c{i}" for i in range(len(columns))], axis=1)
    frame.insert(0, SOURCE_ROW, range(1, len(frame) + 1))
    con.register("raw_customers", frame)
    col = {c: f"c{i}" for i, c in enumerate(columns)}
    label_values = ", ".join(_s(k) for k in LABEL_VALUES)
    label_map = " ".join(f"WHEN {_s(k)} THEN {v}" for k, v in LABEL_VALUES.items())
    has_label = LABEL_COLUMN in col
    label = f"CASE lower({col[LABEL_COLUMN]}) {label_map} END" if has_label else "NULL"
    label_rule = (f"WHEN {col[LABEL_COLUMN]} <> '' AND lower({col[LABEL_COLUMN]}) NOT IN ({label_values}) "
                  "THEN 'invalid churned value (use 0/1, true/false or yes/no)'") if has_label else ""
    con.execute(f"""
        CREATE OR REPLACE TABLE cust AS
        SELECT * EXCLUDE (rule), CASE WHEN rule IS NULL AND row_number() OVER (
                   PARTITION BY {col[ID_COLUMN]}, rule IS NULL ORDER BY {SOURCE_ROW}) > 1
               THEN 'duplicate customer_id (first occurrence kept)' ELSE rule END AS {REASON}
        FROM (SELECT *, CASE WHEN {col[ID_COLUMN]} = '' THEN 'missing customer_id'
                   WHEN signup IS NULL THEN 'unparseable signup_date (expected an ISO date like 2024-01-31)'
                   WHEN signup < TIMESTAMPTZ {_s(EARLIEST_TIMESTAMP)} OR signup >= TIMESTAMPTZ {_s(LATEST_TIMESTAMP)}
                   THEN 'implausible signup_date (before 1900-01-01 or from 2200-01-01 on)' {label_rule} END AS rule
              FROM (SELECT *, try_cast({col['signup_date']} AS TIMESTAMPTZ) AS signup, ({label})::TINYINT AS label
                    FROM (SELECT {SOURCE_ROW}, {', '.join(f'trim(c{i}, {_s(_WHITESPACE)}) AS c{i}'
                                                         for i in range(len(columns)))} FROM raw_customers)))
        ORDER BY {SOURCE_ROW}
    """)
    con.unregister("raw_customers")
    return columns


def _kept_customers_sql(columns: list[str], *, as_text: bool) -> str:
    """Kept customers in their columns: ``signup_date`` typed (or ``%Y-%m-%d`` text), ``churned`` 0/1."""
    parts = []
    for i, c in enumerate(columns):
        if c == "signup_date":
            parts.append(f"{'strftime(signup, ' + _s('%Y-%m-%d') + ')' if as_text else 'signup'} AS {_q(c)}")
        elif c == LABEL_COLUMN:
            parts.append(f"label AS {_q(c)}")
        else:
            parts.append(f"c{i} AS {_q(c)}")
    return f"SELECT {', '.join(parts)} FROM cust WHERE {REASON} IS NULL ORDER BY {SOURCE_ROW}"


def _rejected_customers_sql(columns: list[str]) -> str:
    cells = ", ".join(f"c{i} AS {_q(c)}" for i, c in enumerate(columns))
    return f"SELECT {SOURCE_ROW}, {REASON}, {cells} FROM cust WHERE {REASON} IS NOT NULL ORDER BY {SOURCE_ROW}"


def _fetch_customers(con: Any, columns: list[str]) -> Cleaned:
    kept = _frame(con, _kept_customers_sql(columns, as_text=False))
    for c in columns:
        if c not in ("signup_date", LABEL_COLUMN):
            kept[c] = kept[c].astype(object)
    if LABEL_COLUMN in kept.columns:
        kept[LABEL_COLUMN] = kept[LABEL_COLUMN].astype("Int8")
    kept["signup_date"] = kept["signup_date"].dt.tz_convert("UTC")
    rejected = _frame(con, _rejected_customers_sql(columns))
    raw_rows = con.execute("SELECT count(*) FROM cust").fetchone()[0]
    return Cleaned(kept=kept, rejected=rejected, raw_rows=raw_rows)


def clean_customers(raw: pd.DataFrame) -> Cleaned:
    """Validates customer rows (rules: :func:`_customer_rules`).

    Args:
        raw: Table from :func:`read_customers`.

    Returns:
        Kept rows (``signup_date`` as a UTC timestamp, ``churned`` as nullable Int8 when present,
        attributes as stripped text) and rejected rows with reasons.
    """
    with _duckdb() as con:
        return _fetch_customers(con, _customer_rules(con, raw))


# --------------------------------------------------------------------------- transactions


def _is_json_array(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _load_records(con: Any, path: Path) -> None:
    """Creates table ``rec``: one row per record (non-blank line, or array item) in file order, with
    its 1-based ``source_row``, its text ``line`` and ``bad`` (NOT_UTF8 for lines with invalid UTF-8)."""
    if _is_json_array(path):
        _load_array(con, path)
        return
    # One VARCHAR column per line: no delimiter, no quotes. Lines DuckDB cannot take (invalid UTF-8,
    # say) land in its rejects table with their line number and byte offset.
    con.execute(f"""
        CREATE OR REPLACE TABLE raw_lines AS SELECT line FROM read_csv({_s(str(path))}, columns={{'line': 'VARCHAR'}},
            header=false, delim='\\0', quote='', escape='', auto_detect=false, strict_mode=false, max_line_size=1073741824,
            store_rejects=true, ignore_errors=true, rejects_table='line_rejects', rejects_scan='line_scans')
    """)
    rejects = con.execute("SELECT line, min(line_byte_position), arg_min(error_type, line_byte_position) "
                          "FROM line_rejects GROUP BY line ORDER BY line").fetchall()
    raw_text = _raw_lines(path, [r[1] - 1 for r in rejects])  # DuckDB's line_byte_position counts from 1
    bad = pd.DataFrame({"p": [r[0] for r in rejects], "text": raw_text,
                        "bad": [NOT_UTF8 if r[2] == "INVALID ENCODING" else MALFORMED for r in rejects]})
    bad["shift"] = bad["p"] - range(1, len(bad) + 1)  # rejected lines before p, per rejected line
    con.register("bad_lines", bad.astype({"p": "int64", "shift": "int64"}))
    # The physical line of the k-th line read: k plus the rejected lines before it (an ASOF join).
    physical = ("SELECT k + coalesce(n, 0) AS p, line, NULL::VARCHAR AS bad FROM "
                "(SELECT rowid + 1 AS k, line FROM raw_lines) ASOF LEFT JOIN "
                "(SELECT shift, row_number() OVER (ORDER BY p) AS n FROM bad_lines) ON k > shift")
    blank = f"line IS NULL OR trim(line, {_s(_WHITESPACE)}) = ''"
    if not len(bad) and not con.execute(f"SELECT count(*) FROM raw_lines WHERE {blank}").fetchone()[0]:
        # Every line a record: the line number is the source row (no sort needed).
        con.execute(f"CREATE OR REPLACE VIEW rec AS SELECT rowid + 1 AS {SOURCE_ROW}, line, NULL::VARCHAR AS bad "
                    "FROM raw_lines")
    else:
        con.execute(f"""
            CREATE OR REPLACE TABLE rec AS
            SELECT row_number() OVER (ORDER BY p) AS {SOURCE_ROW}, line, bad
            FROM ({physical} UNION ALL SELECT p, text, bad FROM bad_lines)
            WHERE bad IS NOT NULL OR NOT ({blank})
        """)
    con.unregister("bad_lines")


def _raw_lines(path: Path, offsets: list[int]) -> list[str]:
    """The text of the lines that start at ``offsets`` (invalid bytes as ``\\xNN``), cut to _RAW_TEXT_CHARS."""
    texts = []
    with path.open("rb") as fh:
        for offset in offsets:
            fh.seek(offset)
            line = fh.readline(4 * _RAW_TEXT_CHARS).rstrip(b"\r\n")
            texts.append(line.decode("utf-8", errors="backslashreplace")[:_RAW_TEXT_CHARS])
    return texts


def _load_array(con: Any, path: Path) -> None:
    """``rec`` for a file holding one JSON array: one record per item, as its JSON text."""
    import duckdb

    try:
        valid = con.execute(f"SELECT json_valid(ltrim(content, chr(65279))) FROM read_text({_s(str(path))})").fetchone()[0]
    except duckdb.Error as exc:  # invalid UTF-8
        raise RawDataError(f"{path}: not valid UTF-8 ({str(exc).splitlines()[0]}). Save the file as UTF-8, or write "
                           f"one JSON object per line (JSON Lines) so that only the records with bad bytes are "
                           f"rejected.") from exc
    if not valid:
        raise RawDataError(f"{path}: starts with '[' but is not a valid JSON array. Fix the file or write one "
                           f"JSON object per line (JSON Lines).")
    con.execute(f"""
        CREATE OR REPLACE TABLE rec AS
        SELECT i AS {SOURCE_ROW}, items[i] AS line, NULL::VARCHAR AS bad
        FROM (SELECT json_extract(ltrim(content, chr(65279)), '$[*]')::VARCHAR[] AS items
              FROM read_text({_s(str(path))})), range(1, len(items) + 1) t(i)
        ORDER BY i
    """)


def _fields(con: Any) -> tuple[list[str], int]:
    """The records' keys in order of first appearance, and how many records are JSON objects."""
    rows = con.execute("SELECT keys, n FROM (SELECT json_keys(line) AS keys, min(source_row) AS first, count(*) AS n "
                       f"FROM rec WHERE {_IS_OBJECT} GROUP BY keys) ORDER BY first").fetchall()
    return list(dict.fromkeys(k for keys, _ in rows for k in keys)), sum(n for _, n in rows)


def _transaction_rules(con: Any, path: Path) -> list[str]:
    """Creates table ``tx`` from ``rec``: each record's fields (as text), ``ts``, ``amount``,
    ``is_refund`` and the reason of the first per-record rule it breaks (NULL = passes).

    Rules, first match wins: not UTF-8; not a JSON object; missing ``customer_id``; missing or
    unparseable ``timestamp``; timestamp outside [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP); missing,
    non-numeric or non-finite ``amount`` (``NaN``, ``Infinity``, ``1e999``); ``|amount|`` above
    MAX_ABS_AMOUNT; negative ``amount`` whose ``status`` is not a refund.

    Returns:
        The fields, in order of first appearance.

    Raises:
        RawDataError: A required field appears in no record, or a field has a reserved name.
    """
    fields, objects = _fields(con)
    missing = [f for f in REQUIRED_TRANSACTION_FIELDS if f not in fields]
    if objects and missing:
        raise RawDataError(f"{path}: required field(s) {missing} appear in no record; found {sorted(fields)}. "
                           f"Each transaction needs {list(REQUIRED_TRANSACTION_FIELDS)}.")
    reserved = sorted(set(fields) & _RESERVED_FIELDS | ({""} & set(fields)))
    if reserved:
        raise RawDataError(f"{path}: field name(s) {reserved} cannot be used (empty, or reserved for data_prep's columns {sorted(_RESERVED_FIELDS)}); "
                           f"rename them in the records.")
    paths = ", ".join(_s("$." + json.dumps(f, ensure_ascii=False)) for f in fields)
    values = ", ".join(f"v[{i + 1}] AS f{i}" for i in range(len(fields)))
    text = {f: (f"trim({_f(fields, f)}, {_s(_WHITESPACE)})" if f in fields else "NULL::VARCHAR")
            for f in (*REQUIRED_TRANSACTION_FIELDS, "status")}
    refunds = ", ".join(_s(s) for s in sorted(REFUND_STATUSES))
    amount_type = f"json_type(line, {_s('$.amount')})" if "amount" in fields else "NULL"
    con.execute(f"""
        CREATE OR REPLACE TABLE tx AS
        SELECT {SOURCE_ROW}, line, * EXCLUDE ({SOURCE_ROW}, line, bad, object, v),
               CASE WHEN bad IS NOT NULL THEN bad
                    WHEN NOT object THEN {_s(MALFORMED)}
                    WHEN coalesce({text[ID_COLUMN]}, '') = '' THEN 'missing customer_id'
                    WHEN {_f(fields, 'timestamp')} IS NULL THEN 'missing timestamp'
                    WHEN ts IS NULL THEN {_s(UNPARSEABLE_TIMESTAMP)}
                    WHEN ts < TIMESTAMPTZ {_s(EARLIEST_TIMESTAMP)} OR ts >= TIMESTAMPTZ {_s(LATEST_TIMESTAMP)}
                         THEN {_s(IMPLAUSIBLE_TIMESTAMP)}
                    WHEN {_f(fields, 'amount')} IS NULL THEN 'missing amount'
                    WHEN amt IS NULL THEN 'non-numeric amount'
                    WHEN NOT isfinite(amt) THEN CASE WHEN {amount_type} = 'VARCHAR' THEN 'non-numeric amount'
                                                     ELSE 'non-finite amount' END
                    WHEN abs(amt) > {MAX_ABS_AMOUNT!r} THEN {_s(IMPLAUSIBLE_AMOUNT)}
                    WHEN amt < 0 AND NOT is_refund THEN {_s(NEGATIVE_AMOUNT)}
               END AS {REASON}
        FROM (SELECT *, try_cast({text['timestamp']} AS TIMESTAMPTZ) AS ts,
                     try_cast({text['amount']} AS DOUBLE) AS amt,
                     coalesce(lower({text['status']}) IN ({refunds}), false) AS is_refund
              FROM (SELECT *, {values if fields else 'NULL AS _none'}
                    FROM (SELECT *, CASE WHEN object THEN json_extract_string(line, [{paths}]) END AS v
                          FROM (SELECT *, {_IS_OBJECT} AS object
                                FROM rec))))
    """)
    if not fields:
        con.execute("ALTER TABLE tx DROP COLUMN _none")
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'rec'").fetchone()[0]
    con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} rec")
    con.execute("DROP TABLE IF EXISTS raw_lines")
    return fields


def _log_end_limit_sql(table: str, column: str) -> str:
    """SQL for :func:`log_end_limit` over ``column`` of ``table`` (NULL for no rows)."""
    rank = (f"greatest(0, least((count(*) - 1) * {LOG_END_QUANTILE_PER_MILLE} // 1000, "
            f"count(*) - 1 - {LOG_END_MIN_TAIL}))")
    return (f"SELECT max({column}) + INTERVAL {LOG_END_GRACE_DAYS} DAY FROM (SELECT {column} FROM {table} "
            f"ORDER BY {column} LIMIT 1 OFFSET (SELECT {rank} FROM {table}))")


def log_end_limit(timestamps: pd.Series) -> pd.Timestamp | None:
    """The latest timestamp the log's end allows: LOG_END_GRACE_DAYS after the log's reference end.

    The reference end is the k-th smallest of the n timestamps (0-based), k = (n - 1) * 999 // 1000
    but at most n - 1 - LOG_END_MIN_TAIL: the latest 0.1% of the rows, and at least the 2 latest,
    cannot move it, however far in the future they are.

    Args:
        timestamps: UTC timestamps of the records that pass the per-record rules.

    Returns:
        The limit (UTC), or None for no timestamps.
    """
    with _duckdb() as con:
        con.register("stamps", pd.DataFrame({"ts": timestamps.reset_index(drop=True)}))
        limit = con.execute(_log_end_limit_sql("stamps", "ts")).fetchone()[0]
    return None if limit is None else pd.Timestamp(limit).tz_convert("UTC")


def _cross_rules(con: Any, fields: list[str], known: str) -> None:
    """Applies the cross-record rules to the rows of ``tx`` that pass the per-record ones, in place.

    First match wins: a timestamp after :func:`log_end_limit`; a customer not in table ``known``
    (column ``customer_id``); a ``transaction_id`` seen on an earlier row (the first one is kept;
    rows rejected by these rules count as earlier rows, those rejected per record don't).
    """
    limit = f"({_log_end_limit_sql('(SELECT ts FROM tx WHERE reason IS NULL)', 'ts')})"
    tid = f"trim({_f(fields, 'transaction_id')}, {_s(_WHITESPACE)})"
    cid = f"trim({_f(fields, ID_COLUMN)}, {_s(_WHITESPACE)})"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cross_rejected AS
        SELECT {SOURCE_ROW}, CASE WHEN late THEN {_s(AFTER_LOG_END)} WHEN unknown THEN {_s(UNKNOWN_CUSTOMER)}
                                  ELSE {_s(DUPLICATE_TRANSACTION)} END AS why
        FROM (SELECT {SOURCE_ROW}, ts > {limit} AS late, k.id IS NULL AS unknown,
                     tid IS NOT NULL AND row_number() OVER (PARTITION BY tid ORDER BY {SOURCE_ROW}) > 1 AS dup
              FROM (SELECT {SOURCE_ROW}, ts, {cid} AS cid, {tid} AS tid FROM tx WHERE {REASON} IS NULL) t
              LEFT JOIN (SELECT DISTINCT {ID_COLUMN} AS id FROM {known}) k ON t.cid = k.id)
        WHERE late OR unknown OR dup
    """)
    con.execute(f"UPDATE tx SET {REASON} = c.why FROM cross_rejected c WHERE tx.{SOURCE_ROW} = c.{SOURCE_ROW}")


def _kept_transactions_sql(fields: list[str], *, as_text: bool) -> str:
    """The kept rows of ``tx`` as filtered_sales.csv holds them: the fields in order (``customer_id``
    and text fields trimmed, ``timestamp`` UTC, ``amount``/``quantity`` numbers), then ``is_refund``."""
    # A text already in the file's form (2024-01-31T13:45:00Z, a valid time) is written as it is.
    t = f"trim({_f(fields, 'timestamp')}, {_s(_WHITESPACE)})"
    iso = (f"CASE WHEN length({t}) = 20 AND {t}[11] = 'T' AND {t}[20] = 'Z' AND {t}[12:13] < '24' "
           f"AND {t}[15:16] < '60' AND {t}[18:19] < '60' THEN {t} "
           "WHEN microsecond(ts) % 1000000 = 0 THEN strftime(ts, '%Y-%m-%dT%H:%M:%SZ') "
           "ELSE strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') END")
    parts = []
    for f in fields:
        if f == "timestamp":
            parts.append(f"{iso if as_text else 'ts'} AS timestamp")
        elif f == "amount":
            parts.append("amt AS amount")
        elif f in _NUMERIC_FIELDS:
            parts.append(f"try_cast({_f(fields, f)} AS DOUBLE) AS {_q(f)}")
        else:
            parts.append(f"trim({_f(fields, f)}, {_s(_WHITESPACE)}) AS {_q(f)}")
    return f"SELECT {', '.join([*parts, 'is_refund'])} FROM tx WHERE {REASON} IS NULL"


def _rejected_transactions_sql(fields: list[str]) -> str:
    """Rejected rows of ``tx``: each field's text and the record as written (``raw_record``)."""
    cells = "".join(f", f{i} AS {_q(f)}" for i, f in enumerate(fields))
    return (f"SELECT {SOURCE_ROW}, {REASON}{cells}, left(line, {_RAW_TEXT_CHARS}) AS {RAW_RECORD} FROM tx "
            f"WHERE {REASON} IS NOT NULL ORDER BY {SOURCE_ROW}")


def _transactions(con: Any, path: Path, known: str) -> list[str]:
    """All transactions rules: table ``tx`` with each record's reason (NULL = kept); returns the fields."""
    if not path.is_file():
        raise RawDataError(f"{path}: transactions file not found. Put {TRANSACTIONS_FILE} (JSON Lines or a JSON "
                           f"array) in the raw folder (or run `make data`).")
    _load_records(con, path)
    fields = _transaction_rules(con, path)
    if "timestamp" in fields and ID_COLUMN in fields:
        _cross_rules(con, fields, known)
    return fields


def _transaction_accounting(con: Any) -> dict:
    rows = con.execute(f"SELECT {REASON}, count(*) FROM tx GROUP BY {REASON}").fetchall()
    reasons = {r: n for r, n in rows if r is not None}
    return _accounting(sum(n for _, n in rows), sum(n for r, n in rows if r is None), reasons)


def clean_transactions(path: Path, known_customers: pd.Series) -> Cleaned:
    """Reads transactions.json (JSON Lines or one JSON array) and applies every transactions rule.

    Args:
        path: The file.
        known_customers: Kept ``customer_id`` values.

    Returns:
        Kept rows (text fields trimmed, ``timestamp`` UTC, ``amount`` float, ``is_refund``, ``source_row``)
        and rejected rows with their original texts, ``source_row`` and ``reason``.

    Raises:
        RawDataError: The file is missing or not readable as records, or a required field appears in no record.
    """
    with _duckdb() as con:
        con.register("known_customers", pd.DataFrame({ID_COLUMN: known_customers.astype(str).to_numpy()}))
        fields = _transactions(con, path, "known_customers")
        return _fetch_transactions(con, fields)


def _fetch_transactions(con: Any, fields: list[str]) -> Cleaned:
    kept_sql = _kept_transactions_sql(fields, as_text=False).replace("SELECT ", f"SELECT {SOURCE_ROW}, ", 1)
    kept = _frame(con, kept_sql + f" ORDER BY {SOURCE_ROW}")
    if "timestamp" in kept.columns:
        kept["timestamp"] = kept["timestamp"].dt.tz_convert("UTC")
    rejected = _frame(con, _rejected_transactions_sql(fields))
    return Cleaned(kept=kept, rejected=rejected, raw_rows=con.execute("SELECT count(*) FROM tx").fetchone()[0])


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


def labels_at(customers: pd.DataFrame, end: pd.Timestamp | None, active_after: pd.Series | None,
              churn_window_days: int, cutoff: pd.Timestamp | None = None) -> Labels:
    """Fixes the label of every trainable customer at :func:`label_cutoff`'s cutoff.

    With a ``churned`` column, that label; otherwise churned (1) = no purchase (refunds don't count)
    in (cutoff, cutoff + window].

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
        active = frame[ID_COLUMN].astype(str).isin(active_after.astype(str)).to_numpy()
        frame[LABEL_COLUMN] = pd.Series(~active, index=frame.index).astype("int8")
        source = "derived"
    excluded = {reason: n for reason, n in excluded.items() if n}
    return Labels(frame=frame.reset_index(drop=True), cutoff=cutoff, end=end, source=source, excluded=excluded)


def split_customers(labels: Labels, validation_fraction: float, seed: int) -> Labels:
    """Assigns each labelled customer to train or validation, stratified by label, seeded.

    Args:
        labels: Output of :func:`labels_at`.
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
    """Everything data_prep produces, as frames."""

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


@dataclass(frozen=True)
class _Stage:
    """A run's results inside its DuckDB session (tables ``cust`` and ``tx``)."""

    columns: list[str]
    fields: list[str]
    customers: Cleaned
    transactions: dict
    labels: Labels
    has_transactions: bool


def _stage(con: Any, raw_dir: Path, churn_window_days: int, validation_fraction: float, seed: int,
           cutoff: "str | pd.Timestamp | None") -> _Stage:
    """Cleans both inputs, fixes the labels and the split (see :func:`run`)."""
    import importlib
    import threading

    # The split's imports take seconds: done while DuckDB works (it releases the GIL).
    threading.Thread(target=importlib.import_module, args=("sklearn.model_selection",), daemon=True).start()
    started = time.monotonic()
    cutoff_at = parse_cutoff(cutoff)
    customers_path, tx_path = raw_dir / CUSTOMERS_FILE, raw_dir / TRANSACTIONS_FILE
    columns = _customer_rules(con, read_customers(customers_path))
    customers = _fetch_customers(con, columns)
    logger.info("customers: %d raw, %d kept, %d rejected", customers.raw_rows, len(customers.kept),
                len(customers.rejected))
    if customers.kept.empty:
        raise RawDataError(f"{customers_path}: no usable rows ({customers.accounting()['reasons']}).")
    end, active, has_log = None, None, has_transaction_log(tx_path)
    fields, tx_acc = [ID_COLUMN, "timestamp", "amount"], _accounting(0, 0, {})
    if not has_log:
        if LABEL_COLUMN not in customers.kept.columns:
            state = "transactions file not found" if not tx_path.is_file() else "transactions file holds no records"
            raise RawDataError(
                f"{tx_path}: {state}, and {customers_path} has no `{LABEL_COLUMN}` column to label customers "
                f"without one. Put the transactions in {TRANSACTIONS_FILE} (JSON Lines or a JSON array), or add a "
                f"`{LABEL_COLUMN}` column (0/1) to {CUSTOMERS_FILE} (or run `make data` for sample data).")
        logger.info("%s: no transaction log; labels from %s", TRANSACTIONS_FILE, CUSTOMERS_FILE)
    else:
        fields = _transactions(con, tx_path, f"(SELECT c{columns.index(ID_COLUMN)} AS {ID_COLUMN} FROM cust "
                                             f"WHERE {REASON} IS NULL)")
        tx_acc = _transaction_accounting(con)
        logger.info("transactions: %d raw, %d kept, %d rejected (%.1fs)", tx_acc["raw"], tx_acc["kept"],
                    tx_acc["rejected"], time.monotonic() - started)
        if not tx_acc["kept"]:
            raise RawDataError(f"{tx_path}: no usable rows ({tx_acc['reasons']}).")
        end = pd.Timestamp(con.execute(f"SELECT max(ts) FROM tx WHERE {REASON} IS NULL").fetchone()[0])
        end = end.tz_convert("UTC")
        cutoff_at = label_cutoff(customers.kept, end, churn_window_days, cutoff_at)
        if LABEL_COLUMN not in customers.kept.columns:
            window = [cutoff_at, cutoff_at + pd.Timedelta(days=churn_window_days)]
            active = con.execute(f"SELECT DISTINCT trim({_f(fields, ID_COLUMN)}, {_s(_WHITESPACE)}) AS id FROM tx "
                                 f"WHERE {REASON} IS NULL AND NOT is_refund AND ts > ? AND ts <= ?",
                                 [w.to_pydatetime() for w in window]).df()["id"]
    labels = split_customers(labels_at(customers.kept, end, active, churn_window_days, cutoff_at),
                             validation_fraction, seed)
    logger.info("labels (%s): cutoff %s, %d customers, churn rate %.1f%%", labels.source, labels.cutoff.date(),
                len(labels.frame), 100 * labels.frame[LABEL_COLUMN].mean())
    return _Stage(columns, fields, customers, tx_acc, labels, has_log)


def prepare(raw_dir: Path, *, churn_window_days: int = 90, validation_fraction: float = 0.2, seed: int = 42,
            cutoff: "str | pd.Timestamp | None" = None) -> Prepared:
    """:func:`run` without writing: the cleaned inputs, labels and split as frames."""
    with _duckdb() as con:
        stage = _stage(con, raw_dir, churn_window_days, validation_fraction, seed, cutoff)
        if stage.has_transactions:
            transactions = _fetch_transactions(con, stage.fields)
        else:
            transactions = Cleaned(kept=pd.DataFrame(columns=[SOURCE_ROW, *stage.fields, "is_refund"]),
                                   rejected=pd.DataFrame(columns=[SOURCE_ROW, REASON]), raw_rows=0)
    return Prepared(stage.customers, transactions, stage.labels, stage.has_transactions)


def run(raw_dir: Path, out_dir: Path, *, churn_window_days: int = 90, validation_fraction: float = 0.2, seed: int = 42,
        cutoff: "str | pd.Timestamp | None" = None) -> dict:
    """Runs the stage on folders: the interim files of the data contract, written by DuckDB.

    Args:
        raw_dir: Folder with customers.csv and (optional with a ``churned`` column) transactions.json.
        out_dir: Interim folder (created).
        churn_window_days: Label window.
        validation_fraction: Share of labelled customers in validation.
        seed: Split seed.
        cutoff: ISO date or instant (UTC) for features and labels, or None for :func:`label_cutoff`'s default.

    Returns:
        The metadata written to prep_metadata.json (row accounting included).

    Raises:
        RawDataError: An input is missing, lacks required columns, or has no usable rows.
    """
    with _duckdb() as con:
        stage = _stage(con, raw_dir, churn_window_days, validation_fraction, seed, cutoff)
        metadata = _metadata(stage.labels, stage.customers.accounting(), stage.transactions, churn_window_days,
                             seed, validation_fraction, stage.has_transactions)
        out_dir.mkdir(parents=True, exist_ok=True)
        _copy(con, _kept_customers_sql(stage.columns, as_text=True), out_dir / CLEANED_CUSTOMERS)
        _copy(con, _rejected_customers_sql(stage.columns), out_dir / "rejected_customers.csv")
        if stage.has_transactions:
            _copy(con, _kept_transactions_sql(stage.fields, as_text=True), out_dir / FILTERED_SALES)
            _copy(con, _rejected_transactions_sql(stage.fields), out_dir / "rejected_transactions.csv")
        else:  # the header only
            _copy(con, "SELECT NULL::VARCHAR AS customer_id, NULL::VARCHAR AS timestamp, NULL::DOUBLE AS amount, "
                       "NULL::BOOLEAN AS is_refund WHERE false", out_dir / FILTERED_SALES)
            _copy(con, f"SELECT NULL::BIGINT AS {SOURCE_ROW}, NULL::VARCHAR AS {REASON} WHERE false",
                  out_dir / "rejected_transactions.csv")
        con.register("labels_frame", stage.labels.frame)
        _copy(con, "SELECT * FROM labels_frame", out_dir / LABELS_FILE)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
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
