"""serving.prediction_log: CSV per model version, header once, whole rows from concurrent writers."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np

from churn.logformat import Layout, header
from serving.prediction_log import PredictionLog, log_path

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

    threads = [threading.Thread(target=produce, args=(log, t)) for log, t in zip(logs, "xyz", strict=True)]
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


# ------------------------------------------------------------------------------------------ from arrays

def _columns(n: int, tag: str, rng: np.random.Generator):
    from serving.columns import Columns

    numeric = rng.normal(0, 1e3, (n, 2)) * rng.choice([1.0, 1e-7, 1e9], (n, 2))
    numeric[::3, 1] = np.nan  # "age" missing
    numeric[1::5, 0] = -0.0
    plans = np.array([["basic"], ["pro, annual"], ['say "hi"'], ["multi\nline"], [""], ["é"]], dtype=object)
    categorical = plans[np.arange(n) % len(plans)]
    ids = [f"{tag}-{i}" if i % 4 else None for i in range(n)]
    ids[2 % n] = "id,with,commas"
    return Columns(numeric=numeric, categorical=categorical, ids=ids)


def test_rows_from_arrays_read_back_as_csv_writer_would_write_them(tmp_path: Path):
    import io


    layout = Layout(FEATURES, (("n", 0), ("c", 0), ("n", 1)))
    rng = np.random.default_rng(0)
    log = PredictionLog(tmp_path, flush_seconds=60)
    log.start()
    batches = []
    for k, n in enumerate([1, 7, 2000, 1, 1500]):  # more rows than one formatting chunk
        columns, proba = _columns(n, f"r{k}", rng), rng.random(n)
        proba[0] = 5e-7
        threshold = [0.5, 0.3, 1.0, 0.0, 0.25][k]
        log.record_columns("v1", layout, columns, proba, threshold)
        batches.append((columns, proba, threshold))
    log.close()
    lines = log_path(tmp_path, "v1").read_text().split("\n")
    assert lines[0] == ",".join(header(FEATURES)) and lines[-1] == ""
    rows = list(csv.reader(io.StringIO(log_path(tmp_path, "v1").read_text())))[1:]
    expected = [(cid, x[0], plan, x[1], p, int(p >= t), t)
                for columns, proba, t in batches
                for cid, x, plan, p in zip(columns.ids, columns.numeric.tolist(), columns.categorical[:, 0], proba,
                                           strict=True)]
    assert len(rows) == len(expected) == log.written
    text_rows = list(csv.reader(io.StringIO("".join(
        _csv_line([cid, plan]) for cid, _, plan, *_ in expected))))
    for row, exp, (cid_text, plan_text) in zip(rows, expected, text_rows, strict=True):
        assert row[1] == "v1" and row[0].endswith("+00:00")
        assert (row[2], row[4]) == (_logged(cid_text), _logged(plan_text))
        assert (cid_text, plan_text) == ("" if exp[0] is None else exp[0], exp[2])
        for cell, value in ((row[3], exp[1]), (row[5], exp[3]), (row[6], exp[4]), (row[8], exp[6])):
            if value != value:  # NaN: missing
                assert cell == ""
            else:
                assert float(cell) == value and np.signbit(float(cell)) == np.signbit(value)  # exact, -0.0 kept
        assert row[7] == str(exp[5])
    raw = log_path(tmp_path, "v1").read_bytes().decode()  # no newline translation
    assert '"pro, annual"' in raw and '"say ""hi"""' in raw and '"id,with,commas"' in raw
    assert ",multi\\u000aline," in raw and "\r" not in raw


