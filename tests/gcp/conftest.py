"""Local stand-ins for Google Cloud, reached through the real client libraries.

* Cloud Storage: ``gcp-storage-emulator`` in a subprocess (its own process group) on 127.0.0.1, found by
  google-cloud-storage through ``STORAGE_EMULATOR_HOST``.
* Vertex AI: ``tests/gcp/fake_vertex.py`` in a thread on 127.0.0.1; the SDK reaches it through the
  ordinary ``api_endpoint`` option with the REST transport.
* Credentials: a throwaway service-account key (generated per session, never a real one) whose
  ``token_uri`` points at the fake, via ``GOOGLE_APPLICATION_CREDENTIALS``. Production code is unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from churn.features import read_split
from tests.gcp.fake_vertex import FakeVertex

PROJECT = "acme-ml"
REGION = "europe-west4"
PROJECT_NUMBER = "424242"
BUCKET = "acme-churn"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """A gcp-storage-emulator on 127.0.0.1 (in memory); yields its URL. Stopped with its process group."""
    port = _free_port()
    cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
           "--in-memory", "--project-number", PROJECT_NUMBER, "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                direct.open(f"{url}/storage/v1/b", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"gcp-storage-emulator did not start ({' '.join(cmd)}):\n{err}")
                time.sleep(0.1)
        yield url
    finally:
        _stop_group(proc)


@pytest.fixture(scope="session")
def fake_vertex() -> Iterator[FakeVertex]:
    """The fake Vertex AI REST server, for the whole session (its state is reset per test)."""
    fake = FakeVertex()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def service_account_key(fake_vertex: FakeVertex, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway service-account key file whose token_uri is the fake's /token."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path_factory.mktemp("credentials") / "throwaway-sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "throwaway", "private_key": pem,
        "client_email": f"pipeline-runner@{PROJECT}.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"{fake_vertex.url}/token",
    }))
    return path


@pytest.fixture
def vertex(fake_vertex: FakeVertex, service_account_key: Path, monkeypatch: pytest.MonkeyPatch) -> FakeVertex:
    """The fake with fresh state, credentials pointing at it, and no proxy or metadata-server detours."""
    fake_vertex.reset()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account_key))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return fake_vertex


@pytest.fixture
def gcs(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """STORAGE_EMULATOR_HOST set for this test and an empty bucket ``acme-churn``; yields the bucket name."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    bucket = client.bucket(BUCKET)
    if bucket.exists():
        for blob in client.list_blobs(BUCKET):
            blob.delete()
    else:
        client.create_bucket(BUCKET)
    return BUCKET


def put_raw(bucket: str, prefix: str, files: dict[str, str]) -> str:
    """Uploads ``{name: text}`` under ``gs://bucket/prefix/`` (as ``gcloud storage cp`` would); returns the prefix."""
    from google.cloud import storage

    blobs = storage.Client(project=PROJECT).bucket(bucket)
    for name, text in files.items():
        blobs.blob(f"{prefix}/{name}").upload_from_string(text)
    return f"gs://{bucket}/{prefix}"


RAW_FILES = {"customers.csv": "customer_id,signup_date\nC1,2025-01-01\n",
             "transactions.json": '[{"customer_id": "C1", "amount": 9.5}]\n'}


@pytest.fixture
def resource_manager_lookup(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The one patch of these tests (see the module docstring of test_vertex.py).

    ``PipelineJob.submit`` (google-cloud-aiplatform 2.7.0) checks that the pipeline-root bucket belongs to
    the project: the bucket's project number comes from Cloud Storage (here the emulator, over HTTP), the
    project's number from Resource Manager through a gRPC client that has no endpoint override, so it
    cannot be pointed at a local server. Only that lookup is replaced, answering the emulator's project
    number; the calls it receives are returned for assertions.
    """
    from google.cloud.aiplatform.utils import resource_manager_utils

    asked: list[str] = []

    def get_project_number(project_id: str, credentials: object = None) -> str:
        asked.append(project_id)
        return PROJECT_NUMBER

    monkeypatch.setattr(resource_manager_utils, "get_project_number", get_project_number)
    return asked


@dataclass(frozen=True)
class Processed:
    """Processed splits of a small generated data set."""

    folder: Path
    schema: object


@pytest.fixture(scope="session")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Processed:
    """data_prep + feature_engineering on 800 generated customers."""
    from churn.sample_data import generate, write_raw
    from churn.schema import FeatureSchema
    from components import data_prep, feature_engineering

    root = tmp_path_factory.mktemp("gcp-stages")
    write_raw(generate(800, seed=5), root / "raw")
    data_prep.run(root / "raw", root / "interim", seed=11)
    feature_engineering.run(root / "interim", root / "features", root / "processed", root / "processed")
    return Processed(folder=root / "processed", schema=FeatureSchema.load(root / "processed"))


@pytest.fixture(scope="session")
def model_dirs(processed: Processed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good model folder, and a bad one trained on shuffled labels."""
    import numpy as np

    from components import train

    root = tmp_path_factory.mktemp("gcp-models")
    train_df = read_split(processed.folder / "train.csv", processed.schema)
    validation = read_split(processed.folder / "validation.csv", processed.schema)
    shuffled = train_df.assign(churned=np.random.default_rng(0).permutation(train_df["churned"].to_numpy()))
    out = {}
    for name, frame in (("good", train_df), ("bad", shuffled)):
        trained = train.train_model(frame, validation, processed.schema, candidates=("logistic_regression",))
        out[name] = train.save_model(trained, processed.schema, root / name)
    return out


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """pipeline.main configures logging onto the captured stderr; put the root logger back afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
