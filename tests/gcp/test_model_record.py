"""Contract 2: the server logging to gs:// writes ``PREFIX/<model_version>/model.json`` naming its model folder.

A real ``python -m serving`` (two workers) loads a model folder from gs:// (``AIP_STORAGE_URI``, as on
Vertex AI) and logs to ``SERVING_PREDICTION_LOG_URI``; gcp-storage-emulator stands in for Cloud Storage.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from churn.storage import upload_dir
from serving.model_record import record_in_background, record_name
from tests.gcp.conftest import PROJECT
from tests.serving.conftest import start_server


def _wait_object(bucket: str, name: str, timeout: float = 60.0) -> bytes:
    from google.cloud import storage

    blob = storage.Client(project=PROJECT).bucket(bucket).blob(name)
    deadline = time.monotonic() + timeout
    while not blob.exists():
        assert time.monotonic() < deadline, f"gs://{bucket}/{name} was not written"
        time.sleep(0.2)
    return blob.download_as_bytes()


@pytest.mark.slow
def test_the_server_records_the_folder_it_serves_beside_its_log(gcs, gcs_emulator, model_dirs, tmp_path) -> None:
    from google.cloud import storage

    model_uri = f"gs://{gcs}/models/churn-model/20261202T000000Z-abc"
    upload_dir(model_dirs["good"], model_uri)
    server = start_server(tmp_path / "srv", workers=2, AIP_STORAGE_URI=model_uri, STORAGE_EMULATOR_HOST=gcs_emulator,
                          SERVING_PREDICTION_LOG_URI=f"gs://{gcs}/predictions", SERVING_MODEL_VERSION="v4",
                          NO_PROXY="127.0.0.1,localhost")
    try:
        health = server.wait_health()
        record = json.loads(_wait_object(gcs, "predictions/v4/model.json"))
    finally:
        server.stop()
    assert (record["model_version"], record["model_uri"], record["model_name"]) == ("v4", model_uri, "churn-model")
    manifest = json.loads((model_dirs["good"] / "manifest.json").read_text())
    assert record["schema_version"] == manifest["feature_schema"]["version"]
    assert record["written"].endswith("+00:00")
    assert (health["model_version"], health["source"]) == ("v4", model_uri)
    names = [b.name for b in storage.Client(project=PROJECT).list_blobs(gcs, prefix="predictions/")]
    assert names == ["predictions/v4/model.json"]  # one record for both workers; no rows logged yet


def test_a_failed_write_is_retried_until_storage_answers(gcs, caplog) -> None:
    from google.cloud import storage

    client = storage.Client(project=PROJECT)
    later = "acme-churn-created-later"
    if client.bucket(later).exists():
        for blob in client.list_blobs(later):
            blob.delete()
        client.bucket(later).delete()
    model = SimpleNamespace(version="v9", name="churn-model", source="gs://acme-churn/models/x",
                            schema=SimpleNamespace(version="s1"))
    thread = record_in_background(f"gs://{later}/logs/", model, first_retry=0.2, give_up_seconds=30)
    time.sleep(1.0)  # a few attempts against a bucket that does not exist yet
    assert thread.is_alive() and "retrying in" in caplog.text
    client.create_bucket(later)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert json.loads(_wait_object(later, "logs/v9/model.json", timeout=5))["model_uri"] == "gs://acme-churn/models/x"


@pytest.mark.parametrize(("prefix", "version", "name"), [("predictions", "v3", "predictions/v3/model.json"),
                                                          ("", "v3", "v3/model.json"),
                                                          ("a/b/", "v 3/x", "a/b/v_3_x/model.json")])
def test_record_names_follow_the_part_names(prefix: str, version: str, name: str) -> None:
    from serving.prediction_log import part_name

    assert record_name(prefix, version) == name
    assert part_name(prefix, version, "2026-12-02", "w", 0).rsplit("/date=", 1)[0] == name.rsplit("/", 1)[0]
