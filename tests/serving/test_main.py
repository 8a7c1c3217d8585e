"""``python -m serving`` with several workers: how connections spread over them, port conflicts, shutdown.

Which worker holds a connection is read from ``/proc``: each worker's socket inodes (``/proc/<pid>/fd``)
against the established connections on the server's port (``/proc/net/tcp`` and ``tcp6``).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serving.conftest import ServerProcess, Trained, start_server
from tests.serving.test_app import _log_rows

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; SO_REUSEPORT balancing")

ESTABLISHED, LISTEN = "01", "0A"


def _server_side_inodes(port: int, state: str = ESTABLISHED) -> set[int]:
    """Socket inodes in ``state`` whose local end is ``port`` (established connections by default)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == state:
                    inodes.add(int(fields[9]))
    return inodes


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _workers(parent: int) -> list[int]:
    """uvicorn's worker processes: the parent's children started by multiprocessing's spawn."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def connections_per_worker(parent: int, port: int) -> dict[int, int]:
    """Established connections on ``port`` held by each worker of the server process ``parent``."""
    established = _server_side_inodes(port)
    return {pid: len(_socket_inodes(pid) & established) for pid in _workers(parent)}


def _wait_workers_listening(server: ServerProcess, workers: int = 2, timeout: float = 60.0) -> None:
    """Until every worker has started its app and listens: a worker's own socket receives connections only
    from then on, so connections opened earlier would all go to the workers already up."""
    deadline = time.monotonic() + timeout
    while True:
        pids = _workers(server.proc.pid)
        listening = _server_side_inodes(server.port, LISTEN)
        if (len(pids) == workers and all(_socket_inodes(pid) & listening for pid in pids)
                and server.output().count("Application startup complete.") >= workers):
            return
        assert time.monotonic() < deadline, f"workers never all listened:\n{server.output()}"
        time.sleep(0.1)


def _wait_healthy(conn: http.client.HTTPConnection, timeout: float = 60.0) -> None:
    """Until ``/health`` answers 200 on this keep-alive connection, i.e. its worker has loaded the model."""
    deadline = time.monotonic() + timeout
    while True:
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        assert not response.will_close
        if response.status == 200:
            return
        assert time.monotonic() < deadline, f"health stayed {response.status}"
        time.sleep(0.1)


@pytest.mark.slow
def test_bursts_of_keep_alive_connections_spread_over_the_workers(models: dict[str, Trained], tmp_path: Path):
    # With one listening socket shared by the workers, whichever worker woke first accepted most or all of
    # a burst and kept it (keep-alive) while the other idled: a worker got fewer than 4 of 32 in 12 of 30
    # bursts, and this test failed 7 times in 10. Hashed over the workers' own sockets, fewer than 4 of 32
    # (binomial) has probability about 3e-6 per burst.
    server = start_server(tmp_path, workers=2, AIP_STORAGE_URI=str(models["logistic_regression"].folder))
    try:
        _wait_workers_listening(server)
        for _ in range(3):
            conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(32)]
            try:
                for conn in conns:  # all connected before any request: the burst a reconnecting frontend opens
                    conn.connect()
                for conn in conns:
                    _wait_healthy(conn)
                per_worker = connections_per_worker(server.proc.pid, server.port)
            finally:
                for conn in conns:
                    conn.close()
            assert len(per_worker) == 2 and sum(per_worker.values()) == len(conns), per_worker
            assert min(per_worker.values()) >= 4, f"one worker took (almost) every connection: {per_worker}"
    finally:
        server.stop()


@pytest.mark.slow
def test_a_port_in_use_stops_the_server_at_once_with_a_clear_message(models: dict[str, Trained], tmp_path: Path):
    # Also when the port's holder is another of our servers: a SO_REUSEPORT bind alone would join it.
    first = start_server(tmp_path / "first", workers=2, AIP_STORAGE_URI=str(models["logistic_regression"].folder))
    try:
        env = {**first.env}
        second = subprocess.run([sys.executable, "-m", "serving"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        assert second.returncode == 3, second  # uvicorn's STARTUP_FAILURE
        assert f"port {first.port}" in second.stderr and "Address already in use" in second.stderr
        assert first.proc.poll() is None
    finally:
        first.stop()


@pytest.mark.slow
def test_every_worker_flushes_its_predictions_on_shutdown(models: dict[str, Trained], tmp_path: Path):
    model = models["logistic_regression"]
    server = start_server(tmp_path, workers=2, AIP_STORAGE_URI=str(model.folder), SERVING_LOG_FLUSH_SECONDS="3600",
                          SERVING_MODEL_VERSION="v1")
    conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(16)]
    try:
        _wait_workers_listening(server)
        body = json.dumps({"instances": model.instances(5)})
        for conn in conns:
            _wait_healthy(conn)
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        per_worker = connections_per_worker(server.proc.pid, server.port)
        assert len(per_worker) == 2 and min(per_worker.values()) > 0, per_worker  # both have rows buffered
    finally:
        for conn in conns:
            conn.close()
        # SIGTERM to the parent: it stops the workers, each shuts down gracefully and flushes its log
        assert server.stop() in (0, -signal.SIGTERM)
    files, rows = _log_rows(tmp_path / "data" / "predictions")
    assert [f.name for f in files] == ["v1_outputs.csv"] and len(rows) == 16 * 5


def test_invalid_settings_are_one_line_each_and_exit_2_without_a_traceback(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "SERVING_"))}
    env.update(SERVING_PREDICTION_LOG_URI=str(tmp_path / "log"), SERVING_EXTRA_FIELDS="allow", AIP_HTTP_PORT="80a")
    proc = subprocess.run([sys.executable, "-m", "serving"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert any(line.startswith("python -m serving: SERVING_PREDICTION_LOG_URI=") and "gs://BUCKET" in line
               for line in lines)
    assert any("SERVING_EXTRA_FIELDS='allow'" in line and "'forbid' or 'ignore'" in line for line in lines)
    assert any(line.startswith("python -m serving: AIP_HTTP_PORT='80a'") for line in lines)


def test_help_explains_every_setting_and_starts_nothing(tmp_path: Path):
    from serving.settings import Settings

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "SERVING_"))}
    env["SERVING_HTTP_PORT"] = "1"  # a server started by mistake would fail to bind this port, not exit 0
    proc = subprocess.run([sys.executable, "-m", "serving", "--help"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m serving")
    for name in Settings.model_fields:
        assert f"SERVING_{name.upper()}" in proc.stdout, name
    assert "AIP_STORAGE_URI or SERVING_STORAGE_URI" in proc.stdout and "``" not in proc.stdout
    assert not list(tmp_path.iterdir())  # no log folder, no model cache: nothing ran

    wrong = subprocess.run([sys.executable, "-m", "serving", "--port", "9"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2 and "unrecognized arguments: --port" in wrong.stderr
