"""The nightly drift check: does production traffic still look like the data the model was trained on?

Reads a prediction log (``data/predictions/<model_version>_outputs.csv``) and the baseline of the model that
served it (``models/<name>/<model_version>/baseline/train.csv``, picked by the log's ``model_version``),
compares every feature of the feature schema and the prediction ``churn_probability`` against that model's
validation scores (``monitoring/drift.py`` has the metrics and why they are what they are),
checks performance when outcomes of past predictions have arrived, writes the reports, and starts a
training run when the decision says retrain (``monitoring/trigger.py``).

Run it with the monitoring environment: ``.venv-monitoring/bin/python monitoring/drift_check.py --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import html
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
from monitoring.drift import (Decision, DriftPolicy, FeatureDrift, PerformanceCheck, compare, decide,
                              performance_check)
from monitoring.trigger import (DryRunTrigger, LocalPipelineTrigger, RetrainRequest, Trigger, TriggerRecord,
                                VertexPipelineTrigger, write_record)

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


def newest_prediction_log(folder: Path) -> Path:
    """The most recently modified ``*_outputs.csv`` in ``folder``.

    Raises:
        InputError: There is none.
    """
    logs = sorted(folder.glob(PREDICTIONS_PATTERN), key=lambda p: (p.stat().st_mtime, p.name))
    if not logs:
        raise InputError(f"{folder}: no prediction log ({PREDICTIONS_PATTERN}); serve some traffic first "
                         f"(the server logs every prediction there) or pass --current FILE")
    return logs[-1]


# ---------------------------------------------------------------------------------------------------
# Reading inputs
# ---------------------------------------------------------------------------------------------------

def _read_csv(path: Path, uri: str, columns: Sequence[str], text_columns: Sequence[str]) -> pd.DataFrame:
    """Reads ``columns`` of a CSV with pyarrow; rows with the wrong field count fail."""
    return _read_arrow(path, uri, columns, text_columns).to_pandas(split_blocks=True)


def _read_arrow(path: Path, uri: str, columns: Sequence[str], text_columns: Sequence[str]) -> Any:
    """Reads ``columns`` of a CSV as an Arrow table (on several threads for big files).

    A written-out ``nan`` is read as a number (not as missing), so that it can be counted as unreadable.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    threads = path.stat().st_size >= THREADED_READ_BYTES
    null_values = [v for v in pacsv.ConvertOptions().null_values if v not in NAN_SPELLINGS]

    bad: list[tuple[int | None, str]] = []

    def _on_bad_row(row: Any) -> str:
        bad.append((row.number, row.text))
        return "skip"

    def _read(use_threads: bool) -> Any:
        return pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(use_threads=use_threads),
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
        numeric = set(schema.numeric) | {PREDICTION_COLUMN}
        non_finite = {name: _non_finite_rows(arrow.column(name)) for name in wanted if name in numeric}
        frame = arrow.to_pandas(split_blocks=True)  # one block per column: 7x faster here, and cheap to replace
    if frame.empty:
        raise no_rows
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
    preds = current.assign(decision=current[LABEL_COLUMN] if LABEL_COLUMN in current else np.nan)
    if "timestamp" in preds:
        preds = preds.sort_values("timestamp", kind="stable")
    preds = preds.drop_duplicates(ID_COLUMN, keep="last")[[ID_COLUMN, PREDICTION_COLUMN, "decision"]]
    return preds.merge(labels, on=ID_COLUMN, how="inner")


# ---------------------------------------------------------------------------------------------------
# TFDV: statistics, schema validation, the Facets report
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


