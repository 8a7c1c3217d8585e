"""Prediction log: every prediction appended to ``<folder>/<model_version>_outputs.csv``, off the request path.

A request only appends a reference to its validated instances and outputs to an in-memory queue
(constant time). A background thread turns the queue into CSV every ``flush_seconds`` (sooner when it
grows) and appends it to the file with one ``write`` on a file opened ``O_APPEND``, so the worker processes
of one server can share a file without interleaving rows. The header is created atomically (written to a
temporary file, then hard-linked into place), so a file never lacks it. ``close`` (on shutdown) flushes
what is left.

Columns: ``timestamp`` (UTC, ISO 8601, one per request), ``model_version``, ``customer_id``, the model's
features in schema order (empty = missing), ``churn_probability``, ``churned`` (0/1), ``threshold``. This
is what the drift check reads. On Vertex AI, the Endpoint's BigQuery request-response logging is the
equivalent (see README).

If the disk cannot keep up, at most ``max_pending_rows`` rows wait in memory; older ones are dropped and
counted (``dropped``), so memory stays bounded.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from churn.schema import ID_COLUMN

logger = logging.getLogger(__name__)

SUFFIX = "_outputs.csv"
EARLY_FLUSH_ROWS = 50_000


@dataclass(frozen=True)
class _Batch:
    timestamp: str
    version: str
    features: tuple[str, ...]
    instances: list[dict[str, Any]]
    proba: np.ndarray
    threshold: float


def log_path(folder: Path, version: str) -> Path:
    """``<folder>/<version>_outputs.csv`` (characters unsafe in file names replaced by ``_``)."""
    return folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', version)}{SUFFIX}"


def header(features: tuple[str, ...]) -> list[str]:
    """The CSV columns for a model's features."""
    return ["timestamp", "model_version", ID_COLUMN, *features, "churn_probability", "churned", "threshold"]


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
        self._queue: deque[_Batch] = deque()
        self._pending = 0
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

    def record(self, version: str, features: tuple[str, ...], instances: list[dict[str, Any]], proba: np.ndarray,
               threshold: float) -> None:
        """Queues one request's predictions (called on the request path; constant time)."""
        batch = _Batch(datetime.now(timezone.utc).isoformat(timespec="milliseconds"), version, features,
                       instances, proba, threshold)
        with self._lock:
            self._queue.append(batch)
            self._pending += len(instances)
            while self._pending > self.max_pending_rows and len(self._queue) > 1:
                old = self._queue.popleft()
                self._pending -= len(old.instances)
                self.dropped += len(old.instances)
            early = self._pending >= EARLY_FLUSH_ROWS
        if early:
            self._wake.set()

    def flush(self) -> int:
        """Writes everything queued; returns the number of rows written."""
        with self._lock:
            batches, self._queue = list(self._queue), deque()
            self._pending = 0
        if not batches:
            return 0
        with self._write_lock:
            groups: dict[tuple[str, tuple[str, ...]], list[_Batch]] = {}
            for batch in batches:
                groups.setdefault((batch.version, batch.features), []).append(batch)
            rows = 0
            for key, group in groups.items():
                rows += self._append(key, group)
            self.written += rows
            return rows

    def _append(self, key: tuple[str, tuple[str, ...]], batches: list[_Batch]) -> int:
        version, features = key
        path = self._files.get(key)
        if path is None or not path.exists():
            path = self._files[key] = _ensure_header(log_path(self.folder, version), header(features))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        rows = 0
        for b in batches:
            churned = (b.proba >= b.threshold).astype(np.int8).tolist()
            writer.writerows(
                (b.timestamp, b.version, inst.get(ID_COLUMN), *map(inst.get, features), p, c, b.threshold)
                for inst, p, c in zip(b.instances, b.proba.tolist(), churned))
            rows += len(b.instances)
        data = buf.getvalue().encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return rows

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep the writer alive; the rows of this flush are lost and logged
                logger.exception("prediction log: cannot write to %s", self.folder)

    def close(self) -> None:
        """Stops the writer and flushes what is left (call on shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
        if self.dropped:
            logger.warning("prediction log: %d rows were dropped (the disk did not keep up)", self.dropped)
