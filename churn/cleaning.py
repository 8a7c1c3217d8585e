"""The raw data contract's rules: customers.csv and transactions.json into kept rows and rejected rows.

Core: data_prep writes the interim files from these tables; scoring and the demo clean a raw
folder with the same rules. One engine, DuckDB: each rule is one branch of a SQL ``CASE`` that
returns the row's reason (README, "Raw data contract"); every raw row is kept or rejected, and
rejected rows keep their text and their 1-based ``source_row``.
"""

import argparse
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churn.schema import ID_COLUMN, LABEL_COLUMN

CUSTOMERS_FILE = "customers.csv"
TRANSACTIONS_FILE = "transactions.json"
REQUIRED_CUSTOMER_COLUMNS = (ID_COLUMN, "signup_date")
REQUIRED_TRANSACTION_FIELDS = (ID_COLUMN, "timestamp", "amount")
MAX_ABS_AMOUNT = 1e9  # |amount| above this is implausible (sums of kept amounts stay finite)
EARLIEST_TIMESTAMP = "1900-01-01T00:00:00Z"  # inclusive
LATEST_TIMESTAMP = "2200-01-01T00:00:00Z"  # exclusive
# "after the log's end": more than LOG_END_GRACE_DAYS after the log's reference end (log_end_limit).
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

_NUMERIC_FIELDS = ("amount", "quantity")  # typed in filtered_sales.csv; every other field is text
_RESERVED_FIELDS = frozenset({SOURCE_ROW, REASON, RAW_RECORD, "is_refund"})
_WHITESPACE = " \t\r\n\x0b\x0c"
_RAW_TEXT_CHARS = 500  # a rejected record's raw text is cut to this length


class RawDataError(ValueError):
    """Raw input that cannot be used at all (missing file, missing required column, no usable rows)."""


def accounting(raw_rows: int, kept_rows: int, reasons: dict) -> dict:
    """Row counts and rejection reasons of one input (raw = kept + rejected)."""
    return {"raw": int(raw_rows), "kept": int(kept_rows), "rejected": int(sum(reasons.values())),
            "reasons": {str(k): int(v) for k, v in sorted(reasons.items())}}


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
        return accounting(self.raw_rows, len(self.kept), reasons)


@contextmanager
def connect() -> Iterator[Any]:
    """A DuckDB connection in UTC on every core that spills to a private temporary folder.

    Insertion order is kept: the interim files list rows in file order.
    """
    import tempfile

    import duckdb

    with tempfile.TemporaryDirectory(prefix="data-prep-") as spill:
        con = duckdb.connect(config={"threads": max(1, os.cpu_count() or 1), "preserve_insertion_order": True,
                                     "temp_directory": spill, "memory_limit": "4GB"})
        try:
            con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")
            yield con
        finally:
            con.close()


def _q(name: str) -> str:
    """A SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _s(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def column(fields: list[str], name: str) -> str:
    """The ``tx`` column holding field ``name``, trimmed (NULL when no record has the field); the
    timestamp's and the amount's are only read while ``tx`` is built, then ``ts`` and ``amt``."""
    return f"f{fields.index(name)}" if name in fields else "NULL::VARCHAR"


def copy(con: Any, query: str, path: Path) -> None:
    """Writes a query's rows to a CSV file with a header (DuckDB quotes what needs quoting)."""
    con.execute(f"COPY ({query}) TO {_s(str(path))} (FORMAT csv, HEADER true)")


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
        renames = [f"{found!r} to {wanted!r}" for wanted in missing for found in raw.columns
                   if _loose(found) == _loose(wanted)]
        fix = f"Rename {', '.join(renames)}." if renames else f"customers.csv needs {list(REQUIRED_CUSTOMER_COLUMNS)}."
        raise RawDataError(f"{path}: missing required column(s) {missing}; found {list(raw.columns)}. {fix}")
    return raw