def render_html(date: str, decision: Decision, rows: Sequence[FeatureDrift], anomalies: Sequence[Anomaly],
                facets_html: str, baseline_uri: str, current_uri: str) -> str:
    """The drift report: the decision, the per-feature table, anomalies, then TFDV's Facets comparison."""
    def cell(value: float, digits: int = 4) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"

    body = []
    for r in rows:
        style = ' style="background:#fde2e1"' if r.drifted else ""
        body.append(f"<tr{style}><td>{html.escape(r.feature)}</td><td>{r.kind}</td><td>{r.metric}</td>"
                    f"<td>{cell(r.value)}</td><td>{cell(r.threshold)}</td><td>{'yes' if r.drifted else ''}</td>"
                    f"<td>{cell(r.psi)}</td><td>{cell(r.rank_shift)}</td><td>{cell(r.zero_share)}</td>"
                    f"<td>{cell(r.mean_shift)}</td><td>{cell(r.js)}</td>"
                    f"<td>{html.escape(r.note)}</td></tr>")
    items = "".join(f"<li><b>{a.severity}</b> {html.escape(a.kind)} <code>{html.escape(a.column)}</code>: "
                    f"{html.escape(a.detail)}</li>" for a in anomalies) or "<li>none</li>"
    verdict = "RETRAIN" if decision.retrain else decision.status.replace("_", " ")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift report {date}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}} th{{background:#eee}}</style></head><body>
<h1>Drift report {date}: {verdict}</h1>
<p>{html.escape(decision.reason)}</p>
<p>baseline <code>{html.escape(baseline_uri)}</code> · current <code>{html.escape(current_uri)}</code></p>
<h2>Features</h2>
<table><tr><th>feature</th><th>kind</th><th>metric</th><th>value</th><th>threshold</th><th>drifted</th>
<th>PSI</th><th>rank shift</th><th>zero share</th><th>mean shift (SD)</th><th>JS</th>
<th>note</th></tr>
{''.join(body)}</table>
<h2>Schema anomalies</h2><ul>{items}</ul>
<h2>TFDV statistics: current (lhs) vs baseline (rhs)</h2>
<p>TensorFlow Data Validation's Facets view; it loads its scripts from the internet.</p>
{facets_html}
</body></html>
"""


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
        baseline: The training data file.
        model_version: The log's model version (None when it names none).
        model_dir: That model's published folder, when found (its ``evaluation/`` has the reference scores).
        source: Why this baseline, in words.
        warning: Set when the model's folder is unknown, so its reference scores cannot be found.
    """

    baseline: str
    model_version: str | None
    model_dir: Path | None
    source: str
    warning: str = ""


def choose_baseline(current_uri: str, versions: Mapping[str, int], *, baseline: str | None,
                    models_dir: str) -> BaselineChoice:
    """Picks the baseline of the model that served the log.

    The log's ``model_version`` column (or, without it, its name ``v<N>_outputs.csv``) names the model; its
    folder ``<models_dir>/<name>/v<N>/`` holds ``baseline/train.csv`` (with ``feature_schema.json``), the
    training split of exactly that model. An explicit ``baseline`` is used as given. Falls back to
    ``data/processed/train.csv`` (the last pipeline run's, which may be another model's) only for older
    layouts: a model folder without ``baseline/``, no model folders at all, or a log that names no version.

    Args:
        current_uri: The prediction log.
        versions: Rows per model version in the log (:func:`log_model_versions`).
        baseline: ``--baseline`` when given.
        models_dir: Where ``pipeline.py run`` publishes models.

    Returns:
        The choice.

    Raises:
        InputError: The log mixes model versions, its model has several folders, or it has none while
            other models are published (an unknown model: comparing it with another's baseline would mislead).
    """
    if len(versions) > 1:
        listed = ", ".join(f"{v} ({n:,} rows)" for v, n in versions.items())
        raise InputError(f"{current_uri}: the log holds predictions of {len(versions)} model versions ({listed}) in "
                         f"its {MODEL_VERSION_COLUMN!r} column; each model is compared with its own baseline. Fix: "
                         f"check one version at a time: keep the rows of one {MODEL_VERSION_COLUMN} (the server "
                         f"writes one <version>_outputs.csv per model) and pass that file with --current")
    version = next(iter(versions), None) or version_from_name(current_uri)
    folders = model_folders(version, models_dir) if version else []
    if len(folders) > 1:
        raise InputError(f"{current_uri}: model {version} has {len(folders)} folders under {models_dir} "
                         f"({', '.join(str(f) for f in folders)}). Fix: pass --baseline and --baseline-predictions "
                         f"of the model that served this log")
    folder = folders[0] if folders else None
    published = sorted({d.parent.name + "/" + d.name for d in Path(models_dir).glob("*/v*") if d.is_dir()
                        and d.parent.name != "latest"}) if not models_dir.startswith("gs://") and \
        Path(models_dir).is_dir() else []
    unknown = (f"model {version} of the log has no folder under {models_dir}"
               + (f" (published: {', '.join(published[:8])})" if published else " (no models published there)")
               if version and folder is None else "")
    if baseline:
        return BaselineChoice(baseline, version, folder, "given with --baseline", unknown)
    if version is None:
        return BaselineChoice(DEFAULT_BASELINE, None, None,
                              f"the log names no model version (no {MODEL_VERSION_COLUMN} column, and its name is "
                              f"not <version>_outputs.csv): the last pipeline run's training data (older layout)")
    if folder is None:
        if published:
            raise InputError(f"{current_uri}: {unknown}. Fix: pass --models-dir where `pipeline.py run` published "
                             f"it, or --baseline FILE and --baseline-predictions FILE of that model")
        return BaselineChoice(DEFAULT_BASELINE, version, None,
                              f"{unknown}: the last pipeline run's training data (older layout)", unknown)
    candidate = folder / BASELINE_DIR / BASELINE_FILE
    if candidate.is_file():
        return BaselineChoice(str(candidate), version, folder, f"model {version}'s own training split")
    return BaselineChoice(DEFAULT_BASELINE, version, folder,
                          f"{folder} has no {BASELINE_DIR}/ (published before models carried their baseline): the "
                          f"last pipeline run's training data, which may not be {version}'s (older layout)")


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
    date = config.date or dt.datetime.now(dt.timezone.utc).date().isoformat()
    current_uri = config.current or str(newest_prediction_log(Path(DEFAULT_PREDICTIONS)))
    choice = choose_baseline(current_uri, log_model_versions(current_uri), baseline=config.baseline,
                             models_dir=config.models_dir)
    config = replace(config, baseline=choice.baseline)
    say(f"baseline: {choice.baseline} ({choice.source})")
    schema = read_schema(config.schema, config.baseline)
    baseline = read_table(config.baseline, schema, role="baseline", extra=(PREDICTION_COLUMN,))
    current = read_table(current_uri, schema, role="current", extra=(ID_COLUMN, PREDICTION_COLUMN, LABEL_COLUMN,
                                                                       "timestamp"))
    timings["read_s"] = time.perf_counter() - clock
    say(f"drift check {date}: baseline {config.baseline} ({len(baseline.frame):,} rows), current {current_uri} "
        f"({len(current.frame):,} rows), {len(schema.names)} features "
        f"({len(schema.numeric)} numeric, {len(schema.categorical)} categorical)")

    anomalies = [*baseline.anomalies, *current.anomalies, *category_anomalies(current, baseline, schema)]
    if any(a.severity == "error" and a.file == baseline.uri for a in anomalies):
        errors = "; ".join(a.detail for a in anomalies if a.severity == "error" and a.file == baseline.uri)
        raise InputError(f"{config.baseline}: the baseline does not match the feature schema ({errors}). Fix: pass "
                         f"the train.csv and {SCHEMA_FILE} written together by feature_engineering")

    if choice.warning and not config.baseline_predictions:
        anomalies.append(Anomaly("unknown_model", "warning", current.uri, MODEL_VERSION_COLUMN,
                                 f"{choice.warning}; the prediction cannot be compared with its validation scores"))
    evaluation = choice.model_dir / "evaluation" if choice.model_dir is not None else None
    if evaluation is not None:
        if not config.baseline_predictions and (evaluation / REFERENCE_PREDICTIONS).is_file():
            config = replace(config, baseline_predictions=str(evaluation / REFERENCE_PREDICTIONS))
        if config.labels and not config.validation_metrics and (evaluation / "metrics.json").is_file():
            config = replace(config, validation_metrics=str(evaluation / "metrics.json"))
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
            stats_name = f"input_stats_{date}.json"
            (out / stats_name).write_text(statistics_json(report.current) + "\n")
            outputs["input_stats"] = _join(config.output_dir, stats_name)
            facets = _facets(report)
            report_name = f"drift_report_{date}.html"
            (out / report_name).write_text(render_html(date, decision, rows, anomalies, facets, config.baseline,
                                                       current.uri))
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
                       "current": current.uri, "schema_version": schema.version,
                       "baseline_predictions": config.baseline_predictions, "labels": config.labels,
                       "validation_metrics": config.validation_metrics},
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


def _facets(report: TfdvReport) -> str:
    from tensorflow_data_validation.utils import display_util

    return display_util.get_statistics_html(report.current, report.baseline, lhs_name="current",
                                            rhs_name="baseline")


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

  baseline           the log's model_version (v<N>) picks that model's training split,
                     <models-dir>/<name>/v<N>/baseline/train.csv with its feature_schema.json, and its
                     validation scores, .../evaluation/validation_predictions.csv. A log holding several
                     model versions is refused (bad input: check one version per run); a version with
                     no folder while other models are published is refused too. data/processed/train.csv
                     is used only for older layouts (a model folder without baseline/, no models/, a
                     log without a version) and the output says so. --baseline overrides.
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
baseline (missing or new columns, unseen categories, type changes: reported, never a crash) and draws
the baseline-vs-current comparison. Its own comparators (Jensen-Shannon over 10 equal-width buckets)
are reported as tfdv_value for reference; they are nearly blind on skewed features.""",
        epilog="""\
outputs (in --output-dir; local folder or gs://bucket/prefix):
  drift_summary.csv            one row per feature, for churn_probability and (with labels) performance:
                               date, feature, metric, value, threshold, drifted, and the details;
                               earlier dates are kept, a re-run replaces its own date
  drift_decision.json          retrain or not, why, which features, inputs, thresholds, trigger outcome
  input_stats_<date>.json      TFDV statistics of the current data
  drift_report_<date>.html     the decision, the feature table and TFDV's Facets comparison
  schema_anomalies_<date>.json missing/new columns, unseen categories, type changes, TFDV anomalies
  retrain_trigger_<date>.json  when retraining was decided: reason, features, command, exit status, times

exit status:
  0  no drift, too little data, or drift found and the trigger did its job
  1  drift found and --fail-on-drift was given
  2  bad input: missing/empty/header-only file, unreadable rows, missing columns, a numeric column with
     more than 1% unreadable values (text, inf, nan), several model versions in one log, an unknown model
  3  retraining was decided but the trigger failed (see retrain_trigger_<date>.json)
  4  the TFDV statistics or report failed (the drift decision and summary were still written)

examples:
  .venv-monitoring/bin/python monitoring/drift_check.py                     # the make drift defaults
  .venv-monitoring/bin/python monitoring/drift_check.py --baseline data/processed/train.csv \\
      --current data/predictions/v3_outputs.csv --output-dir data/monitoring --trigger local
  .venv-monitoring/bin/python monitoring/drift_check.py --baseline gs://B/processed/train.csv \\
      --current gs://B/predictions/v3_outputs.csv --output-dir gs://B/monitoring
  ... --labels data/labels/2026-06.csv --validation-metrics data/run_summary.json""")
    io_ = parser.add_argument_group("inputs and outputs")
    io_.add_argument("--baseline", default=None,
                     help=f"training data: customer_id, the features, churned (default: the training split of the "
                          f"model that served the log, <models-dir>/<name>/v<N>/{BASELINE_DIR}/{BASELINE_FILE}, v<N> "
                          f"from the log's {MODEL_VERSION_COLUMN} column; {DEFAULT_BASELINE} only for older "
                          f"layouts, and the output says which)")
    io_.add_argument("--current", default=None,
                     help=f"prediction log to check (default: the newest {DEFAULT_PREDICTIONS}/{PREDICTIONS_PATTERN})")
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
    io_.add_argument("--date", default="", help="date of the run, YYYY-MM-DD (default: today, UTC)")
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
                             "pipeline_root and parameter_values (see README, 'Run on Vertex AI')")
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
    date = date or dt.datetime.now(dt.timezone.utc).date().isoformat()
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
            baseline=args.baseline, current=args.current, output_dir=args.output_dir, schema=args.schema,
            baseline_predictions=args.baseline_predictions, labels=args.labels, label_column=args.label_column,
            validation_metrics=args.validation_metrics, date=args.date, policy=_policy(args),
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
