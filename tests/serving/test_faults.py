"""Faults and hostile clients against a real ``python -m serving``: plain blocking clients (urllib, requests,
raw sockets), real signals, a real full disk (a small tmpfs).

* Oversized bodies get the documented 413 even from clients that send the whole body before reading.
* Bodies far beyond the drain bound are not read: the server closes and stays healthy.
* Slow clients meet the header and body deadlines (408 or close); a client leaving mid-body costs one line.
* Text that would break CSV rows is escaped in the prediction log, which pandas and pyarrow then read.
* A full disk loses whole rows only, counted on ``/health`` and in the server log.
* ``SIGKILL`` of the supervisor takes its workers down, freeing the port.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.serving.conftest import ServerProcess, Trained, free_port, start_server

MiB = 1 << 20
TIGHT_DRAIN = 2 * MiB
SLOW_DEADLINE = 2.0  # header and body deadlines of the "tight" server, seconds


@pytest.fixture(scope="module")
def server(models: dict[str, Trained], tmp_path_factory: pytest.TempPathFactory):
    """Default limits (1.5 MB body, 32 MiB drain); prediction log flushed every 0.1 s."""
    work = tmp_path_factory.mktemp("faults-server")
    server = start_server(work, AIP_STORAGE_URI=str(models["logistic_regression"].folder),
                          SERVING_LOG_FLUSH_SECONDS="0.1", SERVING_MODEL_VERSION="v1",
                          SERVING_PREDICTION_LOG_DIR=str(work / "predictions"))
    server.wait_health()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tight(models: dict[str, Trained], tmp_path_factory: pytest.TempPathFactory):
    """A 2 MiB drain bound and 2 s header and body deadlines."""
    work = tmp_path_factory.mktemp("faults-tight")
    server = start_server(work, AIP_STORAGE_URI=str(models["logistic_regression"].folder),
                          SERVING_MAX_DRAIN_BYTES=str(TIGHT_DRAIN), SERVING_PREDICTION_LOG="false",
                          SERVING_HEADER_TIMEOUT_SECONDS=str(SLOW_DEADLINE),
                          SERVING_BODY_TIMEOUT_SECONDS=str(SLOW_DEADLINE))
    server.wait_health()
    yield server
    server.stop()


def _body(model: Trained, size: int) -> bytes:
    """A JSON request of about ``size`` bytes (real instances, repeated)."""
    one = json.dumps(model.instances(1)[0])
    return json.dumps({"instances": [json.loads(one)] * (size // (len(one) + 2) + 1)}).encode()


def _read_response(sock: socket.socket, data: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response (Content-Length framed), after ``data`` received."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _head(port: int, length: int, extra: str = "") -> bytes:
    return (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


# ------------------------------------------------------------------------------------------ 413 for every client

@pytest.mark.parametrize("size", [int(1.6e6), 4 * MiB, 16_000_000, 16 * MiB])
def test_urllib_gets_the_413_for_an_oversized_body(server: ServerProcess, models, size: int):
    # Before: the server answered before reading the body and closed with the body unread, so the kernel
    # reset the connection and urllib (sending the whole body before reading) saw Broken pipe / reset.
    big = _body(models["logistic_regression"], size)
    request = urllib.request.Request(f"{server.base_url}/predict", data=big,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    assert caught.value.code == 413
    body = json.loads(caught.value.read())
    assert "limit is 1572864" in body["detail"] and caught.value.headers["connection"] == "close"
    with urllib.request.urlopen(f"{server.base_url}/health", timeout=10) as health:
        assert health.status == 200


@pytest.mark.parametrize("size", [int(1.6e6), 16 * MiB])
def test_requests_and_a_raw_send_everything_client_get_the_413(server: ServerProcess, models, size: int):
    big = _body(models["logistic_regression"], size)
    try:
        import requests
    except ImportError:  # pragma: no cover - requests is in the dev lock
        requests = None
    if requests is not None:
        resp = requests.post(f"{server.base_url}/predict", data=big, timeout=60,
                             headers={"Content-Type": "application/json"})
        assert resp.status_code == 413 and "limit" in resp.json()["detail"]

        def chunks():
            for i in range(0, len(big), 65536):
                yield big[i:i + 65536]

        streamed = requests.post(f"{server.base_url}/predict", data=chunks(), timeout=60)  # chunked, no length
        assert streamed.status_code == 413 and "exceeds 1572864" in streamed.json()["detail"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(_head(server.port, len(big)) + big)  # every byte sent before reading anything
        status, headers, body = _read_response(sock)
    assert status == 413 and headers["connection"] == "close" and "limit" in json.loads(body)["detail"]


def test_a_client_expecting_100_continue_gets_the_413_without_sending_the_body(server: ServerProcess):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_head(server.port, 8 * MiB, "Expect: 100-continue\r\n"))
        started = time.monotonic()
        status, _, _ = _read_response(sock)
        assert sock.recv(1) == b""  # closed at once: not waiting for a body that will not come
    assert status == 413 and time.monotonic() - started < 2


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_far_over_the_drain_bound_is_not_read(tight: ServerProcess, framing: str):
    total = 256 * MiB
    head = (_head(tight.port, total) if framing == "content-length" else
            b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * MiB
    if framing == "chunked":
        piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", tight.port), timeout=30) as sock:
        sock.sendall(head)
        with pytest.raises(OSError):  # reset or broken pipe: the server stopped reading and closed
            while sent < total:
                sock.sendall(piece)
                sent += len(piece)
    # What got through: the 1.5 MB limit, the drain bound, and the two sockets' buffers (a few MiB each).
    assert sent < 64 * MiB, f"the server read {sent / MiB:.0f} MiB"
    assert time.monotonic() - started < 20
    with urllib.request.urlopen(f"{tight.base_url}/health", timeout=10) as health:
        assert health.status == 200


# ------------------------------------------------------------------------------------------ slow clients

def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """Everything the server sends until it closes; fails if it is still open after ``seconds``."""
    sock.settimeout(seconds)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"still open after {seconds} s; got {data!r}") from None
        if not chunk:
            return data
        data += chunk


def test_headers_sent_a_byte_at_a_time_meet_the_header_deadline(tight: ServerProcess):
    head = _head(tight.port, 10)
    with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as sock:
        started = time.monotonic()
        try:
            for byte in head:  # 1 byte every 0.25 s: the head would take 30 s
                sock.send(bytes([byte]))
                time.sleep(0.25)
                if time.monotonic() - started > SLOW_DEADLINE + 3:
                    break
        except OSError:
            pass
        answer = _closed_within(sock, 5)
    assert time.monotonic() - started < SLOW_DEADLINE + 5
    assert answer.startswith(b"HTTP/1.1 408 ") or answer == b""


def test_a_silent_connection_is_closed_after_the_header_deadline(tight: ServerProcess):
    with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as sock:
        started = time.monotonic()
        answer = _closed_within(sock, SLOW_DEADLINE + 5)
    assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started >= SLOW_DEADLINE - 0.5


def test_a_body_sent_a_byte_a_second_gets_408(tight: ServerProcess):
    with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as sock:
        sock.sendall(_head(tight.port, 1000) + b'{"inst')
        started = time.monotonic()
        sock.settimeout(1.0)  # each recv waits a second: one byte a second until the server answers
        data = b""
        while not data and time.monotonic() - started < SLOW_DEADLINE + 5:
            sock.send(b" ")
            with contextlib.suppress(TimeoutError):
                data = sock.recv(65536)
        sock.settimeout(10)
        status, headers, body = _read_response(sock, data)
    assert status == 408 and headers["connection"] == "close", body
    assert "did not arrive within 2 s" in json.loads(body)["detail"]
    assert time.monotonic() - started < SLOW_DEADLINE + 4


def test_a_client_leaving_mid_body_logs_one_line_and_no_traceback(tight: ServerProcess):
    before = len(tight.output())
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", tight.port), timeout=10) as sock:
            sock.sendall(_head(tight.port, 100_000) + b'{"instances": [' + b" " * 5000)
            time.sleep(0.2)
    time.sleep(1.0)
    with urllib.request.urlopen(f"{tight.base_url}/health", timeout=10) as health:
        assert health.status == 200
    new = tight.output()[before:]
    assert "Traceback" not in new and "Exception" not in new, new
    lines = [line for line in new.splitlines() if "disconnected" in line]
    assert len(lines) == 3 and all("body bytes" in line for line in lines), new


# ------------------------------------------------------------------------------------------ prediction log text

HOSTILE_TEXT = ["cr\rin-id", "lf\nin-id", "crlf\r\nin-id", 'quote"in-id', "comma,in-id", "nul\x00in-id",
                "tab\tand\x7fdel", "ünïcödé-id", '\r\n",\x00']


def test_hostile_text_keeps_the_log_readable_by_pandas_and_pyarrow(server: ServerProcess, models):
    import pandas as pd
    import pyarrow.csv as pacsv

    model = models["logistic_regression"]
    category = model.schema.categorical[0] if model.schema.categorical else None
    instances = []
    for i, text in enumerate(HOSTILE_TEXT):
        inst = {**model.instances(1)[0], "customer_id": text}
        if category is not None:
            inst[category] = f"cat\r{i}"
        instances.append(inst)
    data = json.dumps({"instances": instances}).encode()  # json escapes \r, \n, NUL as \r, \n, \u0000
    request = urllib.request.Request(f"{server.base_url}/predict", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        answered = json.loads(resp.read())["predictions"]
    assert [p["customer_id"] for p in answered] == HOSTILE_TEXT  # the response echoes ids unchanged
    after = [{**model.instances(1)[0], "customer_id": f"after-{i}"} for i in range(3)]
    with urllib.request.urlopen(urllib.request.Request(
            f"{server.base_url}/predict", data=json.dumps({"instances": after}).encode(),
            headers={"Content-Type": "application/json"}), timeout=30) as resp:
        assert resp.status == 200
    lone = b'{"instances": [{"customer_id": "\\ud800"}]}'  # a lone surrogate is not text: refused
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(f"{server.base_url}/predict", data=lone), timeout=30)
    assert caught.value.code == 400

    path = Path(server.env["SERVING_PREDICTION_LOG_DIR"]) / "v1_outputs.csv"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not path.exists() or b"after-2" not in path.read_bytes()):
        time.sleep(0.1)
    raw = path.read_bytes()
    assert b"\r" not in raw and b"\x00" not in raw
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={"customer_id": "string"})).to_pandas()  # as the drift check reads it
    for read in (frame, table):
        ids = list(read["customer_id"])
        escaped = [t.replace("\r", "\\u000d").replace("\n", "\\u000a").replace("\x00", "\\u0000")
                   .replace("\t", "\\u0009").replace("\x7f", "\\u007f") for t in HOSTILE_TEXT]
        assert ids[-len(HOSTILE_TEXT) - 3:] == escaped + [f"after-{i}" for i in range(3)]
        assert list(read["model_version"].unique()) == ["v1"]
        if category is not None:
            assert f"cat\\u000d{len(HOSTILE_TEXT) - 1}" in set(read[category])


# ------------------------------------------------------------------------------------------ full disk



def _health(server: ServerProcess) -> dict:
    with urllib.request.urlopen(f"{server.base_url}/health", timeout=10) as resp:
        return json.loads(resp.read())


def _predict(server: ServerProcess, instances: list[dict]) -> int:
    request = urllib.request.Request(f"{server.base_url}/predict", data=json.dumps({"instances": instances}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        return len(json.loads(resp.read())["predictions"])


def _settled(server: ServerProcess) -> dict:
    """Health once nothing waits to be written."""
    deadline = time.monotonic() + 10
    while True:
        body = _health(server)
        if body["prediction_log"]["rows_pending"] == 0 or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


@pytest.mark.slow
def test_a_full_disk_loses_whole_rows_counted_on_health_and_in_the_log(models, tmp_path: Path, small_disk: Path):
    import pandas as pd

    model = models["logistic_regression"]
    log_dir = small_disk / "predictions"
    server = start_server(tmp_path / "srv", AIP_STORAGE_URI=str(model.folder), SERVING_MODEL_VERSION="v1",
                          SERVING_LOG_FLUSH_SECONDS="0.05", SERVING_PREDICTION_LOG_DIR=str(log_dir))
    try:
        server.wait_health()
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (1024 * 1024 - 160 * 1024))  # leaves about 160 kB
        answered = 0
        instances = [{**inst, "customer_id": f"c{i}"} for i, inst in enumerate(model.instances(50))]
        for _ in range(200):  # ~50 requests fill what is left, the rest fail to be written
            answered += _predict(server, instances)
            time.sleep(0.01)
        full = _settled(server)
        assert full["status"] == "degraded", full
        log = full["prediction_log"]
        assert log["rows_lost"] > 0 and "No space left on device" in log["last_error"]
        assert log["rows_written"] + log["rows_lost"] == answered
        assert "rows not written to" in server.output() and "Traceback" not in server.output()

        path = log_dir / "v1_outputs.csv"
        assert path.read_bytes().endswith(b"\n")  # no partial row left behind
        assert len(pd.read_csv(path)) == log["rows_written"]

        filler.unlink()  # space again: rows are written after the failed ones, and the file stays whole
        for _ in range(5):
            answered += _predict(server, instances)
        after = _settled(server)["prediction_log"]
        assert after["rows_written"] == log["rows_written"] + 5 * len(instances)
        assert after["rows_written"] + after["rows_lost"] == answered
        frame = pd.read_csv(path, dtype={"customer_id": str})
        assert len(frame) == after["rows_written"] and frame["customer_id"].str.fullmatch(r"c\d+").all()
        assert "writing to" in server.output() and "again" in server.output()
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------ SIGKILL of the parent

def _listening(port: int) -> bool:
    from tests.serving.test_main import LISTEN, _server_side_inodes

    return bool(_server_side_inodes(port, LISTEN))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.slow
def test_sigkill_of_the_parent_takes_the_workers_down_and_frees_the_port(models, tmp_path: Path):
    from tests.serving.test_main import _wait_workers_listening, _workers

    folder = str(models["logistic_regression"].folder)
    port = free_port()
    server = start_server(tmp_path / "first", workers=2, AIP_HTTP_PORT=str(port), AIP_STORAGE_URI=folder)
    workers: list[int] = []
    try:
        _wait_workers_listening(server)
        workers = _workers(server.proc.pid)
        assert len(workers) == 2
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _listening(port) or any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, f"workers still up: {[p for p in workers if _alive(p)]}"
            time.sleep(0.1)
        again = start_server(tmp_path / "second", workers=2, AIP_HTTP_PORT=str(port), AIP_STORAGE_URI=folder)
        try:
            again.wait_health()
            assert again.proc.poll() is None
        finally:
            assert again.stop() in (0, -signal.SIGTERM)
    finally:
        for pid in workers:  # never leave strays, whatever happened
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"

