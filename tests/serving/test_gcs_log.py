"""The prediction log in Cloud Storage (``SERVING_PREDICTION_LOG_URI``), through google-cloud-storage against
gcp-storage-emulator: part objects' names and content, the flush on SIGTERM, and outages that never fail a
request (rows wait, are counted, and are written once Cloud Storage is back, within the buffer).

Servers are real ``python -m serving`` processes; the emulator runs in its own process group on loopback.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.logformat import header
from serving.prediction_log import GcsPredictionLog, part_name
from tests.gcp.conftest import _free_port, _stop_group
from tests.serving.conftest import ServerProcess, Trained, start_server
from tests.serving.test_instance_forms import _post

BUCKET = "churn-logs"
PREFIX = "predictions"
PART = re.compile(rf"^{PREFIX}/v7/date=(\d{{4}}-\d{{2}}-\d{{2}})/part-[A-Za-z0-9.-]+-\d+-[0-9a-f]{{6}}-(\d{{6}})\.csv$")


def _start_emulator(port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
           "--in-memory", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 30
    while True:
        try:
            direct.open(f"http://127.0.0.1:{port}/storage/v1/b", timeout=1).read()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop_group(proc)
                pytest.fail("gcp-storage-emulator did not start")
            time.sleep(0.1)


def _client(host: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    os.environ["STORAGE_EMULATOR_HOST"] = host  # read when the client is built
    try:
        return storage.Client(project="test", credentials=AnonymousCredentials())
    finally:
        del os.environ["STORAGE_EMULATOR_HOST"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    proc = _start_emulator(port := _free_port())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop_group(proc)


@pytest.fixture
def bucket(emulator: str):
    client = _client(emulator)
    found = client.bucket(BUCKET)
    if found.exists():
        for blob in client.list_blobs(BUCKET):
            blob.delete()
    else:
        client.create_bucket(BUCKET)
    return client


def _parts(client) -> dict[str, bytes]:
    return {b.name: b.download_as_bytes() for b in client.list_blobs(BUCKET) if "/part-" in b.name}  # not model.json


def _read_parts(parts: dict[str, bytes]) -> pd.DataFrame:
    frames = [pd.read_csv(io.BytesIO(data), dtype={"customer_id": str}, keep_default_na=False, na_values=[""])
              for data in parts.values()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _wait_rows(client, rows: int, timeout: float = 60.0) -> dict[str, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        parts = _parts(client)
        if sum(data.count(b"\n") - 1 for data in parts.values()) >= rows or time.monotonic() > deadline:
            return parts
        time.sleep(0.2)


def _log_server(tmp_path: Path, trained: Trained, emulator: str, **env: str) -> ServerProcess:
    server = start_server(tmp_path, AIP_STORAGE_URI=str(trained.folder), STORAGE_EMULATOR_HOST=emulator,
                          SERVING_PREDICTION_LOG_URI=f"gs://{BUCKET}/{PREFIX}", SERVING_MODEL_VERSION="v7",
                          NO_PROXY="127.0.0.1,localhost", **env)
    server.wait_health()
    return server


def _health(server: ServerProcess) -> dict:
    with urllib.request.urlopen(f"{server.base_url}/health", timeout=10) as response:
        return json.loads(response.read())


def _check_against_requests(frame: pd.DataFrame, trained: Trained, sent: list[tuple[list, dict]]) -> None:
    """The logged rows are the requests sent: features, ids (empty for arrays) and the answered probabilities."""
    names = list(trained.schema.names)
    expected = []
    for instances, answer in sent:
        for inst, prediction in zip(instances, answer["predictions"], strict=True):
            values = dict(zip(names, inst, strict=True)) if isinstance(inst, list) else inst
            expected.append({"customer_id": prediction["customer_id"], **{n: values.get(n) for n in names},
                             "churn_probability": prediction["churn_probability"]})
    want = pd.DataFrame(expected)
    key = ["churn_probability", "customer_id"]  # parts of several workers come in any order
    got = frame.sort_values(key, kind="stable").reset_index(drop=True)
    want = want.sort_values(key, kind="stable").reset_index(drop=True)
    assert len(got) == len(want)
    assert got["customer_id"].fillna("").tolist() == want["customer_id"].fillna("").tolist()
    np.testing.assert_array_equal(got["churn_probability"].to_numpy(), want["churn_probability"].to_numpy())
    for name in trained.schema.numeric:
        np.testing.assert_array_equal(got[name].to_numpy(dtype=float), want[name].to_numpy(dtype=float))
    for name in trained.schema.categorical:
        assert got[name].fillna("").tolist() == want[name].fillna("").tolist()


def _send(server: ServerProcess, trained: Trained) -> list[tuple[list, dict]]:
    objects = trained.instances(40)
    arrays = [[inst.get(n) for n in trained.schema.names] for inst in trained.instances(70)[40:]]
    sent = []
    for instances in (objects[:25], arrays, objects[25:]):
        status, answer = _post(f"{server.base_url}/predict", {"instances": instances})
        assert status == 200, answer
        sent.append((instances, answer))
    return sent


def test_parts_are_written_under_version_and_date_with_the_local_files_columns(models, bucket, emulator, tmp_path):
    trained = models["hist_gradient_boosting"]
    server = _log_server(tmp_path, trained, emulator, SERVING_LOG_FLUSH_SECONDS="0.2")
    try:
        sent = _send(server, trained)
        parts = _wait_rows(bucket, 70)
    finally:
        server.stop()
    assert parts, server.output()
    columns = ",".join(header(tuple(trained.schema.names))).encode() + b"\n"
    for name, data in parts.items():
        match = PART.match(name)
        assert match, name
        assert data.startswith(columns), "each part has the header"
        frame = pd.read_csv(io.BytesIO(data))
        assert set(frame["timestamp"].str[:10]) == {match.group(1)}, "rows of the part's (UTC) day"
        assert set(frame["model_version"]) == {"v7"}
    frame = _read_parts(parts)
    _check_against_requests(frame, trained, sent)
    assert (frame["customer_id"].isna()).sum() == 30  # the arrays carry no id


@pytest.mark.slow
def test_sigterm_writes_the_rows_still_in_memory(models, bucket, emulator, tmp_path):
    trained = models["logistic_regression"]
    server = _log_server(tmp_path, trained, emulator, SERVING_LOG_FLUSH_SECONDS="3600")
    sent = _send(server, trained)
    assert _health(server)["prediction_log"]["rows_pending"] == 70
    assert _parts(bucket) == {}
    server.stop()  # SIGTERM, as Vertex AI stops containers
    assert server.proc.returncode is not None
    parts = _parts(bucket)
    assert len(parts) == 1 and all(PART.match(name) for name in parts)
    _check_against_requests(_read_parts(parts), trained, sent)


@pytest.mark.slow
def test_an_outage_never_fails_a_request_and_rows_are_written_when_storage_is_back(models, tmp_path):
    trained = models["logistic_regression"]
    port = _free_port()  # nothing listens there yet: Cloud Storage is unreachable
    emulator = f"http://127.0.0.1:{port}"
    server = _log_server(tmp_path, trained, emulator, SERVING_LOG_FLUSH_SECONDS="0.2")
    proc = None
    try:
        sent = _send(server, trained)
        deadline = time.monotonic() + 30
        while (log := _health(server)["prediction_log"])["last_error"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        health = _health(server)
        assert health["status"] == "degraded", health
        assert health["prediction_log"]["rows_pending"] == 70 and health["prediction_log"]["rows_lost"] == 0
        assert "Connection" in health["prediction_log"]["last_error"], log
        assert f"prediction log: cannot write gs://{BUCKET}/{PREFIX}/v7/date=" in server.output()
        proc = _start_emulator(port)
        client = _client(emulator)
        client.create_bucket(BUCKET)
        parts = _wait_rows(client, 70)
        _check_against_requests(_read_parts(parts), trained, sent)
        deadline = time.monotonic() + 10
        while _health(server)["prediction_log"]["rows_pending"] and time.monotonic() < deadline:
            time.sleep(0.1)
        log = _health(server)["prediction_log"]
        assert (log["rows_written"], log["rows_pending"], log["rows_lost"]) == (70, 0, 0)
        assert "prediction log: writing to gs://" in server.output()
    finally:
        server.stop()
        if proc is not None:
            _stop_group(proc)


def test_an_outage_longer_than_the_buffer_drops_the_oldest_rows_and_counts_them(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_free_port()}")  # nobody there
    log = GcsPredictionLog(f"gs://{BUCKET}/{PREFIX}", flush_seconds=3600, max_pending_rows=1000, close_seconds=0.5)
    for i in range(3):
        log.record("v7", ("x",), [{"customer_id": f"c{i}-{j}", "x": float(j)} for j in range(600)],
                   np.full(600, 0.25), 0.5)
        log.flush()  # becomes a part, fails to upload, waits for the next try
        status = log.status()
        assert status["rows_pending"] <= 1000 and status["status"] == "degraded"
    assert (log.dropped, log.status()["rows_pending"]) == (1200, 600)
    log.close()  # cannot write the last part within close_seconds: counted lost, never silently gone
    status = log.status()
    assert (status["rows_written"], status["rows_pending"], status["rows_lost"]) == (0, 0, 1800)


def test_part_names_are_safe_and_sortable():
    assert (part_name("a/b/", "v 1/x", "2026-12-02", "host-1-abc123", 7)
            == "a/b/v_1_x/date=2026-12-02/part-host-1-abc123-000007.csv")
    assert part_name("", "v3", "2026-12-02", "w", 0) == "v3/date=2026-12-02/part-w-000000.csv"
