"""Batch scoring: every kept customer's churn probability as of a date, with a registered model.

Raw data is cleaned by data_prep's rules (``churn.cleaning``; rejected rows counted by reason),
features are computed by :func:`churn.features.features_for` with the SCORING MODEL'S OWN saved schema
(the one feature definition), and the model's ONNX graph is run by onnxruntime, as the server does: the model
folder is checked against its manifest and nothing is unpickled.

Outputs, in the predictions folder:

* ``<model_version>_batch_<as-of date>.csv``: the serving prediction log's columns
  (:func:`churn.logformat.header`), so the drift check takes it as current data, plus ``rank``
  (1 = highest probability) and ``decile`` (1 = the riskiest tenth);
* ``top_risk_<as-of date>.csv``: the ``top`` riskiest customers, same columns.

Customers who signed up after the as-of instant are left out and counted.

Run alone: ``python components/score.py --raw-dir data/raw --model-dir models/churn-model/v1``
(``pipeline.py score`` fetches the model from the registry).
"""


import argparse
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.logformat import UNSAFE, number_rows, quote
from churn.schema import ID_COLUMN, FeatureSchema

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import PythonComponent

    from churn.registry import ModelRegistry

logger = logging.getLogger(__name__)

DEFAULT_TOP = 1000
BATCH_MARKER = "_batch_"
TOP_RISK_PREFIX = "top_risk_"
EXTRA_COLUMNS = ("rank", "decile")
SIGNED_UP_AFTER = "signed up after as-of"
QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


class ScoringError(ValueError):
    """Scoring cannot start or finish; the message is one line naming the input and the fix."""


@dataclass(frozen=True)
class ScoringModel:
    """A verified model folder opened for scoring.

    Attributes:
        name: Registered model name ('' for a plain folder).
        version: Version label written to ``model_version`` (``v<N>`` for registered models).
        source: Where the folder came from.
        folder: Local model folder.
        schema: The model's frozen feature schema.
        threshold: Decision threshold chosen at training.
        session: onnxruntime session of ``model.onnx``.
    """

    name: str
    version: str
    source: str
    folder: Path
    schema: FeatureSchema
    threshold: float
    session: Any

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Churn probabilities for rows holding the schema's features (as serving computes them)."""
        from churn.onnx_model import onnx_proba

        return onnx_proba(self.session, features, self.schema)


@dataclass(frozen=True)
class ScoringInput:
    """Raw data cleaned for scoring.

    Attributes:
        customers: Kept customers who signed up on or before ``as_of``.
        transactions: Kept transactions, or None without a transaction log.
        as_of: Feature instant (UTC).
        rows: Row accounting per input file (raw = kept + rejected, rejection reasons).
        left_out: Kept customers not scored, by reason.
    """

    customers: pd.DataFrame
    transactions: pd.DataFrame | None
    as_of: pd.Timestamp
    rows: dict[str, dict]
    left_out: dict[str, int] = field(default_factory=dict)


