"""serving.prediction_log: CSV per model version, header once, whole rows from concurrent writers."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np

from serving.prediction_log import PredictionLog, header, log_path

FEATURES = ("tenure_days", "plan", "age")


def _instances(n: int, tag: str) -> list[dict]:
    return [{"customer_id": f"{tag}-{i}", "tenure_days": float(i), "plan": "basic", **({"age": None} if i % 2 else {})}
            for i in range(n)]


def test_rows_go_to_one_file_per_version_with_a_header(tmp_path: Path):
    log = PredictionLog(tmp_path, flush_seconds=60)
    log.start()
    log.record("v1", FEATURES, _instances(3, "a"), np.array([0.1, 0.5, 0.9]), 0.5)
    log.record("v2", FEATURES, _instances(2, "b"), np.array([0.2, 0.7]), 0.6)
    log.close()
    rows = list(csv.DictReader(log_path(tmp_path, "v1").open()))
    assert log_path(tmp_path, "v1").read_text().splitlines()[0] == ",".join(header(FEATURES))
    assert [r["customer_id"] for r in rows] == ["a-0", "a-1", "a-2"]
    assert [r["churned"] for r in rows] == ["0", "1", "1"] and rows[1]["age"] == "" and rows[0]["plan"] == "basic"
    assert len(list(csv.DictReader(log_path(tmp_path, "v2").open()))) == 2
    assert log.written == 5 and log.dropped == 0


def test_concurrent_logs_sharing_a_file_never_interleave(tmp_path: Path):
    logs = [PredictionLog(tmp_path, flush_seconds=0.01) for _ in range(3)]
    for log in logs:
        log.start()

    def produce(log: PredictionLog, tag: str) -> None:
        for k in range(50):
            log.record("v1", FEATURES, _instances(40, f"{tag}{k}"), np.full(40, 0.25), 0.5)

    threads = [threading.Thread(target=produce, args=(log, t)) for log, t in zip(logs, "xyz")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.close()
    lines = log_path(tmp_path, "v1").read_text().splitlines()
    assert lines[0] == ",".join(header(FEATURES)) and lines.count(lines[0]) == 1
    rows = list(csv.reader(lines[1:]))
    assert len(rows) == 3 * 50 * 40 and all(len(r) == len(header(FEATURES)) for r in rows)


def test_memory_stays_bounded_when_the_writer_falls_behind(tmp_path: Path):
    log = PredictionLog(tmp_path, flush_seconds=3600, max_pending_rows=1000)
    for k in range(30):
        log.record("v1", FEATURES, _instances(100, str(k)), np.zeros(100), 0.5)
    assert log.dropped == 2000
    log.flush()
    assert log.written == 1000