def _loose(name: str) -> str:
    """A column name without case, spaces and punctuation: ``customerID`` and ``Customer ID`` → ``customerid``."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


# Names a churn label goes by in customer tables (compared loosely).
_LABEL_LOOKALIKES = frozenset({"churn", "churned", "ischurn", "ischurned", "churnflag", "churnlabel", "churnstatus"})


def check_label_lookalikes(columns: list[str], path: Path) -> None:
    """Refuses a column named like the label but not ``churned`` (``Churn``, ``is_churned``): kept as a
    customer attribute it would become a feature that gives the label away.

    Raises:
        RawDataError: Naming the column and the fix.
    """
    lookalikes = [c for c in columns if c != LABEL_COLUMN and _loose(c) in _LABEL_LOOKALIKES]
    if not lookalikes:
        return
    fix = (f"remove {lookalikes} (the label is `{LABEL_COLUMN}`)" if LABEL_COLUMN in columns else
           f"rename {lookalikes[0]!r} to `{LABEL_COLUMN}` (values 0/1, true/false or yes/no) to train on it as the "
           f"label, or remove it to derive the label from the transactions")
    raise RawDataError(f"{path}: column(s) {lookalikes} look like the churn label; as customer attributes they "
                       f"would become features that give the label away. Fix: {fix}.")


def load_customers(con: Any, raw: pd.DataFrame) -> list[str]:
    """Creates table ``cust``: every customer row, trimmed (``c<i>``), ``signup`` and ``label`` typed,
    and its ``reason`` (NULL = kept); returns the column names.

    Rules, first match wins: empty ``customer_id``; ``signup_date`` not an ISO date, or outside
    [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP); ``churned`` not one of LABEL_VALUES (empty = unlabelled,
    kept); a ``customer_id`` seen on an earlier kept row.
    """
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
                    FROM (SELECT {SOURCE_ROW}, {', '.join(f'{_trim(f"c{i}")} AS c{i}' for i in range(len(columns)))}
                          FROM raw_customers)))
        ORDER BY {SOURCE_ROW}
    """)
    con.unregister("raw_customers")
    return columns


def _trim(expr: str) -> str:
    """``expr`` without leading and trailing whitespace; DuckDB's trim (slow) runs only where an end
    character is a control character or a space."""
    return (f"CASE WHEN ascii({expr}) > 32 AND ascii({expr}[-1]) > 32 THEN {expr} "
            f"ELSE trim({expr}, {_s(_WHITESPACE)}) END")


def kept_customers_sql(columns: list[str], *, as_text: bool) -> str:
    """Kept customers in their columns: ``signup_date`` typed (or ``%Y-%m-%d`` text), ``churned`` 0/1."""
    parts = []
    for i, c in enumerate(columns):
        if c == "signup_date":
            parts.append(f"{'strftime(signup, ' + _s('%Y-%m-%d') + ')' if as_text else 'signup'} AS {_q(c)}")
        else:
            parts.append(f"{'label' if c == LABEL_COLUMN else f'c{i}'} AS {_q(c)}")
    return f"SELECT {', '.join(parts)} FROM cust WHERE {REASON} IS NULL ORDER BY {SOURCE_ROW}"


def rejected_customers_sql(columns: list[str]) -> str:
    """Rejected customers: ``source_row``, ``reason`` and each cell's text."""
    cells = ", ".join(f"c{i} AS {_q(c)}" for i, c in enumerate(columns))
    return f"SELECT {SOURCE_ROW}, {REASON}, {cells} FROM cust WHERE {REASON} IS NOT NULL ORDER BY {SOURCE_ROW}"


def fetch_customers(con: Any, columns: list[str]) -> Cleaned:
    """Table ``cust`` as frames."""
    kept = con.execute(kept_customers_sql(columns, as_text=False)).df()
    for c in columns:
        if c not in ("signup_date", LABEL_COLUMN):
            kept[c] = kept[c].astype(object)
    if LABEL_COLUMN in kept.columns:
        kept[LABEL_COLUMN] = kept[LABEL_COLUMN].astype("Int8")
    kept["signup_date"] = kept["signup_date"].dt.tz_convert("UTC")
    rejected = con.execute(rejected_customers_sql(columns)).df()
    return Cleaned(kept=kept, rejected=rejected, raw_rows=con.execute("SELECT count(*) FROM cust").fetchall()[0][0])


def clean_customers(raw: pd.DataFrame) -> Cleaned:
    """Applies the customer rules (:func:`load_customers`).

    Args:
        raw: Table from :func:`read_customers`.

    Returns:
        Kept rows (``signup_date`` as a UTC timestamp, ``churned`` as nullable Int8 when present,
        attributes as stripped text) and rejected rows with reasons.
    """
    with connect() as con:
        return fetch_customers(con, load_customers(con, raw))


# --------------------------------------------------------------------------- transactions