def _logged(text: str) -> str:
    """How the log spells a text value: control characters and lone surrogates as JSON-style escapes."""
    import re

    return re.sub("[\x00-\x1f\x7f\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)


def _csv_line(values: list) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def test_arrays_and_instance_dicts_of_one_model_share_its_file(tmp_path: Path):

    log = PredictionLog(tmp_path, flush_seconds=60)
    log.start()
    log.record("v1", FEATURES, _instances(2, "d"), np.array([0.1, 0.9]), 0.5)
    log.record_columns("v1", Layout(FEATURES, (("n", 0), ("c", 0), ("n", 1))),
                       _columns(3, "a", np.random.default_rng(1)), np.array([0.2, 0.6, 0.7]), 0.5)
    log.close()
    rows = list(csv.DictReader(log_path(tmp_path, "v1").open()))
    assert [r["customer_id"] for r in rows] == ["d-0", "d-1", "", "a-1", "id,with,commas"]
    assert [r["churned"] for r in rows] == ["0", "1", "0", "1", "1"] and log.written == 5


def test_text_cells_are_written_byte_for_byte_as_csv_writer_writes_them_once_escaped():
    from serving.prediction_log import _text_column

    for values in (["a", "b,c", None, 'x"y', "l\nm", "", "é", "a\rb"], [1.5, 'q"', None, True, 3, "s,t"],
                   ["plain", "x"], ["nul\x00", "del\x7f", "sur\ud800rogate", 'all\r\n",\x00']):
        text = b",".join(_text_column(values)).decode()
        assert text + "\n" == _csv_line([v if not isinstance(v, str) else _logged(v) for v in values])
        assert "\r" not in text and "\n" not in text and "\x00" not in text


def _number(x: float) -> str:
    import orjson

    return "" if x != x else orjson.dumps(x).decode()  # shortest text that reads back as x (0.00001, not 1e-05)


def test_batches_formatted_together_keep_their_own_timestamp_and_threshold():
    from serving.prediction_log import _Batch, _format

    layout = Layout(FEATURES, (("n", 0), ("c", 0), ("n", 1)))
    rng = np.random.default_rng(2)
    batches, expected = [], []
    for k, (n, threshold) in enumerate([(3, 0.5), (1, 0.25), (0, 0.9), (4, 0.75), (2, 0.5)]):
        columns, proba = _columns(max(n, 1), f"b{k}", rng), rng.random(n)
        ids, numeric, categorical = columns.ids[:n], columns.numeric[:n], columns.categorical[:n]
        stamp = f"2026-01-0{k + 1}T00:00:00.000+00:00"
        batches.append(_Batch(stamp, "v,1", layout, ids, numeric, categorical, None, proba, threshold))
        for cid, (x, age), plan, p in zip(ids, numeric.tolist(), categorical[:, 0], proba.tolist(), strict=True):
            cells = [stamp, "v,1", cid, _number(x), _logged(plan), _number(age), _number(p), int(p >= threshold),
                     _number(threshold)]
            expected.append(_csv_line(cells))
    assert _format(batches).decode() == "".join(expected)


def test_only_empty_batches_write_nothing():
    from serving.prediction_log import _Batch, _format

    layout = Layout(FEATURES, (("n", 0), ("c", 0), ("n", 1)))
    empty = _Batch("t", "v1", layout, [], np.zeros((0, 2)), np.zeros((0, 1), dtype=object), None, np.zeros(0), 0.5)
    assert _format([empty, empty]) == b""


def test_a_row_left_unfinished_by_a_killed_writer_is_cut_before_appending(tmp_path: Path):
    # A writer killed mid-write (SIGKILL, power loss) leaves a partial last line; appending after it would
    # glue the next row onto it and break both for every CSV reader.
    log = PredictionLog(tmp_path, flush_seconds=60)
    log.record("v1", FEATURES, _instances(2, "a"), np.array([0.1, 0.9]), 0.5)
    log.flush()
    path = log_path(tmp_path, "v1")
    with path.open("a") as fh:
        fh.write("2026-01-01T00:00:00.000+00:00,v1,half-writ")
    log.record("v1", FEATURES, _instances(2, "b"), np.array([0.2, 0.8]), 0.5)
    log.flush()
    rows = list(csv.DictReader(path.open()))
    assert [r["customer_id"] for r in rows] == ["a-0", "a-1", "b-0", "b-1"]
    assert log.status() == {"status": "ok", "rows_written": 4, "rows_lost": 0, "rows_pending": 0,
                            "last_error": None}


def test_a_write_that_fails_is_counted_and_reported(tmp_path: Path):
    # Before: the exception escaped flush (a traceback in the server log) and the rows vanished uncounted.
    (tmp_path / "not-a-folder").write_text("")
    log = PredictionLog(tmp_path / "not-a-folder", flush_seconds=60)
    log.record("v1", FEATURES, _instances(3, "a"), np.array([0.1, 0.5, 0.9]), 0.5)
    assert log.flush() == 0
    status = log.status()
    assert status["status"] == "degraded" and status["rows_lost"] == 3 and status["rows_written"] == 0
    assert status["last_error"].startswith("NotADirectoryError")
