"""The prediction server over HTTP: contract (default and Vertex routes), parity, bad input, limits, log.

Every test here talks to a real ``python -m serving`` process started with ``AIP_*`` variables.
"""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from churn.onnx_model import PARITY_TOLERANCE
from tests.serving.conftest import ServerProcess, Trained, start_server

VERTEX_PREDICT = "/v1/endpoints/123/deployedModels/456:predict"
VERTEX_HEALTH = "/v1/endpoints/123/deployedModels/456"
MAX_INSTANCES = 200


@pytest.fixture(scope="module")
def lr_server(models: dict[str, Trained], tmp_path_factory: pytest.TempPathFactory):
    """The logistic-regression model on the default routes, prediction log flushed every 0.2 s."""
    work = tmp_path_factory.mktemp("lr-server")
    server = start_server(work, AIP_STORAGE_URI=str(models["logistic_regression"].folder),
                          SERVING_MAX_INSTANCES=str(MAX_INSTANCES), SERVING_LOG_FLUSH_SECONDS="0.2",
                          SERVING_PREDICTION_LOG_DIR=str(work / "predictions"))
    server.wait_health()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hgb_vertex_server(models: dict[str, Trained], tmp_path_factory: pytest.TempPathFactory):
    """The gradient-boosting model on Vertex-style routes."""
    work = tmp_path_factory.mktemp("hgb-server")
    server = start_server(work, AIP_STORAGE_URI=str(models["hist_gradient_boosting"].folder),
                          AIP_PREDICT_ROUTE=VERTEX_PREDICT, AIP_HEALTH_ROUTE=VERTEX_HEALTH,
                          SERVING_MODEL_VERSION="v7", SERVING_PREDICTION_LOG="false")
    server.wait_health(VERTEX_HEALTH)
    yield server
    server.stop()


def _predict_all(server: ServerProcess, route: str, model: Trained, batch: int = 100) -> list[dict]:
    instances = model.instances()
    out = []
    with server.client() as client:
        for start in range(0, len(instances), batch):
            resp = client.post(route, json={"instances": instances[start:start + batch]})
            assert resp.status_code == 200, resp.text
            out.extend(resp.json()["predictions"])
    return out


# ------------------------------------------------------------------------------------------ contract

def test_health_reports_the_verified_model(lr_server: ServerProcess):
    with lr_server.client() as client:
        resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok" and body["model_type"] == "logistic_regression"
    assert body["model_version"].startswith("sha-")  # no registry version known for a plain folder


def test_predict_returns_probability_decision_version_and_echoes_ids(lr_server: ServerProcess, models):
    model = models["logistic_regression"]
    instances = model.instances(3)
    with lr_server.client() as client:
        resp = client.post("/predict", json={"instances": instances, "parameters": {}})
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    assert [p["customer_id"] for p in preds] == [i["customer_id"] for i in instances]
    for p in preds:
        assert 0.0 <= p["churn_probability"] <= 1.0
        assert p["churned"] == (p["churn_probability"] >= model.trained.threshold)
        assert p["threshold"] == pytest.approx(model.trained.threshold)
        assert p["model_version"]


def test_single_customer_object_is_accepted_and_customer_id_is_optional(lr_server: ServerProcess, models):
    instance = models["logistic_regression"].instances(1)[0]
    with lr_server.client() as client:
        batch = client.post("/predict", json={"instances": [instance]}).json()["predictions"][0]
        del instance["customer_id"]
        single = client.post("/predict", json=instance)
    assert single.status_code == 200, single.text
    pred = single.json()["predictions"][0]
    assert pred["customer_id"] is None and pred["churn_probability"] == batch["churn_probability"]


def test_threshold_parameter_overrides_the_decision(lr_server: ServerProcess, models):
    instances = models["logistic_regression"].instances(5)
    with lr_server.client() as client:
        everyone = client.post("/predict", json={"instances": instances, "parameters": {"threshold": 0.0}})
        bad = client.post("/predict", json={"instances": instances, "parameters": {"threshold": 2}})
    assert all(p["churned"] for p in everyone.json()["predictions"])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "parameters", "threshold"]


def test_vertex_style_routes_work_as_given(hgb_vertex_server: ServerProcess, models):
    instances = models["hist_gradient_boosting"].instances(2)
    with hgb_vertex_server.client() as client:
        health = client.get(VERTEX_HEALTH)
        resp = client.post(VERTEX_PREDICT, json={"instances": instances})
        default = client.post("/predict", json={"instances": instances})
    assert health.status_code == 200 and health.json()["model_version"] == "v7"
    assert resp.status_code == 200 and [p["model_version"] for p in resp.json()["predictions"]] == ["v7", "v7"]
    assert default.status_code == 404