def open_model(folder: Path, *, name: str = "", source: str = "", registry_version: str = "",
               threads: int = 0) -> ScoringModel:
    """Verifies a model folder against its manifest and opens its ONNX graph.

    Args:
        folder: Model folder (``model.onnx``, ``feature_schema.json``, ``manifest.json``, ...).
        name: Registered model name.
        source: Where it came from (for the summary).
        registry_version: The registry's version number, when fetched from a registry.
        threads: onnxruntime threads (0: one per core but one; the server runs one per worker process).

    Returns:
        The model.

    Raises:
        ScoringError: Not a model folder, or its files differ from the manifest.
    """
    import onnxruntime as ort

    from churn.onnx_model import ONNX_FILE, ManifestError, verify_manifest, version_label

    folder = Path(folder)
    if not folder.is_dir():
        raise ScoringError(f"{folder}: model folder not found; pass a folder with model.onnx and manifest.json "
                           f"(e.g. models/churn-model/v1) or use the registry (--model champion)")
    try:
        manifest = verify_manifest(folder)
        schema = FeatureSchema.from_dict(manifest["feature_schema"])
        threshold = float(manifest.get("threshold", float("nan")))
        options = ort.SessionOptions()
        # one core is left to the thread that formats the file while the graph runs (score_features)
        options.intra_op_num_threads = threads or max(1, (os.cpu_count() or 1) - 1)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy waits on a shared machine
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])
    except ManifestError as exc:
        raise ScoringError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - onnxruntime has its own exception types for unreadable graphs
        raise ScoringError(f"{folder / ONNX_FILE}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
    if not 0.0 <= threshold <= 1.0:
        raise ScoringError(f"{folder}: threshold {threshold} in the manifest is not in [0, 1]; re-export the model")
    return ScoringModel(name=name, version=version_label(folder, manifest, registry_version=registry_version),
                        source=source or str(folder), folder=folder, schema=schema, threshold=threshold, session=sess)


def resolve_version(registry: "ModelRegistry", model_name: str, model: str, registry_uri: str) -> Any:
    """The registered version ``model`` names: an alias (``champion``) or a version (``v3`` or ``3``).

    Raises:
        ScoringError: No such alias or version (the message lists what there is).
    """
    spec = model.strip()
    number = spec[1:] if spec[:1] in "vV" and spec[1:].isdigit() else spec
    if number.isdigit():
        versions = registry.list_versions(model_name)
        found = [v for v in versions if v.version == str(int(number))]
        if not found:
            have = ", ".join(f"v{v.version}" for v in versions) or "none"
            raise ScoringError(f"model {model_name!r} has no version {spec} in {registry_uri} (versions: {have}); "
                               f"pass --model champion or one of those")
        return found[0]
    aliased = registry.get_by_alias(model_name, spec)
    if aliased is None:
        raise ScoringError(f"no version of model {model_name!r} has the alias {spec!r} in {registry_uri}; train and "
                           f"promote one first (python pipeline.py run --raw-dir data/raw) or pass --model vN")
    return aliased


@contextlib.contextmanager
def registered_model(registry_uri: str, model_name: str, model: str = "champion") -> Iterator[ScoringModel]:
    """Fetches a registered version into a temporary folder and opens it; the folder goes on exit.

    Args:
        registry_uri: Registry URI (``churn.registry.get_registry``).
        model_name: Registered model name.
        model: Alias (``champion``) or version (``v3``, ``3``).

    Raises:
        ScoringError: No registry there, no such alias/version, or the download fails.
    """
    from churn.registry import download_to_temp, get_registry

    if registry_uri.startswith("sqlite:///"):
        db = Path(registry_uri[len("sqlite:///"):])
        if not db.is_file():
            raise ScoringError(f"{db}: no model registry here; train a model first (python pipeline.py run "
                               f"--raw-dir data/raw) or pass --registry-uri / --model-dir")
    try:
        registry = get_registry(registry_uri)
        version = resolve_version(registry, model_name, model, registry_uri)
        logger.info("model %s v%s (%s) from %s", model_name, version.version, model, registry_uri)
        tmp, folder = download_to_temp(registry, version)
    except ScoringError:
        raise
    except Exception as exc:  # noqa: BLE001 - any registry backend's failure is one line
        raise ScoringError(f"registry {registry_uri}: cannot fetch model {model_name!r} {model!r} "
                           f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    with tmp:
        yield open_model(folder, name=model_name, source=f"{registry_uri}#{model_name}/{version.version}",
                         registry_version=version.version)


def parse_as_of(text: "str | pd.Timestamp | None") -> pd.Timestamp | None:
    """An ISO date or instant as a UTC timestamp (no zone = UTC); None or '' for the default.

    Raises:
        ScoringError: Not a date.
    """
    from churn.cleaning import parse_cutoff

    try:
        return parse_cutoff(text)
    except ValueError as exc:
        raise ScoringError(str(exc).replace("cutoff", "as-of", 1)) from None


def load_raw(raw_dir: Path, as_of: "str | pd.Timestamp | None" = None) -> ScoringInput:
    """Cleans a raw folder with data_prep's rules and picks who is scored.

    No labels are needed: customers.csv with or without ``churned``, transactions.json optional
    (absent, empty or ``[]``: no transaction log).

    Args:
        raw_dir: Folder with customers.csv and, optionally, transactions.json.
        as_of: Feature instant; None for the newest kept transaction (no log: the newest signup_date).

    Returns:
        Who is scored, their transactions, the as-of instant and the row accounting.

    Raises:
        ScoringError: A raw file is missing or unusable, or ``as_of`` is not a date.
    """
    from churn.cleaning import (
        CUSTOMERS_FILE,
        TRANSACTIONS_FILE,
        RawDataError,
        clean_customers,
        clean_transactions,
        has_transaction_log,
        read_customers,
    )

    started = time.monotonic()
    as_of_at = parse_as_of(as_of)
    if not Path(raw_dir).is_dir():
        raise ScoringError(f"{raw_dir}: raw folder not found; pass --raw-dir with customers.csv "
                           f"(and transactions.json)")
    customers_path, tx_path = Path(raw_dir) / CUSTOMERS_FILE, Path(raw_dir) / TRANSACTIONS_FILE
    try:
        customers = clean_customers(read_customers(customers_path))
        if customers.kept.empty:
            raise RawDataError(f"{customers_path}: no usable rows ({customers.accounting()['reasons']}); "
                               f"fix the file (see README, 'Raw data contract').")
        logger.info("customers: %d raw, %d kept, %d rejected", customers.raw_rows, len(customers.kept),
                    len(customers.rejected))
        rows = {CUSTOMERS_FILE: customers.accounting()}
        transactions = None
        if has_transaction_log(tx_path):
            cleaned = clean_transactions(tx_path, customers.kept[ID_COLUMN])
            rows[TRANSACTIONS_FILE] = cleaned.accounting()
            if cleaned.kept.empty:
                raise RawDataError(f"{tx_path}: no usable rows ({rows[TRANSACTIONS_FILE]['reasons']}); fix the file "
                                   f"or remove it to score on customer attributes only.")
            transactions = cleaned.kept
            logger.info("transactions: %d raw, %d kept, %d rejected (%.1fs)", cleaned.raw_rows, len(cleaned.kept),
                        len(cleaned.rejected), time.monotonic() - started)
        else:
            logger.info("%s: no transaction log; scoring on customer attributes", tx_path.name)
    except RawDataError as exc:
        raise ScoringError(str(exc)) from None
    kept = customers.kept
    if as_of_at is None:
        as_of_at = transactions["timestamp"].max() if transactions is not None else kept["signup_date"].max()
        as_of_at = pd.Timestamp(as_of_at).tz_convert("UTC")
    eligible = (kept["signup_date"] <= as_of_at).to_numpy()
    left_out = {SIGNED_UP_AFTER: int((~eligible).sum())}
    if not eligible.any():
        raise ScoringError(f"{customers_path}: every kept customer signed up after the as-of instant "
                           f"{as_of_at.isoformat()}; pass a later --as-of")
    scored = kept if eligible.all() else kept[eligible].reset_index(drop=True)
    return ScoringInput(customers=scored, transactions=transactions, as_of=as_of_at, rows=rows,
                        left_out={k: v for k, v in left_out.items() if v})


def compute_features(model: ScoringModel, data: ScoringInput) -> pd.DataFrame:
    """The model's features for every customer to score, by the model's own schema.

    Raises:
        ScoringError: The data cannot give the schema's features (a column is missing, or the model needs
            a transaction log and there is none).
    """
    from churn.features import FeatureInputError, features_for

    try:
        return features_for(model.schema, data.customers, data.transactions, data.as_of)
    except FeatureInputError as exc:
        raise ScoringError(f"model {model.version}: {exc}") from None


@dataclass(frozen=True)
class Scored:
    """Scored customers, in input order, as the arrays the prediction file is written from.

    Attributes:
        ids: ``customer_id`` values (text).
        numeric: The schema's numeric features, float64 ``[n, k]`` (NaN = missing), schema order.
        categorical: The schema's categorical features, text ``[n, m]`` (``""`` = missing), or None.
        proba: Churn probabilities.
        rank: 1 = highest probability (ties: earlier row first).
        decile: 1 = the riskiest tenth, ..., 10.
    """

    ids: np.ndarray
    numeric: np.ndarray
    categorical: np.ndarray | None
    proba: np.ndarray
    rank: np.ndarray
    decile: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def frame(self, model: ScoringModel, timestamp: str = "") -> pd.DataFrame:
        """The rows as a DataFrame with the file's columns (for tests and small outputs)."""
        from churn.logformat import Layout

        layout = Layout.for_schema(model.schema)
        # Layout's slot kinds; a layout names only the kinds the schema has.
        arrays = {kind: a for kind, a in (("n", self.numeric), ("c", self.categorical)) if a is not None}
        n = len(self)
        data = {"timestamp": [timestamp] * n, "model_version": [model.version] * n, ID_COLUMN: self.ids,
                **{name: arrays[kind][:, j] for name, (kind, j) in zip(layout.features, layout.slots, strict=True)},
                "churn_probability": self.proba, "churned": (self.proba >= model.threshold).astype(np.int64),
                "threshold": np.full(n, model.threshold), "rank": self.rank, "decile": self.decile}
        return pd.DataFrame(data)


def rank_and_decile(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank (1 = highest probability, ties in input order) and decile (1..10, 1 = riskiest tenth)."""
    n = len(proba)
    order = np.argsort(-proba, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    return rank, (rank * 10 + n - 1) // max(n, 1)


def score_features(features: pd.DataFrame, model: ScoringModel,
                   while_scoring: "Callable[[Scored], Any] | None" = None) -> tuple[Scored, Any]:
    """Runs the model's ONNX graph over feature rows.

    Args:
        features: ``customer_id`` and the model's features (:func:`compute_features`).
        model: The model.
        while_scoring: Called with the scored rows' inputs (``proba`` not filled yet) while onnxruntime
            runs on another thread: the prediction file's feature text is formatted meanwhile.

    Returns:
        The scored rows and what ``while_scoring`` returned.

    Raises:
        ScoringError: The model gives a non-finite probability for some rows.
    """
    from concurrent.futures import ThreadPoolExecutor

    from churn.onnx_model import CATEGORICAL_INPUT, NUMERIC_INPUT, PROBABILITY_OUTPUT, feed_from_frame

    feed = feed_from_frame(features, model.schema)
    ids = features[ID_COLUMN].astype(str).to_numpy(dtype=object)
    numeric = np.ascontiguousarray(feed[NUMERIC_INPUT])
    categorical = feed.get(CATEGORICAL_INPUT)
    pending = Scored(ids=ids, numeric=numeric, categorical=categorical, proba=np.empty(0), rank=np.empty(0),
                     decile=np.empty(0))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime") as pool:
        running = pool.submit(model.session.run, [PROBABILITY_OUTPUT], feed)  # releases the GIL
        extra = while_scoring(pending) if while_scoring is not None else None
        try:
            proba = np.ascontiguousarray(running.result()[0].reshape(-1), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise ScoringError(f"model {model.version} ({model.source}): onnxruntime cannot score the features "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); re-export "
                               f"the model") from None
    if not np.isfinite(proba).all():
        bad = ids[~np.isfinite(proba)]
        raise ScoringError(f"model {model.version} gives no finite probability for {len(bad)} customer(s) "
                           f"(e.g. {list(bad[:3])}); check those rows' features")
    rank, decile = rank_and_decile(proba)
    return Scored(ids=ids, numeric=numeric, categorical=categorical, proba=proba, rank=rank, decile=decile), extra


_CSV_ROWS = 1 << 16


def _text_cells(values: np.ndarray) -> list[bytes]:
    """A text column's cells: distinct values formatted once (categories repeat), ids in one pass."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    if len(uniques) * 4 <= len(values):
        cells = [quote(str(v)).encode() for v in uniques]
        return list(map(cells.__getitem__, codes.tolist()))
    text = [str(v) for v in values]
    joined = "".join(text)
    if "," in joined or '"' in joined or UNSAFE.search(joined):
        return [quote(v).encode() for v in text]
    return "\n".join(text).encode().split(b"\n")


def _feature_segments(scored: Scored, layout: Any, rows: slice) -> list[list[bytes]]:
    """Per-row text of the feature columns (adjacent numeric columns in one segment)."""
    segments, slots, i = [], layout.slots, 0
    while i < len(slots):
        kind, j = slots[i]
        if kind == "n":
            assert scored.numeric is not None  # the layout has numeric slots only where there are numeric columns
            end = i + 1
            while end < len(slots) and slots[end] == ("n", j + end - i):
                end += 1
            segments.append(number_rows(scored.numeric[rows, j:j + end - i]))
            i = end
        else:
            assert scored.categorical is not None  # as for numeric slots
            segments.append(_text_cells(scored.categorical[rows, j]))
            i += 1
    return segments


def _csv_chunks(scored: Scored, model: ScoringModel, timestamp: str, order: np.ndarray | None = None,
                features: "list[list[list[bytes]]] | None" = None) -> Iterator[bytes]:
    """The file's rows (no header) in blocks of :data:`_CSV_ROWS`; ``order`` picks and orders rows.

    ``features``: the feature segments of each block, already formatted (:func:`_format_features`).
    """
    import orjson

    from churn.logformat import Layout

    layout = Layout.for_schema(model.schema)
    head = f"{quote(timestamp)},{quote(model.version)}".encode()
    threshold = orjson.dumps(float(model.threshold))
    churned_threshold = (b"0," + threshold + b",", b"1," + threshold + b",")
    n = len(scored) if order is None else len(order)
    for b, lo in enumerate(range(0, n, _CSV_ROWS)):
        rows = slice(lo, min(lo + _CSV_ROWS, n))
        part = scored if order is None else Scored(
            ids=scored.ids[order[rows]], numeric=scored.numeric[order[rows]],
            categorical=None if scored.categorical is None else scored.categorical[order[rows]],
            proba=scored.proba[order[rows]], rank=scored.rank[order[rows]], decile=scored.decile[order[rows]])
        local = rows if order is None else slice(0, rows.stop - rows.start)
        segments = [_text_cells(part.ids[local]),
                    *(features[b] if features is not None else _feature_segments(part, layout, local)),
                    number_rows(part.proba[local].reshape(-1, 1))]
        churned = (part.proba[local] >= model.threshold).tolist()
        ranks = number_rows(np.column_stack([part.rank[local], part.decile[local]]))
        tails = [churned_threshold[c] + r for c, r in zip(churned, ranks, strict=True)]
        width = len(segments) + 1
        count = local.stop - local.start
        cells: list[bytes] = [b""] * (count * width)
        for k, segment in enumerate(segments, 1):
            cells[k::width] = segment
        # A row's first cell carries the end of the row before it: one join, no per-row work.
        cells[0] = head
        cells[width::width] = [t + b"\n" + head for t in tails[:-1]]
        yield b",".join(cells) + b"," + tails[-1] + b"\n"


def _format_features(scored: Scored, model: ScoringModel) -> list[list[list[bytes]]]:
    """The feature text of every block of the predictions file (runs while onnxruntime scores)."""
    from churn.logformat import Layout

    layout = Layout.for_schema(model.schema)
    return [_feature_segments(scored, layout, slice(lo, lo + _CSV_ROWS)) for lo in range(0, len(scored), _CSV_ROWS)]


def _write_atomic(path: Path, header: list[str], chunks: "Iterator[bytes]") -> Path:
    """Writes the header and the chunks to a temporary file, then renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write((",".join(header) + "\n").encode())
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def output_columns(schema: FeatureSchema) -> list[str]:
    """The prediction file's columns: the serving log's (:func:`churn.logformat.header`), rank, decile."""
    from churn.logformat import header

    return [*header(tuple(schema.names)), *EXTRA_COLUMNS]


def output_names(version: str, as_of: pd.Timestamp) -> tuple[str, str]:
    """``<version>_batch_<YYYY-MM-DD>.csv`` and ``top_risk_<YYYY-MM-DD>.csv``."""
    day = as_of.strftime("%Y-%m-%d")
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', version)}{BATCH_MARKER}{day}.csv", f"{TOP_RISK_PREFIX}{day}.csv"


def score(raw_dir: Path, model: ScoringModel, *, predictions_path: Path | None = None,
          top_risk_path: Path | None = None, out_dir: Path | None = None, as_of: "str | pd.Timestamp | None" = None,
          top: int = DEFAULT_TOP) -> dict:
    """Scores every kept customer of a raw folder and writes the predictions and the top-risk list.

    Args:
        raw_dir: Raw folder (customers.csv, optional transactions.json).
        model: The scoring model (:func:`open_model`, :func:`registered_model`).
        predictions_path: Where the predictions go (default ``out_dir/<version>_batch_<date>.csv``).
        top_risk_path: Where the top-risk list goes (default ``out_dir/top_risk_<date>.csv``).
        out_dir: Folder for the default names.
        as_of: Feature instant (default: the newest kept transaction; no log: the newest signup_date).
        top: How many customers the top-risk list holds.

    Returns:
        The summary: ``rows_scored``, ``output``, ``top_risk``, ``model_version``, ``as_of``, ``rows`` (per
        input), ``left_out``, ``score_quantiles``, ``predicted_churners``, ``seconds`` (per step and total).

    Raises:
        ScoringError: Anything that stops scoring, in one line.
    """
    if top < 1:
        raise ScoringError(f"--top must be at least 1, got {top}")
    if (predictions_path is None or top_risk_path is None) and out_dir is None:
        raise ValueError("score needs out_dir or both paths")
    started = time.monotonic()
    steps: dict[str, float] = {}
    data = load_raw(raw_dir, as_of)
    steps["clean"] = time.monotonic() - started
    logger.info("as of %s: %d customers to score, left out %s", data.as_of.isoformat(), len(data.customers),
                data.left_out or "none")
    mark = time.monotonic()
    features = compute_features(model, data)
    as_of_at, rows, left_out = data.as_of, data.rows, data.left_out
    del data  # the transactions are done with
    steps["features"] = time.monotonic() - mark
    logger.info("features: %d of schema v%d for %d customers (%.1fs)", len(model.schema.features),
                model.schema.version, len(features), steps["features"])
    names = output_names(model.version, as_of_at)
    if predictions_path is None or top_risk_path is None:
        assert out_dir is not None  # refused on entry otherwise
        predictions_path = predictions_path or Path(out_dir) / names[0]
        top_risk_path = top_risk_path or Path(out_dir) / names[1]
    mark = time.monotonic()
    summary = write_scores(features, model, as_of_at, predictions_path, top_risk_path, top=top)
    steps["score_and_write"] = time.monotonic() - mark
    steps["total"] = time.monotonic() - started
    return {**summary, "rows": rows, "left_out": left_out, "seconds": {k: round(v, 3) for k, v in steps.items()}}


def write_scores(features: pd.DataFrame, model: ScoringModel, as_of: pd.Timestamp, predictions_path: Path,
                 top_risk_path: Path, *, top: int = DEFAULT_TOP) -> dict:
    """The scoring step: features in hand → predictions and top-risk files written.

    Returns:
        ``rows_scored``, ``output``, ``top_risk``, ``top_rows``, ``model_version``, ``model_name``,
        ``model_source``, ``as_of``, ``threshold``, ``predicted_churners``, ``score_quantiles``.
    """
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    scored, feature_text = score_features(features, model, lambda pending: _format_features(pending, model))
    columns = output_columns(model.schema)
    _write_atomic(predictions_path, columns, _csv_chunks(scored, model, stamp, features=feature_text))
    del feature_text
    ranked = np.argsort(scored.rank)[:top]
    _write_atomic(top_risk_path, columns, _csv_chunks(scored, model, stamp, order=ranked))
    proba = scored.proba
    logger.info("scored %d customers with %s: %s, top %d: %s", len(scored), model.version, predictions_path,
                len(ranked), top_risk_path)
    return {"rows_scored": len(scored), "output": str(predictions_path), "top_risk": str(top_risk_path),
            "top_rows": len(ranked), "model_version": model.version, "model_name": model.name,
            "model_source": model.source, "as_of": as_of.isoformat(), "threshold": model.threshold,
            "predicted_churners": int((proba >= model.threshold).sum()),
            "score_quantiles": {**{f"p{round(q * 100):02d}": float(v)
                                   for q, v in zip(QUANTILES, np.quantile(proba, QUANTILES), strict=True)},
                                "mean": float(proba.mean())}}


def format_summary(summary: dict) -> str:
    """The summary as lines for people."""
    lines = [f"scored {summary['rows_scored']} customers as of {summary['as_of']} with "
             f"{summary['model_name'] or 'model'} {summary['model_version']} ({summary['model_source']})"]
    for name, acc in summary.get("rows", {}).items():
        lines.append(f"  {name}: raw {acc['raw']} = kept {acc['kept']} + rejected {acc['rejected']}"
                     f"{' ' + json.dumps(acc['reasons']) if acc['reasons'] else ''}")
    left = summary.get("left_out") or {}
    lines.append(f"  customers left out: {json.dumps(left) if left else 'none'}")
    q = summary["score_quantiles"]
    lines.append("  churn probability: " + ", ".join(f"{k} {v:.3f}" for k, v in q.items()))
    lines.append(f"  predicted churners: {summary['predicted_churners']} (threshold {summary['threshold']:.3f})")
    lines.append(f"  predictions: {summary['output']}")
    lines.append(f"  top {summary['top_rows']}: {summary['top_risk']}")
    if "seconds" in summary:
        s = summary["seconds"]
        lines.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in s.items()))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scoring options (shared by this module's CLI and ``pipeline.py score``)."""
    parser.add_argument("--raw-dir", type=Path, required=True,
                        help="folder with customers.csv and (optional) transactions.json")
    parser.add_argument("--as-of", default="", help="ISO date or instant (UTC) the features are computed at "
                                                    "(default: the newest transaction; no log: newest signup_date)")
    parser.add_argument("--model", default="champion", help="registry alias or version: champion, vN or N "
                                                            "(default: %(default)s)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="score with this model folder instead of the registry (model.onnx + manifest.json)")
    parser.add_argument("--model-name", default="churn-model", help="registered model name (default: %(default)s)")
    parser.add_argument("--registry-uri", default=None, help="registry URI (default: the local MLflow store "
                                                             "mlruns/mlflow.db)")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="customers in the top-risk list "
                                                                     "(default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=None, help="predictions folder (default: data/predictions)")
    parser.add_argument("--summary-json", type=Path, default=None, help="also write the summary as JSON here")


def run_cli(args: argparse.Namespace) -> int:
    """Runs scoring for parsed :func:`add_arguments` options; errors are one line and exit code 2."""
    from churn.layout import DataLayout

    layout = DataLayout()
    out_dir = (args.out_dir or layout.predictions).resolve()
    try:
        with contextlib.ExitStack() as stack:
            if args.model_dir is not None:
                model = open_model(args.model_dir)
            else:
                model = stack.enter_context(registered_model(args.registry_uri or layout.tracking_uri(),
                                                             args.model_name, args.model))
            summary = score(args.raw_dir, model, out_dir=out_dir, as_of=args.as_of or None, top=args.top)
    except ScoringError as exc:
        logger.error("score: %s", exc)
        return 2
    except OSError as exc:  # unreadable input, an output folder that cannot be written, a full disk
        logger.error("score: %s: %s; nothing was written in its place", getattr(exc, "filename", "") or out_dir,
                     exc.strerror or exc)
        return 2
    print(format_summary(summary))
    if args.summary_json:
        from churn.layout import write_json

        write_json(args.summary_json, summary)
        print(f"summary JSON: {args.summary_json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python components/score.py --help``."""
    from churn.layout import setup_cli_logging

    parser = argparse.ArgumentParser(
        prog="score",
        description="Score every kept customer of a raw folder as of a date with a registered model (or a model "
                    "folder): writes <model_version>_batch_<date>.csv (the serving log's columns + rank, decile) "
                    "and top_risk_<date>.csv to data/predictions.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_cli_logging()
    return run_cli(args)


def component(base_image: str) -> "PythonComponent":
    """The KFP component, built for the project's image (a compile-time setting)."""
    from kfp import dsl
    from kfp.dsl import Dataset, Metrics, Output

    @dsl.component(base_image=base_image, install_kfp_package=False)
    def score(raw_dir: str, registry_uri: str, model_name: str, model: str, as_of: str, top: int,
              predictions: Output[Dataset], top_risk: Output[Dataset], summary: Output[Metrics]):
        """Scores every kept customer as of ``as_of`` with the registered ``model`` (alias or version)."""
        from pathlib import Path

        import pandas as pd

        from churn.layout import setup_cli_logging
        from churn.storage import local_input_dir
        from components.score import output_names, registered_model
        from components.score import score as score_customers

        setup_cli_logging()
        with local_input_dir(raw_dir) as raw, registered_model(registry_uri, model_name, model) as scoring_model:
            facts = score_customers(raw, scoring_model, predictions_path=Path(predictions.path),
                                    top_risk_path=Path(top_risk.path), as_of=as_of or None, top=top)
        names = output_names(facts["model_version"], pd.Timestamp(facts["as_of"]))
        for artifact, rows, name in ((predictions, facts["rows_scored"], names[0]),
                                     (top_risk, facts["top_rows"], names[1])):
            artifact.metadata.update({"rows": rows, "model_version": facts["model_version"],
                                      "as_of": facts["as_of"], "file_name": name})
        summary.log_metric("rows_scored", facts["rows_scored"])
        summary.log_metric("predicted_churners", facts["predicted_churners"])
        for name, value in facts["score_quantiles"].items():
            summary.log_metric(f"churn_probability_{name}", value)

    return score


if __name__ == "__main__":
    raise SystemExit(main())