def has_transaction_log(path: Path) -> bool:
    """False when transactions.json is absent, 0 bytes, whitespace only or ``[]``: "no transaction log"."""
    if not path.is_file():
        return False
    content = b""
    with path.open("rb") as fh:
        while len(content) <= 2 and (chunk := fh.read(1 << 20)):
            content += re.sub(rb"\s+", b"", chunk.replace(b"\xef\xbb\xbf", b""))
    return content not in (b"", b"[]")


def _is_json_array(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


_OBJECT = "try(json_type(line)) = 'OBJECT'"  # NULL for text that is not JSON


def _load_records(con: Any, path: Path) -> None:
    """Creates ``rec``: one row per record (non-blank line, or array item) in file order: ``source_row``
    (1-based), ``line``, ``bad`` (why the reader refused the line, else NULL) and ``object``."""
    if _is_json_array(path):
        _load_array(con, path)
        return
    # One text column per line (no delimiter, no quotes), read in parallel in file order. Lines DuckDB
    # cannot take (invalid UTF-8, say) land in its rejects table with their line number and byte offset.
    con.execute(f"""
        CREATE OR REPLACE TABLE raw_lines AS SELECT line, {_OBJECT} AS object
        FROM read_csv({_s(str(path))}, columns={{'line': 'VARCHAR'}}, header=false, delim='\\0', quote='', escape='',
            auto_detect=false, strict_mode=false, max_line_size=1073741824,
            store_rejects=true, ignore_errors=true, rejects_table='line_rejects', rejects_scan='line_scans')
    """)
    rejects = con.execute("SELECT line, min(line_byte_position), arg_min(error_type, line_byte_position) "
                          "FROM line_rejects GROUP BY line ORDER BY line").fetchall()
    blank = f"object IS NULL AND (line IS NULL OR regexp_full_match(line, {_s(f'[{_WHITESPACE}]*')}))"
    blanks = con.execute(f"SELECT count(*) FROM raw_lines WHERE {blank}").fetchall()[0][0]
    if not rejects and not blanks:
        # Every line a record: the line number is the source row.
        con.execute(f"CREATE OR REPLACE VIEW rec AS SELECT rowid + 1 AS {SOURCE_ROW}, line, NULL::VARCHAR AS bad, "
                    "object FROM raw_lines")
        return
    bad = pd.DataFrame({"p": [r[0] for r in rejects], "text": _raw_lines(path, [r[1] - 1 for r in rejects]),
                        "bad": [NOT_UTF8 if r[2] == "INVALID ENCODING" else MALFORMED for r in rejects]})
    bad["shift"] = bad["p"] - range(1, len(bad) + 1)  # rejected lines before p, per rejected line
    con.register("bad_lines", bad.astype({"p": "int64", "shift": "int64"}))
    # The physical line of the k-th line read is k plus the rejected lines before it (an ASOF join).
    con.execute(f"""
        CREATE OR REPLACE TABLE rec AS
        SELECT row_number() OVER (ORDER BY p) AS {SOURCE_ROW}, line, bad, object
        FROM (SELECT k + coalesce(n, 0) AS p, line, NULL::VARCHAR AS bad, object
              FROM (SELECT rowid + 1 AS k, line, object FROM raw_lines WHERE NOT ({blank}))
              ASOF LEFT JOIN (SELECT shift, row_number() OVER (ORDER BY p) AS n FROM bad_lines) ON k > shift
              UNION ALL SELECT p, text, bad, false FROM bad_lines)
    """)
    con.unregister("bad_lines")


def _raw_lines(path: Path, offsets: list[int]) -> list[str]:
    """The text of the lines that start at ``offsets`` (invalid bytes as ``\\xNN``), cut to _RAW_TEXT_CHARS."""
    texts = []
    with path.open("rb") as fh:
        for offset in offsets:  # DuckDB's line_byte_position counts from 1
            fh.seek(offset)
            line = fh.readline(4 * _RAW_TEXT_CHARS).rstrip(b"\r\n")
            texts.append(line.decode("utf-8", errors="backslashreplace")[:_RAW_TEXT_CHARS])
    return texts


def _load_array(con: Any, path: Path) -> None:
    """``rec`` for a file holding one JSON array: one record per item, as its JSON text."""
    import duckdb

    try:
        valid = con.execute(f"SELECT json_valid(ltrim(content, chr(65279))) FROM read_text({_s(str(path))})"
                            ).fetchall()[0][0]
    except duckdb.Error as exc:  # invalid UTF-8
        raise RawDataError(f"{path}: not valid UTF-8 ({str(exc).splitlines()[0]}). Save the file as UTF-8, or write "
                           f"one JSON object per line (JSON Lines) so that only the records with bad bytes are "
                           f"rejected.") from exc
    if not valid:
        raise RawDataError(f"{path}: starts with '[' but is not a valid JSON array. Fix the file or write one "
                           f"JSON object per line (JSON Lines).")
    con.execute(f"""
        CREATE OR REPLACE TABLE rec AS
        SELECT {SOURCE_ROW}, line, NULL::VARCHAR AS bad, {_OBJECT} AS object
        FROM (SELECT i AS {SOURCE_ROW}, items[i] AS line
              FROM (SELECT json_extract(ltrim(content, chr(65279)), '$[*]')::VARCHAR[] AS items
                    FROM read_text({_s(str(path))})), range(1, len(items) + 1) t(i))
        ORDER BY {SOURCE_ROW}
    """)


def _fields(con: Any, path: Path) -> list[str]:
    """The records' keys in order of first appearance.

    Raises:
        RawDataError: A required field appears in no record, or a field has a reserved name.
    """
    rows = con.execute(f"SELECT keys FROM (SELECT json_keys(line) AS keys, min({SOURCE_ROW}) AS first FROM rec "
                       "WHERE object GROUP BY keys) ORDER BY first").fetchall()
    fields = list(dict.fromkeys(k for (keys,) in rows for k in keys))
    missing = [f for f in REQUIRED_TRANSACTION_FIELDS if f not in fields]
    if rows and missing:
        raise RawDataError(f"{path}: required field(s) {missing} appear in no record; found {sorted(fields)}. "
                           f"Each transaction needs {list(REQUIRED_TRANSACTION_FIELDS)}.")
    reserved = sorted(set(fields) & _RESERVED_FIELDS | ({""} & set(fields)))
    if reserved:
        raise RawDataError(f"{path}: field name(s) {reserved} cannot be used (empty, or reserved for data_prep's "
                           f"columns {sorted(_RESERVED_FIELDS)}); rename them in the records.")
    return fields


def _paths(fields: list[str]) -> str:
    """The JSON paths of ``fields`` as a SQL list (keys as written: non-ASCII is not escaped)."""
    return "[" + ", ".join(_s("$." + json.dumps(f, ensure_ascii=False)) for f in fields) + "]"


def _record_rules(con: Any, fields: list[str]) -> None:
    """Creates table ``tx`` from ``rec``: per record its ``source_row``, each field's text trimmed
    (``f<i>``; ``ts`` and ``amt`` in place of the timestamp's and the amount's), ``is_refund`` and the
    reason of the first rule it breaks (NULL = passes).

    Rules, first match wins: not UTF-8; not a JSON object; missing ``customer_id``; missing or
    unparseable ``timestamp``; timestamp outside [EARLIEST_TIMESTAMP, LATEST_TIMESTAMP); missing,
    non-numeric or non-finite ``amount`` (``NaN``, ``Infinity``, ``1e999``); ``|amount|`` above
    MAX_ABS_AMOUNT; negative ``amount`` whose ``status`` is not a refund.
    """
    values = "".join(f", {_trim(f'v[{i + 1}]')} AS f{i}" for i in range(len(fields)))
    refunds = ", ".join(_s(s) for s in sorted(REFUND_STATUSES))
    amount_type = f"json_type(line, {_s('$.amount')})" if "amount" in fields else "NULL"
    # The texts of timestamp and amount are not kept: ts and amt are what is written (less memory).
    typed = "".join(f", {column(fields, f)}" for f in ("timestamp", "amount") if f in fields)
    con.execute(f"""
        CREATE OR REPLACE TABLE tx AS
        SELECT * EXCLUDE (line, bad, object{typed}),
               CASE WHEN bad IS NOT NULL THEN bad
                    WHEN object IS NOT TRUE THEN {_s(MALFORMED)}
                    WHEN coalesce({column(fields, ID_COLUMN)}, '') = '' THEN 'missing customer_id'
                    WHEN {column(fields, 'timestamp')} IS NULL THEN 'missing timestamp'
                    WHEN ts IS NULL THEN {_s(UNPARSEABLE_TIMESTAMP)}
                    WHEN ts < TIMESTAMPTZ {_s(EARLIEST_TIMESTAMP)} OR ts >= TIMESTAMPTZ {_s(LATEST_TIMESTAMP)}
                         THEN {_s(IMPLAUSIBLE_TIMESTAMP)}
                    WHEN {column(fields, 'amount')} IS NULL THEN 'missing amount'
                    WHEN amt IS NULL THEN 'non-numeric amount'
                    WHEN NOT isfinite(amt) THEN CASE WHEN {amount_type} = 'VARCHAR' THEN 'non-numeric amount'
                                                     ELSE 'non-finite amount' END
                    WHEN abs(amt) > {MAX_ABS_AMOUNT!r} THEN {_s(IMPLAUSIBLE_AMOUNT)}
                    WHEN amt < 0 AND NOT is_refund THEN {_s(NEGATIVE_AMOUNT)}
               END AS {REASON}
        FROM (SELECT *, try_cast({column(fields, 'timestamp')} AS TIMESTAMPTZ) AS ts,
                     try_cast({column(fields, 'amount')} AS DOUBLE) AS amt,
                     coalesce(lower({column(fields, 'status')}) IN ({refunds}), false) AS is_refund
              FROM (SELECT {SOURCE_ROW}, line, bad, object{values}
                    FROM (SELECT *, CASE WHEN object THEN json_extract_string(line, {_paths(fields)}) END AS v
                          FROM rec)))
    """)


def _log_end_limit_sql(table: str, column: str) -> str:
    """SQL for :func:`log_end_limit` over ``column`` of ``table`` (NULL for no rows)."""
    rank = (f"greatest(0, least((count(*) - 1) * {LOG_END_QUANTILE_PER_MILLE} // 1000, "
            f"count(*) - 1 - {LOG_END_MIN_TAIL}))")
    # The rank-th smallest as the (n - 1 - rank)-th largest: a short top-N instead of a sort.
    return (f"SELECT max({column}) + INTERVAL {LOG_END_GRACE_DAYS} DAY FROM (SELECT {column} FROM {table} "
            f"ORDER BY {column} DESC LIMIT 1 OFFSET (SELECT greatest(0, count(*) - 1 - {rank}) FROM {table}))")


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
    with connect() as con:
        con.register("stamps", pd.DataFrame({"ts": timestamps.reset_index(drop=True)}))
        limit = con.execute(_log_end_limit_sql("stamps", "ts")).fetchall()[0][0]
    return None if limit is None else pd.Timestamp(limit).tz_convert("UTC")


def _cross_rules(con: Any, fields: list[str], known: str) -> None:
    """Applies the cross-record rules to the rows of ``tx`` that pass the per-record ones, in place.

    First match wins: a timestamp after :func:`log_end_limit`; a customer not in table ``known``
    (column ``customer_id``); a ``transaction_id`` seen on an earlier row (the first one is kept;
    rows rejected by these rules count as earlier rows, those rejected per record don't).
    """
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cross_rejected AS
        WITH ok AS (SELECT {SOURCE_ROW}, ts, {column(fields, ID_COLUMN)} AS cid,
                           {column(fields, 'transaction_id')} AS tid FROM tx WHERE {REASON} IS NULL),
             repeated AS (SELECT tid, min({SOURCE_ROW}) AS first FROM ok WHERE tid IS NOT NULL
                          GROUP BY tid HAVING count(*) > 1)
        SELECT {SOURCE_ROW}, CASE WHEN late THEN {_s(AFTER_LOG_END)} WHEN unknown THEN {_s(UNKNOWN_CUSTOMER)}
                                  ELSE {_s(DUPLICATE_TRANSACTION)} END AS why
        FROM (SELECT ok.{SOURCE_ROW}, ts > ({_log_end_limit_sql('ok', 'ts')}) AS late, k.id IS NULL AS unknown,
                     ok.{SOURCE_ROW} > coalesce(r.first, ok.{SOURCE_ROW}) AS dup
              FROM ok LEFT JOIN (SELECT DISTINCT {ID_COLUMN} AS id FROM {known}) k ON ok.cid = k.id
              LEFT JOIN repeated r ON ok.tid = r.tid)
        WHERE late OR unknown OR dup
    """)
    con.execute(f"UPDATE tx SET {REASON} = c.why FROM cross_rejected c WHERE tx.{SOURCE_ROW} = c.{SOURCE_ROW}")


def load_transactions(con: Any, path: Path, known: str) -> list[str]:
    """Creates table ``tx`` (every record with its reason, NULL = kept; see :func:`_record_rules` and
    :func:`_cross_rules`) and ``bad_rec`` (the rejected records' text); returns the fields.

    Args:
        con: The session.
        path: transactions.json (JSON Lines or one JSON array).
        known: A table or subquery with the kept customers' ``customer_id``.

    Raises:
        RawDataError: The file is missing or not valid UTF-8 (JSON array), or its fields are unusable.
    """
    if not path.is_file():
        raise RawDataError(f"{path}: transactions file not found. Put {TRANSACTIONS_FILE} (JSON Lines or a JSON "
                           f"array) in the raw folder (or run `make data`).")
    _load_records(con, path)
    fields = _fields(con, path)
    _record_rules(con, fields)
    if "timestamp" in fields and ID_COLUMN in fields:
        _cross_rules(con, fields, known)
    # Only the rejected records' text is kept from here on.
    con.execute(f"CREATE OR REPLACE TABLE bad_rec AS SELECT * FROM rec WHERE {SOURCE_ROW} IN "
                f"(SELECT {SOURCE_ROW} FROM tx WHERE {REASON} IS NOT NULL)")
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'rec'").fetchall()[0][0]
    con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} rec")
    con.execute("DROP TABLE IF EXISTS raw_lines")
    return fields


def kept_transactions_sql(fields: list[str], *, as_text: bool) -> str:
    """The kept rows of ``tx`` as filtered_sales.csv holds them: the fields in order (text trimmed,
    ``timestamp`` UTC, ``amount``/``quantity`` numbers), then ``is_refund``."""
    iso = ("CASE WHEN microsecond(ts) % 1000000 = 0 THEN strftime(ts, '%Y-%m-%dT%H:%M:%SZ') "
           "ELSE strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') END")
    special = {"timestamp": iso if as_text else "ts", "amount": "amt"}
    parts = [f"{special.get(f, f'try_cast(f{i} AS DOUBLE)' if f in _NUMERIC_FIELDS else f'f{i}')} AS {_q(f)}"
             for i, f in enumerate(fields)]
    return f"SELECT {', '.join([*parts, 'is_refund'])} FROM tx WHERE {REASON} IS NULL"


def rejected_transactions_sql(fields: list[str]) -> str:
    """Rejected rows: ``source_row``, ``reason``, each field's text as written and the record (``raw_record``)."""
    cells = "".join(f", v[{i + 1}] AS {_q(f)}" for i, f in enumerate(fields))
    return (f"SELECT {SOURCE_ROW}, {REASON}{cells}, left(line, {_RAW_TEXT_CHARS}) AS {RAW_RECORD} "
            f"FROM (SELECT tx.{SOURCE_ROW}, {REASON}, line, CASE WHEN object THEN json_extract_string(line, "
            f"{_paths(fields)}) END AS v FROM tx JOIN bad_rec USING ({SOURCE_ROW}) WHERE {REASON} IS NOT NULL) "
            f"ORDER BY {SOURCE_ROW}")


def transaction_accounting(con: Any) -> dict:
    """Row accounting of table ``tx``."""
    rows = con.execute(f"SELECT {REASON}, count(*) FROM tx GROUP BY {REASON}").fetchall()
    reasons = {r: n for r, n in rows if r is not None}
    return accounting(sum(n for _, n in rows), sum(n for r, n in rows if r is None), reasons)


def fetch_transactions(con: Any, fields: list[str]) -> Cleaned:
    """Table ``tx`` as frames."""
    kept_sql = kept_transactions_sql(fields, as_text=False).replace("SELECT ", f"SELECT {SOURCE_ROW}, ", 1)
    kept = con.execute(kept_sql + f" ORDER BY {SOURCE_ROW}").df()
    if "timestamp" in kept.columns:
        kept["timestamp"] = kept["timestamp"].dt.tz_convert("UTC")
    rejected = con.execute(rejected_transactions_sql(fields)).df()
    return Cleaned(kept=kept, rejected=rejected, raw_rows=con.execute("SELECT count(*) FROM tx").fetchall()[0][0])


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
    with connect() as con:
        con.register("known_customers", pd.DataFrame({ID_COLUMN: known_customers.astype(str).to_numpy()}))
        return fetch_transactions(con, load_transactions(con, path, "known_customers"))


# --------------------------------------------------------------------------- cutoff


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


def cutoff_arg(text: str) -> str:
    """argparse type of ``--cutoff``: the cutoff as ISO text in UTC ('' for none), or a usage error."""
    try:
        cutoff = parse_cutoff(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return cutoff.isoformat() if cutoff is not None else ""
