"""Fixtures for the monitoring tests (monitoring environment only: ``make test`` runs them there).

Files are written from :mod:`tests.monitoring.synthetic` tables: a baseline ``train.csv`` with its
``feature_schema.json`` and the model's scores on it, a prediction log of the same distribution and one
with drift injected.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churn.schema import FeatureSchema
from tests.monitoring.calibration import scale_feature, shift_category
from tests.monitoring.synthetic import churn_probability, feature_schema, generate, prediction_log

N_ROWS = 12_000


@dataclass(frozen=True)
class DriftFiles:
    """Paths of one baseline and two prediction logs."""

    root: Path
    baseline: Path
    schema: Path
    baseline_scores: Path
    same: Path
    drifted: Path


@pytest.fixture(scope="session")
def schema() -> FeatureSchema:
    return feature_schema()


@pytest.fixture(scope="session")
def drift_files(tmp_path_factory: pytest.TempPathFactory, schema: FeatureSchema) -> DriftFiles:
    """Baseline 12k rows; ``same``: a fresh 12k-row log; ``drifted``: ``monetary_avg`` 10% higher and the
    share of plan ``basic`` 5 points up."""
    root = tmp_path_factory.mktemp("drift")
    base = generate(N_ROWS, seed=101)
    base.to_csv(root / "train.csv", index=False)
    schema.save(root / "feature_schema.json")
    pd.DataFrame({"churn_probability": churn_probability(base)}).to_csv(root / "train_scores.csv", index=False)
    prediction_log(generate(N_ROWS, seed=202)).to_csv(root / "v1_outputs.csv", index=False)
    rng = np.random.default_rng(7)
    drifted = shift_category(scale_feature(generate(N_ROWS, seed=303), "monetary_avg", rng), "plan", "basic", 0.05, rng)
    prediction_log(drifted, model_version="v1").to_csv(root / "v1_drifted_outputs.csv", index=False)
    return DriftFiles(root=root, baseline=root / "train.csv", schema=root / "feature_schema.json",
                      baseline_scores=root / "train_scores.csv", same=root / "v1_outputs.csv",
                      drifted=root / "v1_drifted_outputs.csv")


@pytest.fixture()
def fake_pipeline_python(tmp_path: Path) -> Path:
    """A stand-in for ``.venv/bin/python``: records its arguments and working folder, exits with $FAKE_EXIT."""
    script = tmp_path / "fake-python"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_ARGS_FILE"\npwd >> "$FAKE_ARGS_FILE"\n'
                      'echo "training pipeline output"\nexit "${FAKE_EXIT:-0}"\n')
    script.chmod(0o755)
    return script


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with two raw folders (``data/raw`` and a newer ``data/raw/2026-07-01``) as cwd."""
    root = tmp_path / "project"
    for folder in (root / "data" / "raw", root / "data" / "raw" / "2026-07-01"):
        folder.mkdir(parents=True)
        (folder / "customers.csv").write_text("customer_id,signup_date\n")
        (folder / "transactions.json").write_text("")
    newer = root / "data" / "raw" / "2026-07-01" / "transactions.json"
    older = root / "data" / "raw" / "transactions.json"
    import os

    os.utime(older, (1_700_000_000, 1_700_000_000))
    os.utime(root / "data" / "raw" / "customers.csv", (1_700_000_000, 1_700_000_000))
    os.utime(newer, (1_800_000_000, 1_800_000_000))
    monkeypatch.chdir(root)
    monkeypatch.setenv("FAKE_ARGS_FILE", str(tmp_path / "fake-args.txt"))
    return root


GCS_PROJECT_NUMBER = "424242"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator (installed in the main environment, ``.venv``) on a free loopback port, in memory,
    in its own process group; yields its URL and stops the group afterwards."""
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    python = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"gcp-storage-emulator runs from the main environment, and {python} is missing (make setup)")
    port = _free_port()
    cmd = [str(python), "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
           "--in-memory", "--project-number", GCS_PROJECT_NUMBER, "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                direct.open(f"{url}/storage/v1/b", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                    pytest.fail(f"gcp-storage-emulator did not start ({' '.join(cmd)}):\n{err}")
                time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture()
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An empty bucket ``acme-churn`` in the emulator, with ``STORAGE_EMULATOR_HOST`` set for the code under test."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme-ml")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    client = storage.Client(project="acme-ml", credentials=AnonymousCredentials())
    bucket = client.bucket("acme-churn")
    if bucket.exists():
        for blob in client.list_blobs("acme-churn"):
            blob.delete()
    else:
        client.create_bucket("acme-churn")
    return bucket
