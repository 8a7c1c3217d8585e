"""The nightly drift check: does production traffic still look like the data the model was trained on?

Reads a prediction log (``data/predictions/<model_version>_outputs.csv``) and the baseline of the model that
served it (``models/<name>/<model_version>/baseline/train.csv``, picked by the log's ``model_version``),
compares every feature of the feature schema and the prediction ``churn_probability`` against that model's
validation scores (metrics in ``monitoring/drift.py``; the method in docs/drift.md),
checks performance when outcomes of past predictions have arrived, writes the reports, and starts a
training run when the decision says retrain (``monitoring/trigger.py``).

Run it with the monitoring environment: ``.venv-monitoring/bin/python monitoring/drift_check.py --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn.schema import ID_COLUMN, LABEL_COLUMN, SCHEMA_FILE, FeatureSchema
from monitoring.drift import (
    Decision,
    Distribution,
    DriftPolicy,
    FeatureDrift,
    PerformanceCheck,
    compare,
    decide,
    performance_check,
)
from monitoring.trigger import (
    DryRunTrigger,
    LocalPipelineTrigger,
    RetrainRequest,
    Trigger,
    TriggerRecord,
    VertexPipelineTrigger,
    write_record,
)

logger = logging.getLogger("monitoring.drift_check")

PREDICTION_COLUMN = "churn_probability"
# The other columns of a prediction log (serving/prediction_log.py): not features, never "new columns".
LOG_COLUMNS = (ID_COLUMN, PREDICTION_COLUMN, LABEL_COLUMN, "model_version", "timestamp", "threshold")
DEFAULT_BASELINE = "data/processed/train.csv"
DEFAULT_PREDICTIONS = "data/predictions"
DEFAULT_MODELS = "models"
REFERENCE_PREDICTIONS = "validation_predictions.csv"  # evaluate's scores on the validation split
MODEL_VERSION_COLUMN = "model_version"
BASELINE_DIR = "baseline"  # models/<name>/v<N>/baseline/: that model's train.csv and feature_schema.json
BASELINE_FILE = "train.csv"
PREDICTIONS_PATTERN = "*_outputs.csv"
DATE_PREFIX = "date="  # the server's gs:// log: <prefix>/<model_version>/date=YYYY-MM-DD/part-<worker>-<seq>.csv
MODEL_JSON = "model.json"  # <prefix>/<model_version>/model.json: the folder the server loaded that model from
FETCH_THREADS = 8  # parts downloaded and parsed at once (google-cloud-storage keeps 10 connections)
DEFAULT_OUTPUT = "data/monitoring"
SUMMARY_FILE = "drift_summary.csv"
DECISION_FILE = "drift_decision.json"
SUMMARY_COLUMNS = ("date", "feature", "metric", "value", "threshold", "drifted", "kind", "n_baseline",
                   "n_current", "psi", "psi_threshold", "rank_shift", "rank_shift_threshold", "rank_shift_all",
                   "rank_shift_all_threshold", "zero_share", "zero_share_threshold", "mean_shift",
                   "mean_shift_threshold", "js", "l_infinity", "tfdv_metric", "tfdv_value", "threshold_source", "note")
TYPE_CHANGE_ERROR_SHARE = 0.5  # above this share of missing values a never-missing feature is broken, not drifted
# Up to this share of a numeric column's rows may hold text that is no number, or inf/nan written out: they are
# left out of the comparison and reported as a warning. Above it the file is bad input and nothing is decided.
UNREADABLE_TOLERANCE = 0.01
# Read as numbers (nan, inf) rather than as missing: a written-out "nan" is a broken value, an empty field is missing.
NAN_SPELLINGS = frozenset({"-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "NaN", "nan"})
THREADED_READ_BYTES = 8 << 20  # smaller files are read on one thread (no Arrow thread pool for a short read)

EXIT_OK = 0
EXIT_DRIFT = 1  # only with --fail-on-drift
EXIT_BAD_INPUT = 2
EXIT_TRIGGER_FAILED = 3
EXIT_REPORT_FAILED = 4


class InputError(Exception):
    """A bad input: the message names the file, what is wrong and how to fix it."""


@dataclass(frozen=True)
class Anomaly:
    """A schema problem in an input.

    Attributes:
        kind: ``missing_column``, ``new_column``, ``unseen_category``, ``type_change``, ``unexpected_nulls``
            or ``tfdv`` (found by TFDV's schema validation).
        severity: ``error`` (the run cannot be trusted: non-zero exit, no retraining) or ``warning``.
        file: The input it was found in.
        column: The column.
        detail: What was found, with counts and examples.
    """

    kind: str
    severity: str
    file: str
    column: str
    detail: str


@dataclass
class Table:
    """One input read against the feature schema.

    Attributes:
        frame: The columns that matter: numeric features as float, categorical features as text.
        uri: Where it was read from.
        columns: Every column of the file, in order.
        anomalies: Schema problems found while reading.
        unreadable: Per numeric column, the rows whose value was no finite number (text, ``inf``, ``nan``):
            null in ``frame`` and left out of that column's comparison.
    """

    frame: pd.DataFrame
    uri: str
    columns: list[str]
    anomalies: list[Anomaly] = field(default_factory=list)
    unreadable: dict[str, np.ndarray] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# Files: local paths and gs:// URIs
# ---------------------------------------------------------------------------------------------------

def _gcs_client() -> Any:
    """A Cloud Storage client (honours ``STORAGE_EMULATOR_HOST``)."""
    from google.cloud import storage

    return storage.Client()


def _split_gcs(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len("gs://"):].partition("/")
    if not bucket:
        raise InputError(f"{uri}: no bucket name; write gs://BUCKET/path")
    return bucket, name


@contextlib.contextmanager
def local_file(uri: str) -> Iterator[Path]:
    """Yields a local path holding ``uri`` (downloaded first when it is ``gs://``)."""
    if not uri.startswith("gs://"):
        path = Path(uri)
        if not path.is_file():
            raise InputError(f"{uri}: file not found")
        yield path
        return
    bucket, name = _split_gcs(uri)
    blob = _gcs_client().bucket(bucket).blob(name)
    if not blob.exists():
        raise InputError(f"{uri}: object not found")
    with tempfile.TemporaryDirectory(prefix="drift-input-") as tmp:
        path = Path(tmp) / Path(name).name
        blob.download_to_filename(str(path))
        yield path


@contextlib.contextmanager
def output_dir(uri: str, keep: Sequence[str] = (SUMMARY_FILE,)) -> Iterator[Path]:
    """Yields a local folder for the outputs; for ``gs://`` a staging folder uploaded on success.

    Args:
        uri: Local folder or ``gs://bucket/prefix``.
        keep: Files fetched from the ``gs://`` prefix first, so they can be appended to.
    """
    if not uri.startswith("gs://"):
        path = Path(uri)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    bucket_name, prefix = _split_gcs(uri)
    prefix = prefix.strip("/")
    bucket = _gcs_client().bucket(bucket_name)
    with tempfile.TemporaryDirectory(prefix="drift-output-") as tmp:
        staging = Path(tmp)
        for name in keep:
            blob = bucket.blob(f"{prefix}/{name}" if prefix else name)
            if blob.exists():
                blob.download_to_filename(str(staging / name))
        yield staging
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = path.relative_to(staging).as_posix()
            bucket.blob(f"{prefix}/{rel}" if prefix else rel).upload_from_filename(str(path))


def _uri_join(base: str, *names: str) -> str:
    """``base/name/...`` for a ``gs://`` prefix or a local folder."""
    if base.startswith("gs://"):
        return "/".join([base.rstrip("/"), *(n.strip("/") for n in names)])
    return str(Path(base, *names))


@contextlib.contextmanager
def _gcs_errors(uri: str) -> Iterator[None]:
    """Turns a Cloud Storage failure (no such bucket, no permission, no connection) into an :class:`InputError`."""
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        yield
    except exceptions.NotFound as err:
        raise InputError(f"{uri}: not found in Cloud Storage ({err}). Fix: check the bucket and the path") from None
    except (exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, OSError) as err:
        raise InputError(f"{uri}: Cloud Storage failed ({type(err).__name__}: {err}). Fix: check that this job's "
                         f"account may list and read it, and run again") from None


def uri_exists(uri: str) -> bool:
    """Whether a local file or a ``gs://`` object exists."""
    if not uri.startswith("gs://"):
        return Path(uri).is_file()
    bucket, name = _split_gcs(uri)
    with _gcs_errors(uri):
        return bool(name) and bool(_gcs_client().bucket(bucket).blob(name).exists())


@dataclass(frozen=True)
class LogObject:
    """A file in a prediction-log folder: a local file or a ``gs://`` object.

    Attributes:
        uri: Where it is.
        name: Its name within the folder that was listed.
        size: Bytes.
        updated: When it was written (seconds since the epoch).
    """

    uri: str
    name: str
    size: int
    updated: float


def list_folder(uri: str) -> tuple[list[str], list[LogObject]]:
    """One level of a local folder or ``gs://`` prefix (one listing call): sub-folder names and files.

    A folder that does not exist lists as empty.
    """
    if not uri.startswith("gs://"):
        path = Path(uri)
        if not path.is_dir():
            return [], []
        folders: list[str] = []
        files: list[LogObject] = []
        for child in sorted(path.iterdir()):
            if child.is_dir():
                folders.append(child.name)
            elif child.is_file():
                stat = child.stat()
                files.append(LogObject(str(child), child.name, stat.st_size, stat.st_mtime))
        return folders, files
    bucket, prefix = _split_gcs(uri)
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    with _gcs_errors(uri):
        listing = _gcs_client().list_blobs(bucket, prefix=prefix, delimiter="/")
        files = [LogObject(f"gs://{bucket}/{b.name}", b.name[len(prefix):], int(b.size or 0),
                           b.updated.timestamp() if b.updated else 0.0)
                 for b in listing if not b.name.endswith("/")]
        folders = sorted(p[len(prefix):].strip("/") for p in listing.prefixes)  # known once the pages are read
    return folders, files


@dataclass(frozen=True)
class CurrentLog:
    """What a run checks: one file, or the parts of one model version's log within a date window.

    Attributes:
        uri: The file, or the version's folder ``<prefix>/<model_version>``.
        layout: ``file`` (given as a file), ``outputs`` (the newest ``<version>_outputs.csv`` of a folder) or
            ``parts`` (``<version>/date=YYYY-MM-DD/part-*.csv``).
        version: The version's folder name (``parts``).
        parts: The part files to read (``parts``), oldest day first.
        window: First and last day of the window (``parts``).
        left_out: The other versions found, each with what it holds; they are not checked.
        model_json: ``<version>/model.json`` when the server wrote it (``parts``): which model folder it loaded.
    """

    uri: str
    layout: str
    version: str | None = None
    parts: tuple[LogObject, ...] = ()
    window: tuple[str, str] | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    model_json: str | None = None


def _safe_version(version: str) -> str:
    """A model version as the server writes it into object and file names (serving/prediction_log.py)."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]", "_", version)


def find_current(current: str | None, date: dt.date, window_days: int = 1) -> CurrentLog:
    """Finds the data to check: a file as given, or what a folder or ``gs://`` prefix holds.

    A folder of the server's log, ``<model_version>/date=YYYY-MM-DD/part-<worker>-<seq>.csv`` (its layout on
    Cloud Storage), or one version's folder in it, gives every part dated in the ``window_days`` days ending
    at ``date`` of one version: the
    one serving last (newest day, then newest part) when several served in the window; the others are named
    in ``left_out``. A folder of ``<model_version>_outputs.csv`` files (the server's local log) gives the one
    written last. One listing per level: the prefix, each version, each of its days in the window.

    Args:
        current: ``--current``: a file, a folder or a ``gs://`` prefix (None: ``data/predictions``).
        date: Last day of the window (UTC).
        window_days: Days in the window.

    Returns:
        What to read.

    Raises:
        InputError: Nothing there, or nothing dated in the window (the message says what was looked for).
    """
    uri = current or DEFAULT_PREDICTIONS
    if not uri.startswith("gs://"):
        if Path(uri).is_file():
            return CurrentLog(uri, "file")
        if not Path(uri).is_dir():
            if current:
                raise InputError(f"{uri}: file not found")
            raise InputError(f"{uri}: no prediction log ({PREDICTIONS_PATTERN}); serve some traffic first (the "
                             f"server logs every prediction there) or pass --current FILE")
    elif not uri.endswith("/") and uri_exists(uri):
        return CurrentLog(uri, "file")
    try:
        first_day = date - dt.timedelta(days=window_days - 1)
    except OverflowError:
        first_day = dt.date.min
    window = (first_day.isoformat(), date.isoformat())
    folders, files = list_folder(uri)
    if any(_is_day(f) for f in folders):  # one version's folder, <prefix>/<model_version>/
        name = uri.rstrip("/").rsplit("/", 1)[-1] if uri.startswith("gs://") else Path(uri).name
        versions = {name: (uri.rstrip("/") or uri, folders, files)}
    else:
        versions = {v: (_uri_join(uri, v), *list_folder(_uri_join(uri, v))) for v in folders}
    found: dict[str, list[tuple[str, LogObject]]] = {}
    model_json: dict[str, str] = {}
    newest_day: dict[str, str] = {}
    for version, (version_uri, dated, version_files) in versions.items():
        for f in version_files:
            if f.name == MODEL_JSON:
                model_json[version] = f.uri
        dated_days = sorted(d[len(DATE_PREFIX):] for d in dated if _is_day(d))
        if dated_days:
            newest_day[version] = dated_days[-1]
        for day in (d for d in dated_days if window[0] <= d <= window[1]):
            _, objects = list_folder(_uri_join(version_uri, f"{DATE_PREFIX}{day}"))
            found.setdefault(version, []).extend((day, o) for o in objects if o.name.endswith(".csv"))
            others = [o.name for o in objects if not o.name.endswith(".csv")]
            if others:
                logger.warning("%s: not CSV, not read: %s", _uri_join(version_uri, f"{DATE_PREFIX}{day}"),
                               ", ".join(others[:5]))
    if found:
        def serving_last(version: str) -> tuple[str, float, str]:
            parts = found[version]
            last = max(day for day, _ in parts)
            return last, max(o.updated for day, o in parts if day == last), version

        chosen = max(found, key=serving_last)
        left_out = {v: _describe_parts(found[v]) for v in sorted(found) if v != chosen}
        parts = tuple(o for _, o in sorted(found[chosen], key=lambda p: (p[0], p[1].name)))
        return CurrentLog(versions[chosen][0], "parts", chosen, parts, window, left_out, model_json.get(chosen))
    if newest_day:
        newest = max(newest_day, key=lambda v: (newest_day[v], v))
        raise InputError(f"{uri}: no prediction-log parts dated {window[0]}..{window[1]} (the {window_days} day(s) "
                         f"ending at --date {window[1]}); the newest are {newest}/{DATE_PREFIX}{newest_day[newest]}. "
                         f"Fix: pass --date YYYY-MM-DD of the traffic to check, or a larger --window-days")
    outputs = sorted((f for f in files if f.name.endswith(PREDICTIONS_PATTERN[1:])), key=lambda f: (f.updated, f.name))
    if not outputs:
        raise InputError(f"{uri}: no prediction log: neither <model_version>/{DATE_PREFIX}YYYY-MM-DD/part-*.csv "
                         f"(the server's log with SERVING_PREDICTION_LOG_URI) nor {PREDICTIONS_PATTERN} (its local "
                         f"log). Fix: serve some traffic first, or pass --current FILE")
    chosen_log = outputs[-1]
    left_out = {(version_from_name(f.name) or f.name): f"{f.name}, written before {chosen_log.name}"
                for f in outputs[:-1]}
    return CurrentLog(chosen_log.uri, "outputs", version_from_name(chosen_log.name), left_out=left_out)


def _is_day(folder: str) -> bool:
    """Whether ``folder`` is ``date=YYYY-MM-DD`` (other folders are not the server's and are not read)."""
    try:
        return folder.startswith(DATE_PREFIX) and len(folder) == len(DATE_PREFIX) + 10 and \
            bool(dt.date.fromisoformat(folder[len(DATE_PREFIX):]))
    except ValueError:
        return False


def _describe_parts(parts: Sequence[tuple[str, LogObject]]) -> str:
    days = sorted({day for day, _ in parts})
    return f"{len(parts)} part(s) dated {days[0]}" + (f"..{days[-1]}" if len(days) > 1 else "")


# ---------------------------------------------------------------------------------------------------
# Reading inputs
# ---------------------------------------------------------------------------------------------------

def _read_csv(path: Path, uri: str, columns: Sequence[str], text_columns: Sequence[str]) -> pd.DataFrame:
    """Reads ``columns`` of a CSV with pyarrow; rows with the wrong field count fail."""
    return _read_arrow(path, uri, columns, text_columns).to_pandas(split_blocks=True)


def _read_arrow(path: Path | bytes, uri: str, columns: Sequence[str], text_columns: Sequence[str]) -> Any:
    """Reads ``columns`` of a CSV (a file, or its bytes) as an Arrow table (on several threads for big files).

    A written-out ``nan`` is read as a number (not as missing), so that it can be counted as unreadable.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    size = len(path) if isinstance(path, bytes) else path.stat().st_size
    threads = size >= THREADED_READ_BYTES
    null_values = [v for v in pacsv.ConvertOptions().null_values if v not in NAN_SPELLINGS]

    bad: list[tuple[int | None, str]] = []

    def _on_bad_row(row: Any) -> str:
        bad.append((row.number, row.text))
        return "skip"

    def _read(use_threads: bool) -> Any:
        return pacsv.read_csv(
            pa.BufferReader(path) if isinstance(path, bytes) else path,
            read_options=pacsv.ReadOptions(use_threads=use_threads),
            parse_options=pacsv.ParseOptions(invalid_row_handler=_on_bad_row),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(columns), strings_can_be_null=True, null_values=null_values,
                column_types={c: pa.string() for c in text_columns}))

    try:
        table = _read(threads)
        if bad and threads:  # read again on one thread: only then does pyarrow know the line numbers
            bad.clear()
            _read(False)
    except pa.ArrowInvalid as err:
        raise InputError(f"{uri}: cannot be read as CSV ({err}). Fix: write it as comma-separated text with "
                         f"a header row") from None
    if bad:
        shown = "; ".join(f"line {n if n is not None else '?'}: {text[:80]!r}" for n, text in bad[:5])
        raise InputError(f"{uri}: {len(bad)} unreadable row(s) with the wrong number of fields ({shown}). Fix: "
                         f"quote text holding commas, or remove the broken rows, and run again")
    return table


def _has_data_rows(path: Path) -> bool:
    """Whether anything but blank lines follows the header line (checked before any CSV reader starts)."""
    with path.open("rb") as fh:
        fh.readline()
        while chunk := fh.read(1 << 16):
            if chunk.strip():
                return True
    return False


def _non_finite_rows(column: Any) -> np.ndarray | None:
    """Rows of an Arrow float column holding nan or +-inf (not nulls), or None when there are none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_floating(column.type):
        return None
    mask = pc.fill_null(pc.or_(pc.is_nan(column), pc.is_inf(column)), False)
    if not pc.any(mask).as_py():
        return None
    return np.asarray(mask.to_numpy(), dtype=bool)


def read_table(uri: str, schema: FeatureSchema, *, role: str, extra: Sequence[str] = ()) -> Table:
    """Reads a baseline or current file: the schema's features plus ``extra`` columns when present.

    Numeric features become floats; a value that is not a number becomes null and is reported as a type
    change (an error when most values are affected). Categorical features and ``customer_id`` stay text.

    Args:
        uri: Local path or ``gs://`` URI of a CSV file with a header row.
        schema: The feature schema.
        role: ``baseline`` or ``current`` (used in messages).
        extra: Other columns to keep when present (``churn_probability``, ``customer_id`` …).

    Returns:
        The table, with its anomalies (missing columns, type changes).

    Raises:
        InputError: Missing or empty file, no data rows, unreadable rows.
    """
    no_rows = InputError(f"{uri}: the {role} file has a header but no data rows. Fix: point --{role} at a file "
                         f"with rows")
    with local_file(uri) as path:
        if path.stat().st_size == 0:
            raise InputError(f"{uri}: the {role} file is empty. Fix: point --{role} at a CSV with a header row "
                             f"and data rows")
        header = _header(path, uri)
        if not _has_data_rows(path):  # decided before Arrow's reader runs on an empty body
            raise no_rows
        wanted = [c for c in (*schema.names, *extra) if c in header]
        text = [c for c in (*schema.categorical, ID_COLUMN) if c in wanted]
        arrow = _read_arrow(path, uri, wanted, text)
    if arrow.num_rows == 0 or arrow.num_columns == 0:
        raise no_rows
    return _table_from_arrow(arrow, header, uri, schema, role)


def _table_from_arrow(arrow: Any, header: list[str], uri: str, schema: FeatureSchema, role: str) -> Table:
    """The :class:`Table` of an Arrow table read from ``uri``: numeric columns as floats (unreadable values
    counted and reported), categorical ones as text, and an anomaly per feature missing from ``header``."""
    numeric = set(schema.numeric) | {PREDICTION_COLUMN}
    non_finite = {name: _non_finite_rows(arrow.column(name)) for name in arrow.column_names if name in numeric}
    frame = arrow.to_pandas(split_blocks=True)  # one block per column: cheap to replace one column
    columns: dict[str, pd.Series] = {}
    anomalies: list[Anomaly] = []
    unreadable: dict[str, np.ndarray] = {}
    for name in frame.columns:
        values = frame[name]
        if name in numeric:
            values, rejected, anomaly = _as_numbers(values, uri, name, non_finite.get(name))
            anomalies.extend([anomaly] if anomaly else [])
            if rejected is not None:
                unreadable[name] = rejected
        elif name in schema.categorical and values.dtype != object:
            values = values.astype(object)
        columns[name] = values
    table = Table(frame=pd.DataFrame(columns, copy=False), uri=uri, columns=header, anomalies=anomalies,
                  unreadable=unreadable)
    missing = [n for n in schema.names if n not in header]
    for name in missing:
        table.anomalies.append(Anomaly("missing_column", "error", uri, name,
                                       f"feature {name!r} ({schema.get(name).kind}) is not in the {role} file"))
    return table


def read_parts(log: CurrentLog, schema: FeatureSchema, *, extra: Sequence[str]) -> tuple[Table, dict[str, int]]:
    """Reads every part of ``log`` as one table, :data:`FETCH_THREADS` parts downloaded and parsed at a time.

    Every part must carry the same columns (one model version writes one layout). A part that cannot be
    read (empty, no header, rows with the wrong number of fields, other columns than the rest) is bad input
    naming that part: the check never leaves one out quietly.

    Args:
        log: What :func:`find_current` found (layout ``parts``).
        schema: The feature schema.
        extra: Other columns to keep when present.

    Returns:
        The table (``uri``: the version's folder) and the rows read from each part.

    Raises:
        InputError: A part cannot be read or fetched, the parts' columns differ, or no part holds rows.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    wanted_extra = (*extra, MODEL_VERSION_COLUMN)
    fetch = _part_fetcher(log.parts)

    def load(part: LogObject) -> tuple[list[str], Any]:
        return _parse_part(fetch(part), part.uri, schema, wanted_extra)

    pool = ThreadPoolExecutor(max_workers=max(1, min(FETCH_THREADS, len(log.parts))), thread_name_prefix="drift-part")
    try:
        loaded = list(pool.map(load, log.parts))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    from collections import Counter

    usual = Counter(frozenset(columns) for columns, _ in loaded).most_common(1)[0][0]  # an odd part is named
    reference = next(part for part, (columns, _) in zip(log.parts, loaded, strict=True)
                     if frozenset(columns) == usual)
    header = next(columns for columns, _ in loaded if frozenset(columns) == usual)
    for part, (columns, _) in zip(log.parts, loaded, strict=True):
        if frozenset(columns) != usual:
            missing = sorted(usual - set(columns))
            added = sorted(set(columns) - usual)
            raise InputError(f"{part.uri}: its columns differ from the other parts' (e.g. {reference.uri}: missing "
                             f"{missing}, extra {added}); the parts of one model version carry the same columns. "
                             f"Fix: move the odd part out of {log.uri} (check it on its own with --current), and "
                             f"run again")
    rows = {part.uri: (table.num_rows if table is not None else 0)
            for part, (_, table) in zip(log.parts, loaded, strict=True)}
    tables = [table for _, table in loaded if table is not None and table.num_rows]
    first, last = log.window or ("?", "?")
    if not tables:
        raise InputError(f"{log.uri}: the {len(log.parts)} part(s) dated {first}..{last} have a "
                         f"header but no data rows. Fix: point --current at a log with rows, or widen --window-days")
    arrow = pa.concat_tables(_common_types(tables))
    return _table_from_arrow(arrow, header, log.uri, schema, "current"), rows


def _part_fetcher(parts: Sequence[LogObject]) -> Any:
    """A function returning a part's bytes: read from disk, or downloaded with one shared client."""
    if not parts or not parts[0].uri.startswith("gs://"):
        return lambda part: Path(part.uri).read_bytes()
    client = _gcs_client()

    def download(part: LogObject) -> bytes:
        bucket, name = _split_gcs(part.uri)
        with _gcs_errors(part.uri):
            return client.bucket(bucket).blob(name).download_as_bytes()

    return download


def _parse_part(data: bytes, uri: str, schema: FeatureSchema, extra: Sequence[str]) -> tuple[list[str], Any]:
    """A part's header and its rows as an Arrow table (None when it has a header only).

    Raises:
        InputError: The part is empty or cannot be read as CSV (named, with the lines at fault).
    """
    if not data.strip():
        raise InputError(f"{uri}: the part is empty (not even a header row; the server writes one into every "
                         f"part). Fix: remove that object and run again")
    first, _, body = data.partition(b"\n")
    header = [c.strip().strip('"') for c in first.decode("utf-8", errors="replace").rstrip("\r").split(",")]
    if not any(header):
        raise InputError(f"{uri}: no header row. Fix: the first line of every part must name the columns")
    if not body.strip():
        return header, None
    wanted = [c for c in dict.fromkeys((*schema.names, *extra)) if c in header]
    text = [c for c in (*schema.categorical, ID_COLUMN, MODEL_VERSION_COLUMN) if c in wanted]
    return header, _read_arrow(data, uri, wanted, text)


def _common_types(tables: Sequence[Any]) -> list[Any]:
    """The tables with one type per column, so they concatenate: numbers as float64 where the parts disagree
    (an all-empty column reads as null, whole numbers as int64), text where any part holds text (that value
    is then reported as unreadable, exactly as in one file)."""
    import pyarrow as pa

    names = tables[0].column_names
    target: dict[str, Any] = {}
    for name in names:
        types = {t.schema.field(name).type for t in tables}
        if len(types) == 1:
            continue
        kinds = types - {pa.null()}
        if len(kinds) == 1:
            target[name] = kinds.pop()
        elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in kinds):
            target[name] = pa.float64()
        else:
            target[name] = pa.string()
    if not target:
        return [t.select(names) for t in tables]
    out = []
    for part in tables:
        table = part.select(names)
        for name, kind in target.items():
            i = names.index(name)
            column = table.column(i)
            if column.type != kind:
                table = table.set_column(i, name, column.cast(kind))
        out.append(table)
    return out


def _check_part_versions(log: CurrentLog, current: Table) -> None:
    """The rows under ``<prefix>/<version>/`` must be that version's (one model per run).

    Raises:
        InputError: The parts hold several model versions, or another one than their folder says.
    """
    if MODEL_VERSION_COLUMN not in current.frame:
        return
    values = current.frame[MODEL_VERSION_COLUMN].dropna().astype(str).str.strip()
    versions = {str(k): int(n) for k, n in values[values != ""].value_counts().sort_index().items()}
    refuse_mixed(log.uri, versions, fix=f"find the writer that put other versions' rows under {log.uri} and move "
                                        f"those parts out")
    if versions and log.version and _safe_version(next(iter(versions))) != log.version:
        raise InputError(f"{log.uri}: its parts hold rows of model {next(iter(versions))}, not {log.version}; each "
                         f"model is compared with its own baseline. Fix: move those parts under "
                         f"{next(iter(versions))}/, or pass --baseline of the model that wrote them")


def _header(path: Path, uri: str) -> list[str]:
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        first = fh.readline()
    columns = [c.strip().strip('"') for c in first.rstrip("\r\n").split(",")] if first.strip() else []
    if not columns:
        raise InputError(f"{uri}: no header row. Fix: the first line must name the columns")
    return columns


def _as_numbers(values: pd.Series, uri: str, name: str,
                non_finite: np.ndarray | None = None) -> tuple[pd.Series, np.ndarray | None, Anomaly | None]:
    """A numeric column as floats, with the rows that held no finite number, and the anomaly that reports them.

    Text that is no number (``abc``) and numbers that are not finite (``inf``, ``-inf``, a written-out
    ``nan``; ``non_finite`` marks them for columns Arrow already read as numbers) become null and are
    returned as a row mask, so the comparison leaves them out rather than counting them as missing values.
    Up to :data:`UNREADABLE_TOLERANCE` of the rows is a warning; more is an error (bad input).
    """
    if pd.api.types.is_numeric_dtype(values) or values.isna().all():
        numbers = values.astype(float)
        bad = np.asarray(non_finite, dtype=bool) if non_finite is not None else np.zeros(len(values), dtype=bool)
        shown = values[bad]
    else:
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        bad = (values.notna() & ~np.isfinite(numbers.fillna(0.0))).to_numpy() | (
            values.notna() & numbers.isna()).to_numpy()
        shown = values[bad]
    n_bad = int(bad.sum())
    if not n_bad:
        return numbers, None, None
    numbers = numbers.mask(bad)
    rows = len(values)
    share = n_bad / max(1, rows)
    examples = ", ".join(repr(str(v)) for v in pd.unique(shown.astype(str))[:3])
    kind = "type_change" if any(not _is_float_text(v) for v in pd.unique(shown.astype(str))) else "non_finite"
    if share > UNREADABLE_TOLERANCE:
        detail = (f"{n_bad:,} of {rows:,} values ({share:.1%}) of numeric column {name!r} are not finite numbers "
                  f"(e.g. {examples}); at most {UNREADABLE_TOLERANCE:.0%} may be. Fix: correct what wrote {uri} "
                  f"(numbers only; leave a field empty when the value is missing) or remove those rows, and run "
                  f"again")
        return numbers, bad, Anomaly(kind, "error", uri, name, detail)
    detail = (f"{n_bad:,} of {rows:,} values ({share:.1%}) of numeric column {name!r} are not finite numbers "
              f"(e.g. {examples}); left out of the comparison (tolerated up to {UNREADABLE_TOLERANCE:.0%})")
    return numbers, bad, Anomaly(kind, "warning", uri, name, detail)


def _is_float_text(text: str) -> bool:
    """Whether Python reads ``text`` as a float (``inf`` and ``nan`` do; ``abc`` does not)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def category_anomalies(current: Table, baseline: Table, schema: FeatureSchema) -> list[Anomaly]:
    """Unseen categories, unexpected nulls and new columns of the current file.

    Args:
        current: The current table.
        baseline: The baseline table (its categories count as seen).
        schema: The feature schema (its categories count as seen; ``nullable`` allows nulls).

    Returns:
        Warnings (these never stop the run).
    """
    out: list[Anomaly] = []
    frame = current.frame
    for name in schema.categorical:
        if name not in frame:
            continue
        seen = set(schema.get(name).categories) | set(baseline.frame[name].dropna().astype(str).unique()) \
            if name in baseline.frame else set(schema.get(name).categories)
        values = frame[name].dropna().astype(str)
        unseen = values[~values.isin(seen)]
        if len(unseen):
            top = unseen.value_counts().head(5)
            listed = ", ".join(f"{v!r} ({n})" for v, n in top.items())
            out.append(Anomaly("unseen_category", "warning", current.uri, name,
                               f"{len(unseen)} row(s) ({len(unseen) / max(1, len(frame)):.1%}) hold categories "
                               f"not seen in training: {listed}"))
    for name in schema.names:
        if name in frame and not schema.get(name).nullable:
            unreadable = current.unreadable.get(name)  # reported on their own, not as missing values
            nulls = int(frame[name].isna().sum()) - (int(unreadable.sum()) if unreadable is not None else 0)
            share = nulls / len(frame)
            if nulls:
                out.append(Anomaly("unexpected_nulls", "error" if share > TYPE_CHANGE_ERROR_SHARE else "warning",
                                   current.uri, name, f"{nulls} row(s) ({share:.1%}) have no value for a feature "
                                                      f"that is never missing in training"))
    known = set(schema.names) | set(LOG_COLUMNS)
    for name in current.columns:
        if name not in known:
            out.append(Anomaly("new_column", "warning", current.uri, name,
                               "column is neither a model feature nor a prediction-log column; not checked"))
    return out


def read_schema(uri: str | None, baseline_uri: str) -> FeatureSchema:
    """Loads the feature schema: ``uri``, or ``feature_schema.json`` beside the baseline file.

    Raises:
        InputError: Not found or not a feature schema.
    """
    if not uri:
        uri = (baseline_uri.rsplit("/", 1)[0] + "/" + SCHEMA_FILE if baseline_uri.startswith("gs://")
               else str(Path(baseline_uri).parent / SCHEMA_FILE))
    try:
        with local_file(uri) as path:
            return FeatureSchema.from_dict(json.loads(path.read_text()))
    except InputError:
        raise InputError(f"{uri}: feature schema not found. Fix: pass --schema FILE (feature_engineering writes "
                         f"{SCHEMA_FILE} next to train.csv and into every model folder)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{uri}: not a feature schema ({err}). Fix: pass the {SCHEMA_FILE} written by "
                         f"feature_engineering") from None


def read_metrics(uri: str) -> dict[str, float]:
    """Validation metrics from a JSON file: a flat ``{"roc_auc": …}`` or ``{"metrics": {…}}``
    (``data/run_summary.json`` and evaluate's ``metrics.json`` are both fine)."""
    with local_file(uri) as path:
        try:
            data = json.loads(path.read_text())
        except ValueError as err:
            raise InputError(f"{uri}: not JSON ({err}). Fix: pass data/run_summary.json or metrics.json") from None
    metrics = data.get("metrics", data) if isinstance(data, dict) else {}
    out = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if "roc_auc" not in out:
        raise InputError(f"{uri}: no roc_auc among the metrics. Fix: pass data/run_summary.json (written by "
                         f"`pipeline.py run --summary-json`) or evaluate's metrics.json")
    return out


def join_labels(current: pd.DataFrame, labels_uri: str, label_column: str = LABEL_COLUMN) -> pd.DataFrame:
    """Joins observed outcomes to past predictions by ``customer_id`` (the latest prediction per customer).

    Args:
        current: Prediction log with ``customer_id``, ``churn_probability`` and optionally the served
            decision in ``churned`` and a ``timestamp``.
        labels_uri: CSV with ``customer_id`` and the outcome column.
        label_column: Name of the outcome column in the labels file.

    Returns:
        Rows with ``y_true``, ``churn_probability`` and ``decision`` (NaN when not logged).

    Raises:
        InputError: Missing columns or outcomes that are not 0/1.
    """
    for needed in (ID_COLUMN, PREDICTION_COLUMN):
        if needed not in current:
            raise InputError(f"the prediction log has no {needed!r} column, so labels cannot be joined")
    with local_file(labels_uri) as path:
        header = _header(path, labels_uri)
        missing = [c for c in (ID_COLUMN, label_column) if c not in header]
        if missing:
            raise InputError(f"{labels_uri}: missing column(s) {missing}. Fix: the labels file needs "
                             f"{ID_COLUMN!r} and {label_column!r} (0/1 outcome)")
        labels = _read_csv(path, labels_uri, [ID_COLUMN, label_column], [ID_COLUMN, label_column])
    outcome = labels[label_column].astype(str).str.strip().str.lower().map(
        {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "1.0": 1, "0.0": 0})
    if outcome.isna().any():
        bad = labels.loc[outcome.isna(), label_column].head(3).tolist()
        raise InputError(f"{labels_uri}: {int(outcome.isna().sum())} outcome(s) in {label_column!r} are not 0/1 "
                         f"(e.g. {bad}). Fix: write 0 or 1")
    labels = pd.DataFrame({ID_COLUMN: labels[ID_COLUMN].astype(str), "y_true": outcome.astype(int)})
    labels = labels.drop_duplicates(ID_COLUMN, keep="last")
    preds = current.assign(decision=current.get(LABEL_COLUMN, np.nan))
    if "timestamp" in preds:
        preds = preds.sort_values("timestamp", kind="stable")
    preds = preds.drop_duplicates(ID_COLUMN, keep="last")[[ID_COLUMN, PREDICTION_COLUMN, "decision"]]
    return preds.merge(labels, on=ID_COLUMN, how="inner")


# ---------------------------------------------------------------------------------------------------
# TFDV: statistics and schema validation
# ---------------------------------------------------------------------------------------------------

def import_tfdv() -> Any:
    """Imports TFDV quietly (TensorFlow's C++ log lines and TFDV's IPython notice are not for this job)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # Beam warns about optional packages (crcmod) on import
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Google clients on Python's support calendar
            import tensorflow_data_validation as tfdv
    finally:
        root.setLevel(level)
    return tfdv


def _tfdv_frame(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The columns TFDV describes (text columns were read as strings, numeric ones as floats)."""
    return frame[[c for c in columns if c in frame]]


@dataclass
class TfdvReport:
    """What TFDV found.

    Attributes:
        current: Statistics of the current data (``DatasetFeatureStatisticsList``).
        baseline: Statistics of the baseline.
        anomalies: TFDV's schema anomalies of the current data against a schema inferred from the baseline.
        comparator: TFDV's own drift measurement per feature (Jensen-Shannon or L-infinity), for reference.
    """

    current: Any
    baseline: Any
    anomalies: list[Anomaly]
    comparator: dict[str, tuple[str, float]]


def tfdv_report(tfdv: Any, baseline: pd.DataFrame, current: pd.DataFrame, schema: FeatureSchema,
                current_uri: str) -> TfdvReport:
    """Computes TFDV statistics of both sides and validates the current side against the baseline's schema.

    TFDV's comparators are configured with threshold 1.0 (never fire) only so that their measurements are
    reported beside this check's own metrics: they are what the default setup would have seen.
    """
    columns = [*schema.names, PREDICTION_COLUMN]
    options = tfdv.StatsOptions(num_histogram_buckets=20, num_quantiles_histogram_buckets=20, num_top_values=20)
    base_stats = tfdv.generate_statistics_from_dataframe(_tfdv_frame(baseline, columns), stats_options=options)
    cur_stats = tfdv.generate_statistics_from_dataframe(_tfdv_frame(current, columns), stats_options=options)
    tf_schema = tfdv.infer_schema(base_stats)
    for feature in tf_schema.feature:
        comparator = feature.drift_comparator
        if feature.name in schema.categorical or feature.HasField("domain"):
            comparator.infinity_norm.threshold = 1.0
        else:
            comparator.jensen_shannon_divergence.threshold = 1.0
    if PREDICTION_COLUMN not in {f.name for f in tf_schema.feature}:  # baseline without scores: still a [0, 1] float
        from tensorflow_metadata.proto.v0 import schema_pb2

        prediction = tf_schema.feature.add(name=PREDICTION_COLUMN, type=schema_pb2.FLOAT)
        prediction.float_domain.min = 0.0
        prediction.float_domain.max = 1.0
    result = tfdv.validate_statistics(cur_stats, tf_schema, previous_statistics=base_stats)
    anomalies = [Anomaly("tfdv", "warning", current_uri, name, f"{info.short_description}: {info.description}")
                 for name, info in sorted(result.anomaly_info.items())]
    names = {1: "tfdv_l_infinity", 2: "tfdv_jensen_shannon"}
    comparator_values = {}
    for info in result.drift_skew_info:
        for measurement in info.drift_measurements:
            comparator_values[".".join(info.path.step)] = (names.get(measurement.type, "tfdv"),
                                                           float(measurement.value))
    return TfdvReport(current=cur_stats, baseline=base_stats, anomalies=anomalies, comparator=comparator_values)


def statistics_json(stats: Any) -> str:
    """A statistics proto as JSON text."""
    from google.protobuf import json_format

    return json_format.MessageToJson(stats)


# ---------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------

def summary_frame(date: str, rows: Sequence[FeatureDrift], comparator: dict[str, tuple[str, float]],
                  performance: PerformanceCheck | None) -> pd.DataFrame:
    """The day's rows of ``drift_summary.csv``: one per feature, one for the prediction, one for performance."""
    records = []
    for r in rows:
        tfdv_metric, tfdv_value = comparator.get(r.feature, ("", float("nan")))
        records.append({**asdict(r), "date": date, "tfdv_metric": tfdv_metric, "tfdv_value": tfdv_value})
    if performance is not None:
        records.append({
            "date": date, "feature": "model_performance", "metric": "roc_auc_drop", "value": performance.auc_drop,
            "threshold": performance.threshold, "drifted": performance.decayed, "kind": "performance",
            "n_current": performance.current.get("n", 0), "note": performance.note or
            f"roc_auc {performance.current.get('roc_auc', float('nan')):.4f} on labelled predictions vs "
            f"{performance.reference.get('roc_auc', float('nan')):.4f} on validation"})
    frame = pd.DataFrame.from_records(records)
    for column in SUMMARY_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    frame["drifted"] = frame["drifted"].map(lambda v: "true" if bool(v) else "false")
    return frame[list(SUMMARY_COLUMNS)]


def append_summary(path: Path, day: pd.DataFrame) -> None:
    """Writes ``day`` into ``path``, replacing earlier rows of the same date (a re-run) and keeping others."""
    if path.is_file() and path.stat().st_size:
        old = pd.read_csv(path, dtype={"date": str, "drifted": str})
        old = old[old["date"] != day["date"].iloc[0]]
        day = pd.concat([old.reindex(columns=list(SUMMARY_COLUMNS)), day], ignore_index=True)
    day.to_csv(path, index=False, float_format="%.6g")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckConfig:
    """Everything one drift check needs (the command line maps onto this)."""

    baseline: str | None = None  # None: picked by the log's model version (:func:`choose_baseline`)
    current: str | None = None
    output_dir: str = DEFAULT_OUTPUT
    schema: str | None = None
    baseline_predictions: str | None = None
    labels: str | None = None
    label_column: str = LABEL_COLUMN
    validation_metrics: str | None = None
    date: str = ""
    window_days: int = 1
    policy: DriftPolicy = field(default_factory=DriftPolicy)
    trigger: Trigger = field(default_factory=DryRunTrigger)
    fail_on_drift: bool = False
    with_tfdv: bool = True
    models_dir: str = DEFAULT_MODELS


def model_evaluation_dir(current_uri: str, models_dir: str) -> Path | None:
    """The evaluation folder of the model that wrote a prediction log, when it is on this machine.

    The server names its log ``<model_version>_outputs.csv`` (``v3_outputs.csv``) and ``pipeline.py run``
    publishes each model's evaluation (``metrics.json``, ``validation_predictions.csv``) to
    ``models/<name>/v<N>/evaluation/``; this joins the two. None for ``gs://`` logs, other names, or when
    no or several model names have that version.
    """
    name = current_uri.rstrip("/").rsplit("/", 1)[-1]
    if current_uri.startswith("gs://") or not name.endswith("_outputs.csv"):
        return None
    version = name[: -len("_outputs.csv")]
    root = Path(models_dir)
    found = [d for d in sorted(root.glob(f"*/{version}/evaluation")) if d.parent.parent.name != "latest"] \
        if version and root.is_dir() else []
    return found[0] if len(found) == 1 else None


def log_model_versions(uri: str) -> dict[str, int]:
    """Rows per value of a prediction log's ``model_version`` column (empty: no such column, or no rows).

    Raises:
        InputError: The file is missing or has no header.
    """
    with local_file(uri) as path:
        if path.stat().st_size == 0 or MODEL_VERSION_COLUMN not in _header(path, uri) or not _has_data_rows(path):
            return {}  # read_table reports empty files itself
        frame = _read_csv(path, uri, [MODEL_VERSION_COLUMN], [MODEL_VERSION_COLUMN])
    values = frame[MODEL_VERSION_COLUMN].dropna().astype(str).str.strip()
    return {str(k): int(n) for k, n in values[values != ""].value_counts().sort_index().items()}


def version_from_name(uri: str) -> str | None:
    """``v3`` for a log named ``v3_outputs.csv`` (the server's naming), else None."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return (name[: -len("_outputs.csv")] or None) if name.endswith("_outputs.csv") else None


def model_folders(version: str, models_dir: str) -> list[Path]:
    """Published folders ``<models_dir>/<name>/<version>`` (not the ``latest`` copy), local only."""
    root = Path(models_dir)
    if not version or models_dir.startswith("gs://") or not root.is_dir():
        return []
    return [d for d in sorted(root.glob(f"*/{version}")) if d.is_dir() and d.parent.name != "latest"]


@dataclass(frozen=True)
class BaselineChoice:
    """What the check compares against, and why (printed and recorded in ``drift_decision.json``).

    Attributes:
        baseline: The training data file (local or ``gs://``).
        model_version: The log's model version (None when it names none).
        model_dir: That model's published local folder, when found.
        source: Why this baseline, in words.
        warning: Set when the model's folder is unknown, so its reference scores cannot be found.
        evaluation: The model's ``evaluation/`` folder (local or ``gs://``): reference scores and metrics.
        model_json: The server's ``model.json`` that named the model folder, when one was read.
        model_uri: The model folder it names.
        fallback: The baseline is ``data/processed/train.csv`` for an older layout, not the model's own.
    """

    baseline: str
    model_version: str | None
    model_dir: Path | None
    source: str
    warning: str = ""
    evaluation: str | None = None
    model_json: str | None = None
    model_uri: str | None = None
    fallback: bool = False


@dataclass(frozen=True)
class ServedModel:
    """``<prefix>/<model_version>/model.json``, written by the server: the model folder it loaded.

    Attributes:
        uri: The ``model.json``.
        model_uri: The model folder (``AIP_STORAGE_URI`` on Vertex AI); it holds ``baseline/train.csv`` and
            ``evaluation/validation_predictions.csv``.
        model_version: The version it records, if any.
    """

    uri: str
    model_uri: str
    model_version: str | None


def read_model_json(uri: str) -> ServedModel:
    """Reads the server's ``model.json``.

    Raises:
        InputError: Not JSON, or no ``model_uri`` (named, with the fix).
    """
    with local_file(uri) as path:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise InputError(f"{uri}: not JSON ({err}). Fix: pass --baseline FILE (the served model's "
                             f"{BASELINE_DIR}/{BASELINE_FILE}), or remove it so the server writes it again") from None
    model_uri = data.get("model_uri") if isinstance(data, dict) else None
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise InputError(f"{uri}: no 'model_uri' (the folder the server loaded the model from). Fix: pass "
                         f"--baseline FILE (the served model's {BASELINE_DIR}/{BASELINE_FILE}), or remove it so the "
                         f"server writes it again")
    version = data.get("model_version")
    return ServedModel(uri, model_uri.strip().rstrip("/"), str(version) if version not in (None, "") else None)


def refuse_mixed(current_uri: str, versions: Mapping[str, int], fix: str) -> None:
    """Raises when a log holds several model versions: each model is compared with its own baseline.

    Raises:
        InputError: More than one version, with the rows of each and ``fix``.
    """
    if len(versions) > 1:
        listed = ", ".join(f"{v} ({n:,} rows)" for v, n in versions.items())
        raise InputError(f"{current_uri}: the log holds predictions of {len(versions)} model versions ({listed}) in "
                         f"its {MODEL_VERSION_COLUMN!r} column; each model is compared with its own baseline. Fix: "
                         f"{fix}")


def choose_baseline(current_uri: str, versions: Mapping[str, int], *, baseline: str | None,
                    models_dir: str, version: str | None = None, model_json: str | None = None) -> BaselineChoice:
    """Picks the baseline of the model that served the log.

    The log's ``model_version`` column (else ``version``, its folder in the server's gs:// log, else its name
    ``v<N>_outputs.csv``) names the model. Its training split, ``baseline/train.csv`` (with
    ``feature_schema.json``), is looked up in the model folder the server's ``model.json`` names (local or
    ``gs://``), else in ``<models_dir>/<name>/v<N>/``. An explicit ``baseline`` is used as given. Falls back to
    ``data/processed/train.csv`` (the last pipeline run's, which may be another model's) only for older
    layouts: a model folder without ``baseline/``, no model folders at all, or a log that names no version.

    Args:
        current_uri: The prediction log (file or version folder).
        versions: Rows per model version in the log (:func:`log_model_versions`).
        baseline: ``--baseline`` when given (empty: find it).
        models_dir: Where ``pipeline.py run`` publishes models.
        version: The version's folder name in the server's gs:// log, when read from there.
        model_json: The server's ``model.json`` for that version, when it wrote one.

    Returns:
        The choice.

    Raises:
        InputError: The log mixes model versions, ``model.json`` is unreadable or names another version, the
            model has several local folders, or it has none while other models are published (an unknown
            model: comparing it with another's baseline would mislead).
    """
    refuse_mixed(current_uri, versions,
                 fix=f"check one version at a time: keep the rows of one {MODEL_VERSION_COLUMN} (the server writes "
                     f"one <version>_outputs.csv per model) and pass that file with --current")
    version = next(iter(versions), None) or version or version_from_name(current_uri)
    served = read_model_json(model_json) if model_json else None
    if served is not None and served.model_version and version and \
            _safe_version(served.model_version) != _safe_version(version):
        raise InputError(f"{served.uri}: model_version {served.model_version!r}, but the log is model {version}'s. "
                         f"Fix: pass --baseline FILE of model {version}, or remove that model.json so the server "
                         f"writes it again")
    folders = model_folders(version, models_dir) if version else []
    if len(folders) > 1:
        raise InputError(f"{current_uri}: model {version} has {len(folders)} folders under {models_dir} "
                         f"({', '.join(str(f) for f in folders)}). Fix: pass --baseline and --baseline-predictions "
                         f"of the model that served this log")
    folder = folders[0] if folders else None
    published = sorted({d.parent.name + "/" + d.name for d in Path(models_dir).glob("*/v*") if d.is_dir()
                        and d.parent.name != "latest"}) if not models_dir.startswith("gs://") and \
        Path(models_dir).is_dir() else []
    known = served is not None or folder is not None
    unknown = (f"model {version} of the log has no folder under {models_dir}"
               + (f" (published: {', '.join(published[:8])})" if published else " (no models published there)")
               if version and not known else "")
    served_json, served_model = (served.uri, served.model_uri) if served else (None, None)
    served_evaluation = _uri_join(served.model_uri, "evaluation") if served else None
    local_evaluation = str(folder / "evaluation") if folder is not None else None
    if baseline:
        return BaselineChoice(baseline, version, folder, "given with --baseline", unknown,
                              evaluation=served_evaluation or local_evaluation, model_json=served_json,
                              model_uri=served_model)
    served_note = ""
    if served is not None:
        candidate = _uri_join(served.model_uri, BASELINE_DIR, BASELINE_FILE)
        if uri_exists(candidate):
            return BaselineChoice(candidate, version, folder,
                                  f"model {version}'s own training split, in the folder {served.uri} names",
                                  evaluation=served_evaluation, model_json=served_json, model_uri=served_model)
        served_note = f"{served.uri} names {served.model_uri}, which has no {BASELINE_DIR}/{BASELINE_FILE}; "
    if version is None:
        return BaselineChoice(DEFAULT_BASELINE, None, None,
                              f"the log names no model version (no {MODEL_VERSION_COLUMN} column, and its name is "
                              f"not <version>_outputs.csv): the last pipeline run's training data (older layout)",
                              fallback=True)
    if folder is None:
        if published:
            raise InputError(f"{current_uri}: {served_note}{unknown}. Fix: pass --models-dir where `pipeline.py "
                             f"run` published it, or --baseline FILE and --baseline-predictions FILE of that model")
        return BaselineChoice(DEFAULT_BASELINE, version, None,
                              f"{served_note}{unknown or f'model {version} has no folder under {models_dir}'}: the "
                              f"last pipeline run's training data (older layout)", unknown,
                              evaluation=served_evaluation, fallback=True, model_json=served_json,
                              model_uri=served_model)
    own = folder / BASELINE_DIR / BASELINE_FILE
    if own.is_file():
        return BaselineChoice(str(own), version, folder, f"{served_note}model {version}'s own training split",
                              evaluation=local_evaluation, model_json=served_json, model_uri=served_model)
    return BaselineChoice(DEFAULT_BASELINE, version, folder,
                          f"{served_note}{folder} has no {BASELINE_DIR}/ (published before models carried their "
                          f"baseline): the last pipeline run's training data, which may not be {version}'s (older "
                          f"layout)", evaluation=local_evaluation, fallback=True, model_json=served_json,
                          model_uri=served_model)


@dataclass
class CheckResult:
    """What a run decided and wrote."""

    exit_code: int
    decision: Decision
    rows: list[FeatureDrift]
    anomalies: list[Anomaly]
    outputs: dict[str, str]
    trigger: TriggerRecord | None = None
    performance: PerformanceCheck | None = None
    timings: dict[str, float] = field(default_factory=dict)


def run_date(date: str) -> str:
    """``--date`` checked (YYYY-MM-DD), or today in UTC when empty.

    Raises:
        InputError: Not a date.
    """
    if not date:
        return dt.datetime.now(dt.UTC).date().isoformat()
    try:
        return dt.date.fromisoformat(date).isoformat()
    except ValueError:
        raise InputError(f"--date {date!r}: not a date. Fix: write YYYY-MM-DD") from None


def _bad_input_decision(reason: str) -> Decision:
    return Decision("bad_input", False, reason, [], False, False)


def run_check(config: CheckConfig) -> CheckResult:
    """Runs one drift check: read, compare, decide, report, trigger.

    Args:
        config: Inputs, outputs, sensitivity and trigger.

    Returns:
        The result; ``exit_code`` is 0 (no drift, or drift handled), 1 (drift with ``fail_on_drift``),
        2 (input errors found after reading: missing columns, changed types), 3 (trigger failed) or 4 (the
        TFDV report failed).

    Raises:
        InputError: An input cannot be read at all (missing, empty, unreadable rows).
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    date = run_date(config.date)
    if config.window_days < 1:
        raise InputError(f"--window-days {config.window_days}: the window needs at least 1 day. Fix: pass "
                         f"--window-days 1 (the day of --date) or more")
    log = find_current(config.current, dt.date.fromisoformat(date), config.window_days)
    current_uri = log.uri
    choice = choose_baseline(current_uri, log_model_versions(current_uri) if log.layout != "parts" else {},
                             baseline=config.baseline, models_dir=config.models_dir, version=log.version,
                             model_json=log.model_json)
    if choice.fallback and not Path(DEFAULT_BASELINE).is_file():
        raise InputError(f"{current_uri}: no baseline found ({choice.source.split(': the last pipeline run')[0]}), "
                         f"and {DEFAULT_BASELINE} does not exist either. Fix: pass --baseline FILE, the training "
                         f"split of the model that served this log (its folder's {BASELINE_DIR}/{BASELINE_FILE}, "
                         f"local or gs://), or --models-dir where `pipeline.py run` published it")
    config = replace(config, baseline=choice.baseline)
    say(f"baseline: {choice.baseline} ({choice.source})")
    schema = read_schema(config.schema, choice.baseline)
    baseline = read_table(choice.baseline, schema, role="baseline", extra=(PREDICTION_COLUMN,))
    extra = (ID_COLUMN, PREDICTION_COLUMN, LABEL_COLUMN, "timestamp")
    part_rows: dict[str, int] = {}
    if log.layout == "parts":
        current, part_rows = read_parts(log, schema, extra=extra)
        _check_part_versions(log, current)
    else:
        current = read_table(current_uri, schema, role="current", extra=extra)
    timings["read_s"] = time.perf_counter() - clock
    if log.layout == "parts":
        say(f"current: {len(current.frame):,} rows from {len(log.parts)} part(s) of {log.version} dated "
            f"{log.window[0] if log.window else '?'}..{log.window[1] if log.window else '?'} under {current_uri}")
    for version, what in log.left_out.items():
        say(f"left out: {version} ({what}); the check compares one model version, the one serving last")
    say(f"drift check {date}: baseline {config.baseline} ({len(baseline.frame):,} rows), current {current_uri} "
        f"({len(current.frame):,} rows), {len(schema.names)} features "
        f"({len(schema.numeric)} numeric, {len(schema.categorical)} categorical)")

    anomalies = [*baseline.anomalies, *current.anomalies, *category_anomalies(current, baseline, schema)]
    if any(a.severity == "error" and a.file == baseline.uri for a in anomalies):
        causes = "; ".join(a.detail for a in anomalies if a.severity == "error" and a.file == baseline.uri)
        raise InputError(f"{config.baseline}: the baseline does not match the feature schema ({causes}). Fix: pass "
                         f"the train.csv and {SCHEMA_FILE} written together by feature_engineering")

    if choice.warning and not config.baseline_predictions:
        anomalies.append(Anomaly("unknown_model", "warning", current.uri, MODEL_VERSION_COLUMN,
                                 f"{choice.warning}; the prediction cannot be compared with its validation scores"))
    evaluation = choice.evaluation
    if evaluation is not None:
        scores_uri = _uri_join(evaluation, REFERENCE_PREDICTIONS)
        if not config.baseline_predictions and uri_exists(scores_uri):
            config = replace(config, baseline_predictions=scores_uri)
        metrics = _uri_join(evaluation, "metrics.json")
        if config.labels and not config.validation_metrics and uri_exists(metrics):
            config = replace(config, validation_metrics=metrics)
    reference = _reference_predictions(config, baseline)
    prediction = None
    if reference is not None and PREDICTION_COLUMN in current.frame:
        scores = current.frame[PREDICTION_COLUMN].to_numpy(dtype=float)
        skip = current.unreadable.get(PREDICTION_COLUMN)
        prediction = (reference, scores if skip is None else scores[~skip])
    elif PREDICTION_COLUMN not in current.frame:
        anomalies.append(Anomaly("missing_column", "error", current.uri, PREDICTION_COLUMN,
                                 f"no {PREDICTION_COLUMN!r} column: is this a prediction log?"))
    clock = time.perf_counter()
    rows = compare(baseline.frame, current.frame, numeric=schema.numeric,
                   categorical={n: schema.get(n).categories for n in schema.categorical}, policy=config.policy,
                   prediction=prediction, prediction_name=PREDICTION_COLUMN,
                   left_out={n: (baseline.unreadable.get(n), current.unreadable.get(n)) for n in schema.numeric})
    if prediction is None:
        from monitoring.drift import skipped

        if reference is not None:
            note = "not in the current file"
        elif choice.warning:
            note = f"{choice.warning}: pass --models-dir or --baseline-predictions FILE"
        elif evaluation is not None:
            note = f"{evaluation} has no {REFERENCE_PREDICTIONS}: pass --baseline-predictions FILE"
        else:
            note = ("no reference predictions: pass --baseline-predictions FILE (the model's scores on its "
                    "training or validation data)")
        rows.append(skipped(PREDICTION_COLUMN, "prediction", "psi", note))
    timings["drift_s"] = time.perf_counter() - clock

    performance = None
    if config.labels:
        joined = join_labels(current.frame, config.labels, config.label_column)
        reference_metrics = read_metrics(config.validation_metrics) if config.validation_metrics else {}
        decisions = joined["decision"].to_numpy() if joined["decision"].notna().all() else None
        performance = performance_check(joined["y_true"].to_numpy(), joined[PREDICTION_COLUMN].to_numpy(),
                                        decisions, reference_metrics, config.policy)
        if not config.validation_metrics:
            performance = replace(performance, note="no validation metrics: pass --validation-metrics FILE")

    errors = [a for a in anomalies if a.severity == "error"]
    decision = decide(rows, len(current.frame), config.policy, performance)
    if errors:
        decision = _bad_input_decision(
            "input problems, no retraining until they are fixed: "
            + "; ".join(f"{a.column}: {a.detail}" for a in errors[:5]))

    outputs: dict[str, str] = {}
    exit_code = EXIT_OK
    record: TriggerRecord | None = None
    with output_dir(config.output_dir) as out:
        tfdv_error = ""
        comparator: dict[str, tuple[str, float]] = {}
        report: TfdvReport | None = None
        if config.with_tfdv:
            clock = time.perf_counter()
            try:
                tfdv = import_tfdv()
                timings["tfdv_import_s"] = time.perf_counter() - clock
                clock = time.perf_counter()
                report = tfdv_report(tfdv, baseline.frame, current.frame, schema, current.uri)
                comparator = report.comparator
                anomalies.extend(report.anomalies)
                timings["tfdv_stats_s"] = time.perf_counter() - clock
            except Exception as err:  # noqa: BLE001 - the decision stands without TFDV; the error is reported
                tfdv_error = f"{type(err).__name__}: {err}"
                logger.error("TFDV statistics failed: %s", tfdv_error)
        clock = time.perf_counter()
        day = summary_frame(date, rows, comparator, performance)
        append_summary(out / SUMMARY_FILE, day)
        outputs["summary"] = _join(config.output_dir, SUMMARY_FILE)
        if report is not None:
            from monitoring.report import render_html

            stats_name = f"input_stats_{date}.json"
            (out / stats_name).write_text(statistics_json(report.current) + "\n")
            outputs["input_stats"] = _join(config.output_dir, stats_name)
            plots = report_distributions(rows, decision, baseline, current, schema, config.policy, prediction)
            report_name = f"drift_report_{date}.html"
            (out / report_name).write_text(render_html(date, decision, rows, anomalies, plots, choice.baseline,
                                                       current.uri, stats_file=stats_name))
            outputs["report"] = _join(config.output_dir, report_name)
        anomalies_name = f"schema_anomalies_{date}.json"
        (out / anomalies_name).write_text(json.dumps([asdict(a) for a in anomalies], indent=2) + "\n")
        outputs["anomalies"] = _join(config.output_dir, anomalies_name)
        outputs["decision"] = _join(config.output_dir, DECISION_FILE)
        timings["write_s"] = time.perf_counter() - clock

        if decision.retrain:
            record = config.trigger.fire(RetrainRequest(reason=decision.reason, features=decision.drifted_features,
                                                        date=date, decision_file=outputs["decision"]), out)
            outputs["trigger"] = _join(config.output_dir, write_record(record, out).name)
            if record.log:
                outputs["trigger_log"] = _join(config.output_dir, Path(record.log).name)
        payload = {
            "date": date, "status": decision.status, "retrain": decision.retrain, "reason": decision.reason,
            "drifted_features": decision.drifted_features, "prediction_drift": decision.prediction_drift,
            "performance_decay": decision.performance_decay,
            "rows": {"baseline": len(baseline.frame), "current": len(current.frame)},
            "inputs": {"baseline": config.baseline, "baseline_source": choice.source,
                       "model_version": choice.model_version,
                       "model_dir": str(choice.model_dir) if choice.model_dir else None,
                       "model_json": choice.model_json, "model_uri": choice.model_uri,
                       "current": current.uri, "current_given": config.current, "current_layout": log.layout,
                       "window": list(log.window) if log.window else None, "left_out": log.left_out,
                       "schema_version": schema.version,
                       "baseline_predictions": config.baseline_predictions, "labels": config.labels,
                       "validation_metrics": config.validation_metrics},
            "current_parts": [{"uri": uri, "rows": n} for uri, n in part_rows.items()],
            "policy": config.policy.to_dict(),
            "anomalies": {"errors": sum(a.severity == "error" for a in anomalies),
                          "warnings": sum(a.severity == "warning" for a in anomalies)},
            "performance": asdict(performance) if performance else None,
            "trigger": record.to_dict() if record else None,
            "tfdv_error": tfdv_error or None,
            "outputs": outputs,
        }
        (out / DECISION_FILE).write_text(json.dumps(_json_safe(payload), indent=2) + "\n")

    if errors:
        exit_code = EXIT_BAD_INPUT
    elif record is not None and not record.succeeded:
        exit_code = EXIT_TRIGGER_FAILED
    elif tfdv_error:
        exit_code = EXIT_REPORT_FAILED
    elif decision.retrain and config.fail_on_drift:
        exit_code = EXIT_DRIFT
    return CheckResult(exit_code=exit_code, decision=decision, rows=rows, anomalies=anomalies, outputs=outputs,
                       trigger=record, performance=performance, timings=timings)


def report_distributions(rows: Sequence[FeatureDrift], decision: Decision, baseline: Table, current: Table,
                         schema: FeatureSchema, policy: DriftPolicy,
                         prediction: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Distribution]:
    """The buckets the report plots: every drifted feature (most drifted first), then the prediction.

    Numeric features leave out the unreadable values, as their checks did. Below ``min_rows`` current rows no
    feature is judged, so only the prediction is plotted.
    """
    from monitoring.drift import categorical_distribution, numeric_distribution

    by_name = {r.feature: r for r in rows}
    names = list(decision.drifted_features)
    compared = by_name.get(PREDICTION_COLUMN)
    if prediction is not None and PREDICTION_COLUMN not in names and compared is not None:
        names.append(PREDICTION_COLUMN)
    plots: dict[str, Distribution] = {}
    for name in names:
        row = by_name.get(name)
        if row is None or math.isnan(row.value):
            continue
        if row.kind == "prediction" and prediction is not None:
            plots[name] = numeric_distribution(name, prediction[0], prediction[1], policy.n_bins)
        elif row.kind == "categorical":
            plots[name] = categorical_distribution(name, baseline.frame[name], current.frame[name],
                                                   schema.get(name).categories)
        elif row.kind == "numeric":
            b, c = baseline.frame[name].to_numpy(dtype=float), current.frame[name].to_numpy(dtype=float)
            skip_b, skip_c = baseline.unreadable.get(name), current.unreadable.get(name)
            plots[name] = numeric_distribution(name, b if skip_b is None else b[~skip_b],
                                               c if skip_c is None else c[~skip_c], policy.n_bins)
    return plots


def _reference_predictions(config: CheckConfig, baseline: Table) -> np.ndarray | None:
    if config.baseline_predictions:
        with local_file(config.baseline_predictions) as path:
            header = _header(path, config.baseline_predictions)
            if PREDICTION_COLUMN not in header:
                raise InputError(f"{config.baseline_predictions}: no {PREDICTION_COLUMN!r} column. Fix: pass a CSV "
                                 f"of the model's scores with a {PREDICTION_COLUMN!r} column")
            arrow = _read_arrow(path, config.baseline_predictions, [PREDICTION_COLUMN], [])
        values, _, anomaly = _as_numbers(arrow.column(PREDICTION_COLUMN).to_pandas(), config.baseline_predictions,
                                         PREDICTION_COLUMN, _non_finite_rows(arrow.column(PREDICTION_COLUMN)))
        if anomaly:
            raise InputError(f"{config.baseline_predictions}: {anomaly.detail}. Fix: scores must be finite numbers")
        return values.to_numpy(dtype=float)
    if PREDICTION_COLUMN in baseline.frame:
        return baseline.frame[PREDICTION_COLUMN].to_numpy(dtype=float)
    return None


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if base.startswith("gs://") else str(Path(base) / name)


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

def say(message: str) -> None:
    """Prints a progress line for people (stdout)."""
    print(message, flush=True)


def print_result(result: CheckResult) -> None:
    """Prints the per-feature table, anomalies, the decision and the trigger outcome."""
    say(f"{'feature':<28} {'metric':<14} {'value':>9} {'threshold':>9}  drifted")
    for r in result.rows:
        value = "" if math.isnan(r.value) else f"{r.value:.4f}"
        threshold = "" if math.isnan(r.threshold) else f"{r.threshold:.4f}"
        flag = "DRIFT" if r.drifted else ("-" if not value else "")
        say(f"{r.feature:<28} {r.metric:<14} {value:>9} {threshold:>9}  {flag}{'  ' + r.note if r.note else ''}")
    if result.performance is not None:
        p = result.performance
        auc = p.current.get("roc_auc", float("nan"))
        say("performance: " + (p.note or f"ROC AUC {auc:.4f} on {p.current['n']} labelled predictions, "
                                         f"{p.auc_drop:.4f} below validation (allowed {p.threshold:.4f})"))
    for a in result.anomalies:
        say(f"anomaly [{a.severity}] {a.kind} {a.column}: {a.detail}")
    d = result.decision
    say(f"decision: {'RETRAIN' if d.retrain else d.status.replace('_', ' ')} — {d.reason}")
    for name, path in result.outputs.items():
        say(f"  {name:<12} {path}")
    if result.trigger is not None:
        t = result.trigger
        if t.started:
            say(f"trigger: {t.trigger} training run {'finished' if t.succeeded else 'FAILED'} "
                f"(exit {t.exit_status}, {t.seconds:.0f}s): {' '.join(t.command)}  log: {t.log}")
        else:
            say(f"trigger: {t.trigger}: {t.detail.get('note') or t.detail.get('error')}")


def build_parser() -> argparse.ArgumentParser:
    """The command line (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="drift_check.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Nightly drift check: is production traffic still like the data the model was trained on?

It compares the training baseline with a prediction log, feature by feature and for the prediction
churn_probability, and decides whether to retrain:

  current data       --current is a file, a folder or a gs:// prefix. A folder or prefix of the server's
                     log, <prefix>/<model_version>/date=YYYY-MM-DD/part-<worker>-<seq>.csv (what it writes
                     with SERVING_PREDICTION_LOG_URI), gives every part dated in the --window-days days
                     ending at --date, of one model version: the one serving last (newest day, then newest
                     part). Versions left out are named ("left out: ..."). Parts are listed once per
                     folder and downloaded 8 at a time; the rows of each part are counted in
                     drift_decision.json, and a part that cannot be read is bad input naming it. A folder
                     of <model_version>_outputs.csv files (the server's local log) gives the newest one.
  baseline           the log's model version picks that model's training split and validation scores:
                     in the folder the server loaded it from, named by <prefix>/<model_version>/model.json
                     (model_uri, local or gs://): <model_uri>/baseline/train.csv with its
                     feature_schema.json and <model_uri>/evaluation/validation_predictions.csv; else in
                     <models-dir>/<name>/v<N>/ (baseline/, evaluation/), v<N> from the log's
                     model_version column. A log holding several model versions is refused (bad input:
                     check one version per run); a version with no folder while other models are
                     published is refused too. data/processed/train.csv is used only for older layouts
                     (a model folder without baseline/, no models/, a log without a version) and the
                     output says so; when none of these exists the error names --baseline.
                     --baseline overrides; --baseline "" means "find it" (what the drift pipeline passes).
  number formatting  the same values written with less precision (pandas to_json's 10 decimals,
                     float32, any relative change up to 1e-6) give the same decision: bucket edges lie
                     between distinct baseline values (values within 1e-5 of each other count as one),
                     "zero" is within 1e-9 of the feature's largest magnitude, and a category written
                     as 1.0 or " 2" is the category 1 or 2.
  unreadable values  text that is no number (abc) and inf, -inf or a written-out nan in a numeric
                     column are left out of the comparison and reported; above 1% of a column's rows
                     the run is bad input (exit 2, no retraining), naming the column, the count and the fix.

  numeric features   four checks: PSI over 20 buckets cut at the baseline's quantiles (a bucket each for
                     "0" or any other value many rows share, one for nulls); the rank shift of the
                     non-zero values (normal scores: the current rows' mean van der Waerden score
                     minus the baseline's, ~ a shift in SDs once normalised); the change of the share of
                     zeros (where the baseline has zeros: a rare count moving off zero); and the mean
                     shift (Welch's standardized mean difference). The rank shift of all values and
                     Jensen-Shannon divergence are reported without deciding.
  categorical        L-infinity distance of the category shares (unseen values and nulls count as
                     categories of their own); PSI beside it.
  thresholds         per feature, from the sample sizes: the value that same-distribution data exceeds
                     with probability its share of --false-alarm-rate (split evenly over the features;
                     within a numeric feature PSI gets 10%, the other checks the rest); never below half of what
                     the gentlest --min-effect (10%) rise of that feature's mean would cause (so a
                     million rows do not alarm on trivia) nor 1 point for category shares;
                     --thresholds pins any of them.
  sample size        below --min-rows current rows nothing is judged (status insufficient_data).
  performance        with --labels (customer_id + the observed outcome), ROC AUC on the labelled past
                     predictions against the model's validation ROC AUC (--validation-metrics).

TFDV computes the day's statistics, validates the current data against the schema it infers from the
baseline (missing or new columns, unseen categories, type changes: reported, never a crash); the HTML
report plots baseline vs current for each drifted feature and the prediction. TFDV's own comparators
(Jensen-Shannon over 10 equal-width buckets) are reported as tfdv_value for reference; they are nearly
blind on skewed features.""",
        epilog="""\
outputs (in --output-dir; local folder or gs://bucket/prefix):
  drift_summary.csv            one row per feature, for churn_probability and (with labels) performance:
                               date, feature, metric, value, threshold, drifted, and the details;
                               earlier dates are kept, a re-run replaces its own date
  drift_decision.json          retrain or not, why, which features, inputs, thresholds, trigger outcome
  input_stats_<date>.json      TFDV statistics of the current data
  drift_report_<date>.html     the decision, baseline-vs-current plots of the drifted features and the
                               prediction, the feature table (self-contained: works offline)
  schema_anomalies_<date>.json missing/new columns, unseen categories, type changes, TFDV anomalies
  retrain_trigger_<date>.json  when retraining was decided: reason, features, command, exit status, times

exit status:
  0  no drift, too little data, or drift found and the trigger did its job
  1  drift found and --fail-on-drift was given
  2  bad input: missing/empty/header-only file, unreadable rows, missing columns, a numeric column with
     more than 1% unreadable values (text, inf, nan), several model versions in one log, an unknown model,
     a log part that cannot be read (named), no parts in the window, no baseline found (names --baseline)
  3  retraining was decided but the trigger failed (see retrain_trigger_<date>.json)
  4  the TFDV statistics or report failed (the drift decision and summary were still written)

examples:
  .venv-monitoring/bin/python monitoring/drift_check.py                     # the make drift defaults
  .venv-monitoring/bin/python monitoring/drift_check.py --current data/predictions/v3_outputs.csv \\
      --output-dir data/monitoring --trigger local
  .venv-monitoring/bin/python monitoring/drift_check.py --current gs://B/predictions/ \\
      --output-dir gs://B/monitoring          # today's parts (UTC) of the version serving last
  ... --date 2026-07-01 --window-days 7       # the week ending 2026-07-01
  ... --baseline gs://B/models/churn/3/baseline/train.csv   # any training split, with its schema beside it
  ... --labels data/labels/2026-06.csv --validation-metrics data/run_summary.json""")
    io_ = parser.add_argument_group("inputs and outputs")
    io_.add_argument("--baseline", default=None,
                     help=f"training data: customer_id, the features, churned (default, or \"\": the training "
                          f"split of the model that served the log, <model_uri>/{BASELINE_DIR}/{BASELINE_FILE} from "
                          f"the log's {MODEL_JSON}, else <models-dir>/<name>/v<N>/{BASELINE_DIR}/{BASELINE_FILE}, v<N> "
                          f"from the log's {MODEL_VERSION_COLUMN} column; {DEFAULT_BASELINE} only for older "
                          f"layouts, and the output says which)")
    io_.add_argument("--current", default=None,
                     help=f"prediction log to check: a CSV file, or a folder or gs:// prefix of the server's log "
                          f"(<model_version>/{DATE_PREFIX}YYYY-MM-DD/part-*.csv, or {PREDICTIONS_PATTERN}) "
                          f"(default: {DEFAULT_PREDICTIONS}, its newest {PREDICTIONS_PATTERN})")
    io_.add_argument("--output-dir", default=DEFAULT_OUTPUT, help="where the reports go (default: %(default)s)")
    io_.add_argument("--schema", default=None, help=f"feature schema (default: {SCHEMA_FILE} beside --baseline)")
    io_.add_argument("--baseline-predictions", default=None,
                     help=f"CSV with {PREDICTION_COLUMN} = the model's scores on its own data, the reference for "
                          f"prediction drift (default: <models-dir>/<name>/v<N>/evaluation/{REFERENCE_PREDICTIONS} "
                          f"of the log's model version, written by evaluate; else a {PREDICTION_COLUMN} column of "
                          f"--baseline, if any)")
    io_.add_argument("--models-dir", default=DEFAULT_MODELS,
                     help="published models, where the served version's evaluation is looked up (default: "
                          "%(default)s)")
    io_.add_argument("--labels", default=None, help="CSV of observed outcomes: customer_id and --label-column")
    io_.add_argument("--label-column", default=LABEL_COLUMN, help="outcome column in --labels (default: %(default)s)")
    io_.add_argument("--validation-metrics", default=None,
                     help="JSON with the model's validation roc_auc (default: the served version's "
                          "evaluation/metrics.json, see --baseline-predictions)")
    io_.add_argument("--date", default="", help="date of the run and last day of the window, YYYY-MM-DD "
                                                 "(default: today, UTC)")
    io_.add_argument("--window-days", type=int, default=1,
                     help="for a folder or gs:// prefix of log parts: read the parts dated in the N days ending at "
                          "--date (default: %(default)s, the day of --date)")
    sens = parser.add_argument_group("sensitivity")
    defaults = DriftPolicy()
    sens.add_argument("--false-alarm-rate", type=float, default=defaults.false_alarm_rate,
                      help="chance that a run on unchanged data flags anything (default: %(default)s)")
    sens.add_argument("--min-rows", type=int, default=defaults.min_rows,
                      help="fewest current rows to judge drift (default: %(default)s)")
    sens.add_argument("--bins", type=int, default=defaults.n_bins, help="quantile buckets (default: %(default)s)")
    sens.add_argument("--min-effect", type=float, default=defaults.min_effect,
                      help="smallest relative change of a feature's mean worth retraining for; numeric thresholds "
                           "never drop below half its effect (default: %(default)s)")
    sens.add_argument("--l-infinity-floor", type=float, default=defaults.l_infinity_floor,
                      help="smallest category-share threshold (default: %(default)s = one point)")
    sens.add_argument("--max-auc-drop", type=float, default=defaults.max_auc_drop,
                      help="allowed ROC AUC drop against validation (default: %(default)s)")
    sens.add_argument("--thresholds", default=None,
                      help='JSON file of fixed thresholds: {"monetary_total": {"psi": 0.02, "rank_shift": 0.01}}; '
                           'metrics: psi, rank_shift, zero_share, mean_shift, l_infinity')
    act = parser.add_argument_group("retraining")
    act.add_argument("--trigger", choices=("none", "local", "vertex"), default="none",
                     help="what a retrain decision starts: none (record only), local (pipeline.py run in the "
                          "main environment), vertex (Vertex AI PipelineJob) (default: %(default)s)")
    act.add_argument("--raw-dir", type=Path, default=None,
                     help="raw data to retrain on (default: the newest folder with customers.csv and "
                          "transactions.json under data/raw)")
    act.add_argument("--retrain-spec", default=None,
                     help="for --trigger vertex: JSON file (local or gs://) naming the training run: template, "
                          "project, region, pipeline_root, parameter_values (raw_dir, ...), service_account -- "
                          "the drift pipeline's 'retrain' parameter")
    act.add_argument("--pipeline-python", default=".venv/bin/python",
                     help="interpreter of the main environment for --trigger local (default: %(default)s)")
    act.add_argument("--fail-on-drift", action="store_true", help="exit 1 when retraining was decided")
    parser.add_argument("--no-tfdv", action="store_true",
                        help="skip the TFDV statistics and report (the drift decision does not need them)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _policy(args: argparse.Namespace) -> DriftPolicy:
    overrides: dict = {}
    if args.thresholds:
        try:
            with local_file(args.thresholds) as path:
                overrides = json.loads(path.read_text())
        except ValueError as err:
            raise InputError(f"{args.thresholds}: not JSON ({err})") from None
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise InputError(f'{args.thresholds}: expected {{"feature": {{"metric": threshold}}}}')
    try:
        return DriftPolicy(n_bins=args.bins, false_alarm_rate=args.false_alarm_rate, min_rows=args.min_rows,
                           min_effect=args.min_effect, l_infinity_floor=args.l_infinity_floor, overrides=overrides,
                           max_auc_drop=args.max_auc_drop)
    except ValueError as err:
        raise InputError(f"invalid setting: {err}") from None


def _trigger(args: argparse.Namespace) -> Trigger:
    if args.trigger == "local":
        return LocalPipelineTrigger(python=args.pipeline_python, raw_dir=args.raw_dir,
                                    extra_args=("--summary-json", "data/run_summary.json"))
    if args.trigger == "vertex":
        if not args.retrain_spec:
            raise InputError("--trigger vertex needs --retrain-spec FILE: JSON with template, project, region, "
                             "pipeline_root and parameter_values (see docs/vertex.md, '--retrain-spec')")
        try:
            with local_file(args.retrain_spec) as path:
                spec = json.loads(path.read_text())
        except ValueError as err:
            raise InputError(f"{args.retrain_spec}: not JSON ({err})") from None
        if not isinstance(spec, dict):
            raise InputError(f"{args.retrain_spec}: expected a JSON object with template, project, region, "
                             f"pipeline_root, parameter_values")
        return VertexPipelineTrigger(spec=spec)
    return DryRunTrigger()


def _write_error_decision(output: str, date: str, message: str) -> None:
    """Best effort: records a failed run in ``drift_decision.json`` so dashboards see it."""
    date = date or dt.datetime.now(dt.UTC).date().isoformat()
    payload = {"date": date, "status": "bad_input", "retrain": False, "reason": message, "drifted_features": []}
    try:
        with output_dir(output, keep=()) as out:
            (out / DECISION_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    except (OSError, InputError) as err:
        logger.warning("could not write %s to %s: %s", DECISION_FILE, output, err)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python monitoring/drift_check.py --help``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    try:
        config = CheckConfig(
            baseline=args.baseline or None, current=args.current or None, output_dir=args.output_dir,
            schema=args.schema or None, baseline_predictions=args.baseline_predictions or None,
            labels=args.labels or None, label_column=args.label_column,
            validation_metrics=args.validation_metrics or None, date=args.date, window_days=args.window_days,
            policy=_policy(args),
            trigger=_trigger(args), fail_on_drift=args.fail_on_drift, with_tfdv=not args.no_tfdv,
            models_dir=args.models_dir)
        result = run_check(config)
    except InputError as err:
        print(f"drift_check: error: {err}", file=sys.stderr)
        _write_error_decision(args.output_dir, args.date, str(err))
        return EXIT_BAD_INPUT
    print_result(result)
    if result.exit_code == EXIT_BAD_INPUT:
        print("drift_check: error: the current data does not match the feature schema (see the anomalies above)",
              file=sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
