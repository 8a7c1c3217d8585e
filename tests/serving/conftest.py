"""Fixtures for serving tests: trained model folders (both model types) and real server processes.

Servers are started as the image and ``make serve`` start them (``python -m serving``) with ``AIP_*``
variables, on a free loopback port, and called over HTTP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from churn.features import read_split
from churn.model_io import model_input
from churn.schema import FeatureSchema
from components import data_prep, feature_engineering, train
from components.export import request_instances

ROOT = Path(__file__).resolve().parents[2]
MODEL_TYPES = ("logistic_regression", "hist_gradient_boosting")


@dataclass(frozen=True)
class Trained:
    """A model folder and what it was trained on."""

    folder: Path
    trained: train.TrainedModel
    schema: FeatureSchema
    validation: Any  # DataFrame

    def instances(self, n: int | None = None) -> list[dict[str, Any]]:
        frame = self.validation if n is None else self.validation.head(n)
        return request_instances(frame, self.schema)

    def sklearn_proba(self, frame: Any) -> Any:
        return self.trained.pipeline.predict_proba(model_input(frame, self.schema))[:, 1]


@pytest.fixture(scope="session")
def serving_processed(sample_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeatureSchema]:
    """data_prep + feature_engineering on the 1,500 generated customers."""
    root = tmp_path_factory.mktemp("serving-stages")
    data_prep.run(sample_raw_dir, root / "interim", seed=11)
    feature_engineering.run(root / "interim", root / "features", root / "processed", root / "processed")
    return root / "processed", FeatureSchema.load(root / "processed")


@pytest.fixture(scope="session")
def models(serving_processed: tuple[Path, FeatureSchema],
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    """One model folder per model type, written by ``train.save_model`` (which exports ONNX + manifest)."""
    folder, schema = serving_processed
    tr = read_split(folder / "train.csv", schema)
    va = read_split(folder / "validation.csv", schema)
    out = {}
    for name in MODEL_TYPES:
        trained = train.train_model(tr, va, schema, seed=3, candidates=(name,))
        model_dir = train.save_model(trained, schema, tmp_path_factory.mktemp(name))
        out[name] = Trained(model_dir, trained, schema, va)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A ``python -m serving`` process."""

    proc: subprocess.Popen
    port: int
    log: Path
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited:\n{self.output()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server never listened:\n{self.output()}")

    def wait_health(self, route: str = "/health", status: int = 200, timeout: float = 60.0,
                    version: str | None = None) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        with self.client(timeout=5) as client:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"server exited:\n{self.output()}"
                try:
                    last = client.get(route)
                    if last.status_code == status and (version is None or last.json().get("model_version") == version):
                        return last.json()
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"health never became {status} ({version}); last: "
                             f"{last and (last.status_code, last.text)}\n{self.output()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(workdir: Path, *, workers: int = 1, **env: str) -> ServerProcess:
    """Starts ``python -m serving`` in ``workdir`` with extra environment variables (``AIP_*``, ``SERVING_*``)."""
    port = int(env.pop("AIP_HTTP_PORT", free_port()))
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "SERVING_"))}
    full_env.update({"AIP_HTTP_PORT": str(port), "SERVING_WORKERS": str(workers), "SERVING_HOST": "127.0.0.1",
                     "PYTHONUNBUFFERED": "1", **env})
    log = workdir / f"server-{port}.log"
    proc = subprocess.Popen([sys.executable, "-m", "serving"], cwd=workdir, env=full_env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = ServerProcess(proc, port, log, full_env)
    server.wait_listening()
    return server


@pytest.fixture
def server_factory(tmp_path: Path):
    """Starts servers for one test and stops them after it."""
    started: list[ServerProcess] = []

    def make(workdir: Path | None = None, **env: str) -> ServerProcess:
        server = start_server(workdir or tmp_path / f"srv{len(started)}", **env)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
