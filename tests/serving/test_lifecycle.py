"""Model lifecycle in a running server: health before and after loading, a tampered folder keeps the server
unhealthy, and a moved ``champion`` alias is picked up without a failed request."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from churn.registry import CHAMPION, get_registry
from tests.serving.conftest import Trained


def _tamper(folder: Path, name: str) -> None:
    path = folder / name
    data = bytearray(path.read_bytes())
    if name.endswith(".json"):
        path.write_text(path.read_text().replace('"version": 1', '"version": 2', 1))
    else:
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["model.onnx", "feature_schema.json", "model.joblib"])
@pytest.mark.slow
def test_tampered_model_folder_keeps_the_server_unhealthy(models: dict[str, Trained], tmp_path: Path,
                                                          server_factory, name: str):
    folder = tmp_path / "model"
    shutil.copytree(models["logistic_regression"].folder, folder)
    _tamper(folder, name)
    server = server_factory(AIP_STORAGE_URI=str(folder), SERVING_POLL_SECONDS="0.2")
    body = server.wait_health(status=503)
    while "ManifestError" not in (body.get("error") or ""):
        body = server.wait_health(status=503)
    assert body["status"] == "unavailable" and name in body["error"]
    time.sleep(1.0)  # retried every 0.2 s: still refused
    with server.client() as client:
        assert client.get("/health").status_code == 503
        resp = client.post("/predict", json={"instances": models["logistic_regression"].instances(1)})
    assert resp.status_code == 503 and name in resp.json()["detail"]


@pytest.mark.slow
def test_registry_champion_health_before_load_and_switch_without_failed_requests(models: dict[str, Trained],
                                                                                 tmp_path: Path, server_factory):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    registry = get_registry(uri)
    server = server_factory(SERVING_REGISTRY_URI=uri, SERVING_POLL_SECONDS="0.3",
                            SERVING_PREDICTION_LOG_DIR=str(tmp_path / "predictions"), SERVING_LOG_FLUSH_SECONDS="0.2")
    # Before any champion exists: listening, but 503 with the reason.
    body = server.wait_health(status=503)
    while "alias" not in (body.get("error") or ""):
        body = server.wait_health(status=503)
    assert "no 'churn-model' version has the alias 'champion'" in body["error"]

    v1 = registry.register("churn-model", models["logistic_regression"].folder)
    registry.set_alias("churn-model", CHAMPION, v1.version)
    assert server.wait_health(version=f"v{v1.version}")["model_type"] == "logistic_regression"

    instances = models["logistic_regression"].instances(20)
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            while not stop.is_set():
                resp = client.post("/predict", json={"instances": instances})
                seen.append((resp.status_code, resp.json()["predictions"][0]["model_version"]
                             if resp.status_code == 200 else resp.text))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(0.5)
        v2 = registry.register("churn-model", models["hist_gradient_boosting"].folder)
        registry.set_alias("churn-model", CHAMPION, v2.version)
        switched_at = time.monotonic()
        assert server.wait_health(version=f"v{v2.version}", timeout=60)["model_type"] == "hist_gradient_boosting"
        delay = time.monotonic() - switched_at
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    failed = [s for s in seen if s[0] != 200]
    assert not failed, failed[:3]
    versions = [v for _, v in seen]
    assert versions[0] == f"v{v1.version}" and versions[-1] == f"v{v2.version}"
    first_new = versions.index(f"v{v2.version}")
    assert set(versions[first_new:]) == {f"v{v2.version}"}, "went back to the old model"
    print(f"\nchampion switch: {len(seen)} requests, 0 failed; new version served {delay:.1f} s after the alias moved")

    server.stop()
    logged = {p.name for p in (tmp_path / "predictions").glob("*_outputs.csv")}
    assert logged == {f"v{v1.version}_outputs.csv", f"v{v2.version}_outputs.csv"}
