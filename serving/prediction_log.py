"""Prediction log: every prediction appended to ``<folder>/<model_version>_outputs.csv``, off the request path.

A request only appends a reference to its arrays (the model inputs it was scored on, the ids and the
probabilities) to an in-memory queue: constant time, no per-row work. A background thread turns the queue
into CSV every ``flush_seconds`` (sooner when it grows), in bulk: the queued requests of one model are
concatenated, numeric columns are formatted block-wise by orjson straight from the float64 arrays
(shortest text that reads back as the same double), text columns are quoted only where CSV needs it,
and at most :data:`CHUNK_ROWS` rows are formatted at a time, each chunk appended to the file with one
``write`` on a file opened ``O_APPEND``, so the worker processes of one server can share a file without
interleaving rows. The header is created atomically (written to a temporary file, then hard-linked into
place), so a file never lacks it. ``close`` (on shutdown) flushes what is left.

Columns: ``timestamp`` (UTC, ISO 8601, one per request), ``model_version``, ``customer_id``, the model's
features in schema order (empty = missing), ``churn_probability``, ``churned`` (0/1), ``threshold``. This
is what the drift check reads. Text is quoted as :mod:`csv` does (only values holding ``,`` or ``"``,
quotes doubled); control characters (``\r``, ``\n``, NUL, ...) and lone surrogates, which some CSV
readers split rows on or cannot decode, are written as JSON-style ``\\uXXXX`` escapes, so one row is one
line. Numbers are written as the shortest decimal that reads back exactly (``12.0``,
``0.35077669229343563``, ``0.00001``).

On Vertex AI the container's disk is lost with it: :class:`GcsPredictionLog` writes the same rows as
immutable part objects under a ``gs://`` prefix, where the nightly drift check reads them.

A row is logged or its loss is counted. If the disk cannot keep up, at most ``max_pending_rows`` rows wait
in memory; older ones are dropped (``dropped``). A failed write (disk full, ...) is undone: each chunk is
appended under an exclusive ``flock`` and the file is truncated back to its size before the chunk, so no
partial row is left for the next rows to corrupt; the rows are counted (``failed``), logged in one line,
and :meth:`PredictionLog.status` reports them (``/health``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson

from churn.logformat import UNSAFE, Layout, header, number_rows, quote
from churn.schema import ID_COLUMN

if TYPE_CHECKING:  # pragma: no cover
    from serving.columns import Columns

logger = logging.getLogger(__name__)

SUFFIX = "_outputs.csv"
EARLY_FLUSH_ROWS = 50_000
CHUNK_ROWS = 1024  # rows formatted (and written) at a time: fastest per row (the text stays in cache), and
#                   bounds how long the writer holds the GIL
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
LOSS_WINDOW_SECONDS = 300.0  # /health says "degraded" this long after rows were lost


@dataclass(frozen=True)
class _Batch:
    timestamp: str
    version: str
    layout: Layout
    ids: list[Any]
    numeric: np.ndarray | None
    categorical: np.ndarray | None
    plain: list[list[Any]] | None
    proba: np.ndarray
    threshold: float

    def __len__(self) -> int:
        return len(self.ids)


def log_path(folder: Path, version: str) -> Path:
    """``<folder>/<version>_outputs.csv`` (characters unsafe in file names replaced by ``_``)."""
    return folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', version)}{SUFFIX}"


def _ensure_header(path: Path, columns: list[str]) -> Path:
    """Creates ``path`` with its header atomically if missing; returns the file to append to (a
    ``.<n>`` variant if an existing file has other columns)."""
    line = ",".join(columns) + "\n"
    for attempt in range(100):
        target = path if attempt == 0 else path.with_name(path.name.replace(SUFFIX, f".{attempt}{SUFFIX}"))
        if not target.exists():
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
            tmp.write_text(line)
            try:
                os.link(tmp, target)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        with open(target) as fh:
            if fh.readline() == line:
                return target
        logger.warning("%s has other columns; appending to a numbered variant", target)
    raise OSError(f"{path}: no file with the expected columns could be created")


# ----------------------------------------------------------------------------------------------------
# CSV formatting, a column at a time
# ----------------------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    """One value as csv.writer writes it (None → empty, floats as repr)."""
    if value is None:
        return ""
    return quote(value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value))


def _text_column(values: Sequence[Any]) -> list[bytes]:
    """A column of text (``None`` = missing), quoted where needed; other values as csv.writer writes them."""
    values = list(values)
    if not {str, type(None)}.issuperset(map(type, values)):
        return [_cell(v).encode() for v in values]
    if None in values:
        values = ["" if v is None else v for v in values]
    joined = "".join(values)
    if not values or "," in joined or '"' in joined or UNSAFE.search(joined):
        return [quote(v).encode() for v in values]
    return "\n".join(values).encode().split(b"\n")  # one pass: no value holds a newline


class _CategoryText(dict):
    """Category value → its CSV bytes, computed once (categorical features take few distinct values)."""

    MAX_ENTRIES = 4096

    def __missing__(self, value: str) -> bytes:
        if len(self) >= self.MAX_ENTRIES:  # high-cardinality text: stay bounded
            self.clear()
        text = self[value] = quote(value).encode()
        return text

    def column(self, values: np.ndarray) -> list[bytes]:
        """A categorical column (validated text, ``""`` = missing)."""
        return list(map(self.__getitem__, values.tolist()))


def _number_column(values: np.ndarray) -> list[bytes]:
    """A float64 column (NaN → empty)."""
    return number_rows(np.reshape(values, (-1, 1)))


def _feature_segments(layout: Layout, numeric: np.ndarray | None, categorical: np.ndarray | None,
                      plain: list[list[Any]] | None) -> list[list[bytes]]:
    """Per-row text of the feature columns, adjacent numeric columns joined into one segment."""
    segments: list[list[bytes]] = []
    slots = layout.slots
    i = 0
    while i < len(slots):
        kind, j = slots[i]
        if kind == "n":
            assert numeric is not None  # the layout has numeric slots only where the batch has numeric columns
            end = i + 1
            while end < len(slots) and slots[end] == ("n", j + end - i):
                end += 1
            segments.append(number_rows(numeric[:, j:j + end - i]))
            i = end
            continue
        if kind == "c":
            assert categorical is not None  # as for numeric slots
            segments.append(_CATEGORIES.column(categorical[:, j]))
        else:
            assert plain is not None
            segments.append(_text_column(plain[j]))
        i += 1
    return segments


_CATEGORIES = _CategoryText()  # used by the writer thread(s); a racing duplicate entry is harmless


def _format(batches: list[_Batch]) -> bytes:
    """CSV rows for consecutive batches of one layout."""
    batches = [b for b in batches if len(b)]
    if not batches:
        return b""
    first = batches[0]
    if len(batches) == 1:
        ids, numeric, categorical, plain, proba = first.ids, first.numeric, first.categorical, first.plain, first.proba
    else:
        ids = list(chain.from_iterable(b.ids for b in batches))
        numeric = np.concatenate([b.numeric for b in batches]) if first.numeric is not None else None
        categorical = np.concatenate([b.categorical for b in batches]) if first.categorical is not None else None
        # One layout: every batch has plain columns when the first has.
        plain = ([list(chain.from_iterable(cast(list[list[Any]], b.plain)[j] for b in batches))
                  for j in range(len(first.plain))] if first.plain is not None else None)
        proba = np.concatenate([b.proba for b in batches])
    # Every cell of every row in one flat list, joined by "," in one call: no per-row tuple or join. The
    # first cell of a row also carries the end of the row before it (``churned,threshold\ntimestamp,version``),
    # so the row breaks need no second pass; those joints are shared objects, two per batch.
    segments = [_text_column(ids), *_feature_segments(first.layout, numeric, categorical, plain),
                _number_column(proba)]
    width = len(segments) + 1
    cells: list[bytes] = [b""] * (len(ids) * width)
    for k, segment in enumerate(segments, 1):
        cells[k::width] = segment
    heads: dict[str, bytes] = {}
    tail = b""  # the end of the row before
    start = 0
    for b in batches:
        n = len(b)
        head = heads.get(b.timestamp)
        if head is None:
            head = heads[b.timestamp] = f"{quote(b.timestamp)},{quote(b.version)}".encode()
        threshold = orjson.dumps(float(b.threshold))
        tails = (b"0," + threshold, b"1," + threshold)
        churned = (proba[start:start + n] >= b.threshold).tolist()
        cells[start * width] = tail + b"\n" + head if start else head
        joints = (tails[0] + b"\n" + head, tails[1] + b"\n" + head)
        cells[(start + 1) * width:(start + n) * width:width] = map(joints.__getitem__, churned[:-1])
        tail = tails[churned[-1]]
        start += n
    return b",".join(cells) + b"," + tail + b"\n"


def _runs(batches: list[_Batch]) -> Iterator[list[_Batch]]:
    """Consecutive batches with one layout, at most about :data:`CHUNK_ROWS` rows per run."""
    run: list[_Batch] = []
    rows = 0
    for b in batches:
        if run and (b.layout != run[0].layout or rows + len(b) > CHUNK_ROWS):
            yield run
            run, rows = [], 0
        run.append(b)
        rows += len(b)
    if run:
        yield run


class PredictionLog:
    """Buffered, append-only CSV log of predictions.

    Args:
        folder: Where the ``<model_version>_outputs.csv`` files go (created).
        flush_seconds: Longest time a prediction waits in memory.
        max_pending_rows: Memory bound; beyond it the oldest waiting rows are dropped and counted.
    """

    def __init__(self, folder: Path, *, flush_seconds: float = 2.0, max_pending_rows: int = 1_000_000) -> None:
        self.folder = Path(folder)
        self.flush_seconds = flush_seconds
        self.max_pending_rows = max_pending_rows
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.last_error: str | None = None
        self._failing = False
        self._last_loss = float("-inf")
        self._queue: deque[_Batch] = deque()
        self._pending = 0
        self._writing = 0  # rows taken from the queue by the flush in progress
        self._held = 0  # rows formatted but not yet stored (GcsPredictionLog's parts waiting to upload)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._files: dict[tuple[str, tuple[str, ...]], Path] = {}

    def start(self) -> None:
        """Starts the background writer."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record_columns(self, version: str, layout: Layout, columns: Columns, proba: np.ndarray,
                       threshold: float) -> None:
        """Queues one request's predictions from the arrays it was scored on (the request path: constant
        time; the arrays must not be modified afterwards)."""
        self._enqueue(_Batch(_now(), version, layout, columns.ids, columns.numeric, columns.categorical, None,
                             proba, threshold))

    def record(self, version: str, features: tuple[str, ...], instances: list[dict[str, Any]], proba: np.ndarray,
               threshold: float) -> None:
        """Queues predictions given as instance dicts (feature values as they are; ``None`` or absent =
        missing)."""
        plain = [[inst.get(name) for inst in instances] for name in features]
        self._enqueue(_Batch(_now(), version, Layout.plain(features), [inst.get(ID_COLUMN) for inst in instances],
                             None, None, plain, proba, threshold))

    def _enqueue(self, batch: _Batch) -> None:
        with self._lock:
            self._queue.append(batch)
            self._pending += len(batch)
            while self._pending > self.max_pending_rows and len(self._queue) > 1:
                old = self._queue.popleft()
                self._pending -= len(old)
                self.dropped += len(old)
                self._last_loss = time.monotonic()
            early = self._pending >= EARLY_FLUSH_ROWS
        if early:
            self._wake.set()

    def flush(self) -> int:
        """Writes everything queued; returns the number of rows written (rows that could not be written are
        counted in ``failed`` and logged)."""
        with self._write_lock:
            with self._lock:
                batches, self._queue = list(self._queue), deque()
                self._writing, self._pending = self._pending, 0
            if not batches:
                return 0
            groups: dict[tuple[str, tuple[str, ...]], list[_Batch]] = {}
            for batch in batches:
                groups.setdefault((batch.version, batch.layout.features), []).append(batch)
            rows = 0
            try:
                for key, group in groups.items():
                    written = self._append(key, group)
                    self.written += written
                    rows += written
            finally:
                self._writing = 0
            return rows

    def _append(self, key: tuple[str, tuple[str, ...]], batches: list[_Batch]) -> int:
        """Appends one model version's rows, chunk by chunk; returns the rows written. A failure stops the
        group: the failed chunk is undone (:func:`_append_whole`) and it and the rest are counted lost."""
        version, features = key
        total = sum(map(len, batches))
        rows = 0
        path = self._files.get(key) or log_path(self.folder, version)
        try:
            if key not in self._files or not path.exists():
                path = self._files[key] = _ensure_header(log_path(self.folder, version), header(features))
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
            try:
                for run in _runs(batches):
                    _append_whole(fd, _format(run))
                    rows += sum(map(len, run))
            finally:
                os.close(fd)
        except OSError as exc:
            self._lose(total - rows, path, f"{type(exc).__name__}: {exc}")
            return rows
        except Exception as exc:  # a bug must not stop the writer; the rows are counted and it is logged
            logger.exception("prediction log: unexpected error writing %s", path)
            self._lose(total - rows, path, f"{type(exc).__name__}: {exc}")
            return rows
        if self._failing:
            logger.warning("prediction log: writing to %s again (%d rows lost so far)", path, self.lost)
            self._failing = False
        return rows

    def _lose(self, rows: int, path: Path | str, error: str) -> None:
        self.failed += rows
        self.last_error = error
        self._failing = True
        self._last_loss = time.monotonic()
        logger.error("prediction log: %d rows not written to %s (%s); %d lost so far, the file is left whole",
                     rows, path, error, self.lost)

    @property
    def lost(self) -> int:
        """Rows answered but not logged: dropped from memory or failed to write."""
        return self.dropped + self.failed

    def status(self) -> dict[str, Any]:
        """What ``/health`` reports: rows written and lost by this process, the last write error, and whether
        the log is ``degraded`` (the last write failed, or rows were lost in the last
        :data:`LOSS_WINDOW_SECONDS`)."""
        degraded = self._failing or time.monotonic() - self._last_loss < LOSS_WINDOW_SECONDS
        return {"status": "degraded" if degraded else "ok", "rows_written": self.written, "rows_lost": self.lost,
                "rows_pending": self._pending + self._writing + self._held, "last_error": self.last_error}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stops the writer and flushes what is left (call on shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
        if self.lost:
            logger.warning("prediction log: %d rows were not logged (%d dropped as the disk did not keep up, "
                           "%d failed to write)", self.lost, self.dropped, self.failed)


def _append_whole(fd: int, data: bytes) -> None:
    """Appends ``data`` whole or not at all.

    Under an exclusive ``flock`` (the writers of every worker process take it), so the file's size before
    the write is where this chunk starts: on a failed or partial write (``ENOSPC``) the file is truncated
    back to it. A line left unfinished by a process killed mid-write is cut off first, so the rows that
    follow stay readable.

    Raises:
        OSError: The write failed (the file is as it was before).
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        start = os.fstat(fd).st_size
        if start and os.pread(fd, 1, start - 1) != b"\n":
            start = _last_line_end(fd, start)
            os.ftruncate(fd, start)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError as exc:
                logger.error("prediction log: cannot remove a partial row (%s)", exc)
            raise
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _last_line_end(fd: int, size: int) -> int:
    """The offset just after the last ``\n`` before ``size`` (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ----------------------------------------------------------------------------------------------------
# Cloud Storage
# ----------------------------------------------------------------------------------------------------

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
CLOSE_SECONDS = 10.0  # on shutdown, how long uploads are retried before the rest is counted lost
UPLOAD_TIMEOUT_SECONDS = 15.0  # per upload attempt; bounds how long a shutdown waits for one in flight


@dataclass(frozen=True)
class _Part:
    name: str
    data: bytes
    rows: int


def worker_id() -> str:
    """This process's name in part objects: host (the replica), pid and a random token, so that replicas,
    workers and restarted workers (a pid may come back) never write the same object name."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:63] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def part_name(prefix: str, version: str, date: str, worker: str, seq: int) -> str:
    """``<prefix>/<model_version>/date=<YYYY-MM-DD>/part-<worker>-<seq>.csv`` (version made name-safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", version)
    name = f"{safe}/date={date}/part-{worker}-{seq:06d}.csv"
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


class GcsPredictionLog(PredictionLog):
    """The prediction log as immutable CSV part objects in Cloud Storage.

    Each flush turns the queued rows into one object per model version and (UTC) day of the requests,
    ``gs://BUCKET/PREFIX/<model_version>/date=<YYYY-MM-DD>/part-<worker>-<seq>.csv``, with the local file's
    header and columns, written once and never appended to (``if_generation_match=0``: a retry of an upload
    whose answer was lost finds its object already there). A part that cannot be uploaded (outage,
    timeout, no credentials) stays in memory and is retried, in order, with exponential backoff from
    :data:`RETRY_FIRST_SECONDS` to :data:`RETRY_MAX_SECONDS`; requests never wait for Cloud Storage. Rows
    waiting (queued or in parts) are bounded by ``max_pending_rows``: beyond it the oldest are dropped and
    counted. ``close`` (SIGTERM) writes what is left, retrying for up to ``close_seconds``, and counts the
    rest as lost. google-cloud-storage finds its endpoint (``STORAGE_EMULATOR_HOST``) and credentials
    itself.

    Args:
        uri: ``gs://BUCKET`` or ``gs://BUCKET/PREFIX``.
        flush_seconds: Longest time a prediction waits in memory while Cloud Storage answers.
        max_pending_rows: Memory bound (rows queued plus rows in parts waiting to upload).
        close_seconds: How long ``close`` keeps retrying.
        worker: Name of this writer in part names (default: :func:`worker_id`).
    """

    def __init__(self, uri: str, *, flush_seconds: float = 60.0, max_pending_rows: int = 1_000_000,
                 close_seconds: float = CLOSE_SECONDS, worker: str | None = None) -> None:
        from churn.storage import split_gcs

        super().__init__(Path("."), flush_seconds=flush_seconds, max_pending_rows=max_pending_rows)
        self.uri = uri.rstrip("/")
        self.bucket_name, self.prefix = split_gcs(self.uri)
        self.close_seconds = close_seconds
        self.worker = worker or worker_id()
        self._seq = 0
        self._parts: deque[_Part] = deque()
        self._retry_at = float("-inf")
        self._backoff = 0.0
        self._bucket: Any = None

    def start(self) -> None:
        """Starts the background writer (nothing is created in Cloud Storage until rows arrive)."""
        self._thread = threading.Thread(target=self._run, name="prediction-log-gcs", daemon=True)
        self._thread.start()

    def _enqueue(self, batch: _Batch) -> None:
        with self._lock:
            self._queue.append(batch)
            self._pending += len(batch)
            while self._pending + self._held > self.max_pending_rows and (self._parts or len(self._queue) > 1):
                if self._parts:  # the parts are older than anything queued
                    rows = self._parts.popleft().rows
                    self._held -= rows
                else:
                    rows = len(self._queue.popleft())
                    self._pending -= rows
                self.dropped += rows
                self._last_loss = time.monotonic()
            early = self._pending >= EARLY_FLUSH_ROWS
        if early:
            self._wake.set()

    def flush(self) -> int:
        """Turns the queued rows into parts and uploads the parts waiting (unless backing off after a
        failure); returns the rows written."""
        with self._write_lock:
            self._make_parts()
            if time.monotonic() < self._retry_at:
                return 0
            return self._upload()

    def _make_parts(self) -> None:
        with self._lock:
            batches, self._queue = list(self._queue), deque()
            self._writing, self._pending = self._pending, 0
        try:
            groups: dict[tuple[str, tuple[str, ...], str], list[_Batch]] = {}
            for batch in batches:
                groups.setdefault((batch.version, batch.layout.features, batch.timestamp[:10]), []).append(batch)
            for (version, features, date), group in groups.items():
                rows = sum(map(len, group))
                try:
                    data = (",".join(map(quote, header(features))) + "\n").encode() + b"".join(
                        _format(run) for run in _runs(group))
                except Exception as exc:  # a bug must not stop the writer; the rows are counted and it is logged
                    logger.exception("prediction log: cannot format %d rows for %s", rows, self.uri)
                    self._lose(rows, self.uri, f"{type(exc).__name__}: {exc}")
                    continue
                part = _Part(part_name(self.prefix, version, date, self.worker, self._seq), data, rows)
                self._seq += 1
                with self._lock:
                    self._parts.append(part)
                    self._held += rows
        finally:
            self._writing = 0

    def _upload(self) -> int:
        """Uploads the waiting parts in order until one fails (then backs off); returns the rows written."""
        written = 0
        while True:
            with self._lock:
                if not self._parts:
                    return written
                part = self._parts[0]
            try:
                self._put(part)
            except Exception as exc:  # noqa: BLE001 - any failure (network, HTTP, credentials) leaves the part to retry
                self._backoff = min(max(2 * self._backoff, RETRY_FIRST_SECONDS), RETRY_MAX_SECONDS)
                self._retry_at = time.monotonic() + self._backoff
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                self._failing = True
                logger.error("prediction log: cannot write gs://%s/%s (%s); %d rows wait in memory, %d lost so "
                             "far; retrying in %g s", self.bucket_name, part.name, self.last_error,
                             self._held + self._pending, self.lost, self._backoff)
                return written
            with self._lock:
                if self._parts and self._parts[0] is part:
                    self._parts.popleft()
                    self._held -= part.rows
                else:  # dropped for memory while it was uploading: it was written after all
                    self.dropped -= part.rows
            self.written += part.rows
            written += part.rows
            self._backoff, self._retry_at = 0.0, float("-inf")
            if self._failing:
                logger.warning("prediction log: writing to %s again (%d rows lost so far)", self.uri, self.lost)
                self._failing = False

    def _put(self, part: _Part) -> None:
        from google.api_core.exceptions import PreconditionFailed

        if self._bucket is None:
            from google.cloud import storage

            self._bucket = storage.Client().bucket(self.bucket_name)
        blob = self._bucket.blob(part.name)
        # PreconditionFailed: written by an earlier attempt whose answer was lost (parts are immutable).
        with contextlib.suppress(PreconditionFailed):
            blob.upload_from_string(part.data, content_type="text/csv", if_generation_match=0, retry=None,
                                    timeout=UPLOAD_TIMEOUT_SECONDS)

    def close(self) -> None:
        """Stops the writer, then writes what is left, retrying for up to ``close_seconds``; what still
        cannot be written is counted lost and logged."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=UPLOAD_TIMEOUT_SECONDS + 5)  # an upload in flight ends by its timeout
        deadline = time.monotonic() + self.close_seconds
        with self._write_lock:
            self._make_parts()
            while True:
                self._upload()
                left = deadline - time.monotonic()
                if not self._parts or left <= 0:
                    break
                time.sleep(min(max(self._retry_at - time.monotonic(), 0.05), left))
            with self._lock:
                rows, self._parts, self._held = self._held, deque(), 0
        if rows:
            self._lose(rows, self.uri, self.last_error or "not written before shutdown")
        if self.lost:
            logger.warning("prediction log: %d rows were not logged to %s (%d dropped from memory, %d failed)",
                           self.lost, self.uri, self.dropped, self.failed)