def test_schema_route_and_openapi_describe_the_instance(lr_server: ServerProcess, models):
    schema = models["logistic_regression"].schema
    with lr_server.client() as client:
        served = client.get("/schema").json()
        doc = client.get("/openapi.json").json()
    assert [f["name"] for f in served["feature_schema"]["features"]] == schema.names
    instance = doc["components"]["schemas"]["CustomerInstance"]
    assert set(instance["properties"]) == {"customer_id", *schema.names}
    assert set(instance["required"]) == {f.name for f in schema.features if not f.nullable}
    assert instance["additionalProperties"] is False
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/PredictRequest"} in body["anyOf"]
    assert doc["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["maxItems"] == MAX_INSTANCES


# ------------------------------------------------------------------------------------------ parity

@pytest.mark.parametrize("model_type", ["logistic_regression", "hist_gradient_boosting"])
def test_served_probabilities_match_scikit_learn_on_the_whole_validation_set(model_type, models, lr_server,
                                                                             hgb_vertex_server):
    model = models[model_type]
    server, route = ((lr_server, "/predict") if model_type == "logistic_regression"
                     else (hgb_vertex_server, VERTEX_PREDICT))
    served = np.array([p["churn_probability"] for p in _predict_all(server, route, model)])
    expected = model.sklearn_proba(model.validation)
    diff = np.abs(served - expected)
    print(f"\n{model_type}: served vs scikit-learn on {len(diff)} validation rows, max |diff| = {diff.max():.3g}")
    assert diff.max() <= PARITY_TOLERANCE
    assert ((served >= model.trained.threshold) == (expected >= model.trained.threshold)).all()


def test_unseen_category_and_missing_nullable_are_scored_like_scikit_learn(lr_server, models):
    model = models["logistic_regression"]
    frame = model.validation.head(4).copy()
    cat = model.schema.categorical[0]
    nullable = [f.name for f in model.schema.features if f.nullable]
    frame.loc[frame.index[0], cat] = "never-seen-category"
    instances = model.instances(4)
    instances[0][cat] = "never-seen-category"
    for name in nullable:
        frame.loc[frame.index[1], name] = np.nan
        frame.loc[frame.index[2], name] = np.nan
        instances[1][name] = None
        instances[2].pop(name)
    with lr_server.client() as client:
        answer = client.post("/predict", json={"instances": instances}).json()
        served = [p["churn_probability"] for p in answer["predictions"]]
    np.testing.assert_allclose(served, model.sklearn_proba(frame), atol=PARITY_TOLERANCE)


# ------------------------------------------------------------------------------------------ bad input

def _bad_cases(instance: dict, schema) -> list[tuple[str, object, list]]:
    num, cat = schema.numeric[0], schema.categorical[0]
    required = next(f.name for f in schema.features if not f.nullable)

    def edit(**changes):
        inst = dict(instance)
        for k, v in changes.items():
            if v is KeyError:
                inst.pop(k)
            else:
                inst[k] = v
        return {"instances": [instance, inst]}

    return [
        ("unknown field", edit(favourite_colour="blue"), ["body", "instances", 1, "favourite_colour"]),
        ("text for a number", edit(**{num: "12"}), ["body", "instances", 1, num]),
        ("bool for a number", edit(**{num: True}), ["body", "instances", 1, num]),
        ("number for a category", edit(**{cat: 3}), ["body", "instances", 1, cat]),
        ("missing required field", edit(**{required: KeyError}), ["body", "instances", 1, required]),
        ("null for a non-nullable field", edit(**{required: None}), ["body", "instances", 1, required]),
        ("number out of range", edit(**{num: 1e300}), ["body", "instances", 1, num]),
        ("customer_id not text", edit(customer_id=17), ["body", "instances", 1, "customer_id"]),
        ("empty instances", {"instances": []}, ["body", "instances"]),
        ("instances not a list", {"instances": {"a": 1}}, ["body", "instances"]),
        ("unknown top-level key", {"instances": [instance], "extra": 1}, ["body", "extra"]),
        ("array body", [instance], ["body"]),
        ("unknown parameter", {"instances": [instance], "parameters": {"explain": True}},
         ["body", "parameters", "explain"]),
    ]


def test_bad_instances_get_422_per_instance_and_field(lr_server: ServerProcess, models):
    model = models["logistic_regression"]
    instance = model.instances(1)[0]
    with lr_server.client() as client:
        for name, body, loc in _bad_cases(instance, model.schema):
            resp = client.post("/predict", json=body)
            assert resp.status_code == 422, (name, resp.text)
            errors = resp.json()["detail"]
            assert loc in [e["loc"] for e in errors], (name, errors)
            assert resp.json()["error_count"] == len(errors)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_get_422(lr_server: ServerProcess, models, literal: str):
    model = models["logistic_regression"]
    num = model.schema.numeric[0]
    instance = {**model.instances(1)[0], num: "__literal__"}
    raw = json.dumps({"instances": [instance]}).replace('"__literal__"', literal)
    with lr_server.client() as client:
        resp = client.post("/predict", content=raw.encode(), headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"][-1] == num


def test_malformed_json_gets_400(lr_server: ServerProcess):
    with lr_server.client() as client:
        for raw in (b'{"instances": [', b"not json", b"", b'{"instances": [{"a": "\\ud800"}]}'):
            resp = client.post("/predict", content=raw, headers={"content-type": "application/json"})
            assert resp.status_code == 400, (raw, resp.text)


def test_body_over_1_5_mb_gets_413(lr_server: ServerProcess, models):
    instance = models["logistic_regression"].instances(1)[0]
    big = json.dumps({"instances": [instance] * 4000}).encode()
    assert len(big) > 1_572_864

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    with lr_server.client() as client:
        declared = client.post("/predict", content=big, headers={"content-type": "application/json"})
        streamed = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        after = client.get("/health")
    assert declared.status_code == 413 and streamed.status_code == 413
    assert after.status_code == 200


def test_more_instances_than_the_limit_get_413(lr_server: ServerProcess, models):
    instance = models["logistic_regression"].instances(1)[0]
    with lr_server.client() as client:
        at_limit = client.post("/predict", json={"instances": [instance] * MAX_INSTANCES})
        over = client.post("/predict", json={"instances": [instance] * (MAX_INSTANCES + 1)})
    assert at_limit.status_code == 200
    assert over.status_code == 413, over.text


# ------------------------------------------------------------------------------------------ prediction log

def _log_rows(folder: Path) -> tuple[list[Path], list[dict]]:
    files = sorted(folder.glob("*_outputs.csv"))
    rows = [row for f in files for row in csv.DictReader(f.open())]
    return files, rows


def test_predictions_are_logged_per_model_version(lr_server: ServerProcess, models):
    model = models["logistic_regression"]
    instances = [{**inst, "customer_id": f"log-test-{i}"} for i, inst in enumerate(model.instances(7))]
    with lr_server.client() as client:
        version = client.get("/health").json()["model_version"]
        preds = client.post("/predict", json={"instances": instances}).json()["predictions"]
    folder = Path(lr_server.env["SERVING_PREDICTION_LOG_DIR"])
    target = folder / f"{version}_outputs.csv"
    ids = {i["customer_id"] for i in instances}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if target.is_file() and ids <= {r["customer_id"] for r in csv.DictReader(target.open())}:
            break
        time.sleep(0.1)
    rows = {r["customer_id"]: r for r in csv.DictReader(target.open())}
    header = target.read_text().splitlines()[0].split(",")
    assert header == ["timestamp", "model_version", "customer_id", *model.schema.names, "churn_probability",
                      "churned", "threshold"]
    for inst, pred in zip(instances, preds, strict=True):
        row = rows[inst["customer_id"]]
        assert row["model_version"] == version
        assert float(row["churn_probability"]) == pred["churn_probability"]
        assert row["churned"] == str(int(pred["churned"]))
        for name in model.schema.numeric:
            assert (row[name] == "" if inst.get(name) is None else float(row[name]) == inst[name])
        assert row["timestamp"].endswith("+00:00")


def test_buffered_predictions_are_flushed_on_shutdown(models, tmp_path: Path):
    model = models["logistic_regression"]
    server = start_server(tmp_path, AIP_STORAGE_URI=str(model.folder), SERVING_LOG_FLUSH_SECONDS="3600",
                          SERVING_MODEL_VERSION="v1")
    try:
        server.wait_health()
        with server.client() as client:
            for _ in range(3):
                assert client.post("/predict", json={"instances": model.instances(10)}).status_code == 200
        assert not list((tmp_path / "data" / "predictions").glob("*.csv")) or \
            len(_log_rows(tmp_path / "data" / "predictions")[1]) == 0
    finally:
        # uvicorn shuts down gracefully on SIGTERM (lifespan shutdown flushes the log), then re-raises it
        assert server.stop() in (0, -signal.SIGTERM)
    files, rows = _log_rows(tmp_path / "data" / "predictions")
    assert [f.name for f in files] == ["v1_outputs.csv"] and len(rows) == 30


@pytest.mark.parametrize("n", [1, 15, 16, 1000])
@pytest.mark.parametrize("ids", ["plain", "none", "awkward"])
def test_rendered_response_is_what_orjson_writes_for_the_dict(n: int, ids: str):
    import orjson

    from serving.app import render_predictions

    proba = np.random.default_rng(n).random(n)
    proba[:3] = [0.0, 1.0, 0.35][: min(3, n)]
    customer_ids = {"plain": [f"{i:06d}" for i in range(n)], "none": [None] * n,
                    "awkward": [f'a,"b"\\\n{i}é' for i in range(n)]}[ids]
    for threshold in (0.0, 0.35, 1.0):
        expected = orjson.dumps({"predictions": [
            {"customer_id": c, "churn_probability": p, "churned": p >= threshold, "threshold": threshold,
             "model_version": 'v"7'} for c, p in zip(customer_ids, proba.tolist(), strict=True)]})
        assert render_predictions('v"7', customer_ids, proba, threshold) == expected


@pytest.mark.parametrize("threshold", [False, True, "0.5"])
def test_threshold_that_is_not_a_number_gets_422(lr_server: ServerProcess, models, threshold):
    # Found by the fuzz test: lax validation read false as 0.0, silently changing every decision.
    body = {"instances": models["logistic_regression"].instances(1), "parameters": {"threshold": threshold}}
    with lr_server.client() as client:
        response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "parameters", "threshold"]
