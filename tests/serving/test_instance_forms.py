"""Vertex AI Batch Prediction's instance forms: arrays of feature values in schema order, and objects with
extra fields when the server is told to ignore them.

Parsing is checked on both validation paths (the msgspec fast path and the pydantic models must agree, as
in test_columns.py); the served answers through real ``python -m serving`` processes.
"""

from __future__ import annotations

import csv
import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churn.logformat import Layout, header
from serving.columns import ColumnParser
from serving.model import RequestError, ServedModel
from serving.schemas import request_models
from tests.serving.conftest import Trained, start_server
from tests.serving.test_columns import BASE, MAX_INSTANCES, MODEL, SCHEMA, _batch, _check, _instance, _same

NAMES = SCHEMA.names  # tenure_days, plan, age, region, spend-90d


def _array(instance: dict[str, Any]) -> list[Any]:
    return [instance.get(name) for name in NAMES]


def _ignoring_model() -> ServedModel:
    return ServedModel(name="m", version="v1", source="-", folder=Path("."), schema=SCHEMA, threshold=0.5,
                       manifest={}, session=None, requests=request_models(SCHEMA, MAX_INSTANCES, "ignore"),
                       fast=ColumnParser(SCHEMA, MAX_INSTANCES, "ignore"), log_layout=Layout.for_schema(SCHEMA))


def _errors(body: bytes, model: ServedModel = MODEL) -> list[dict[str, Any]]:
    with pytest.raises(RequestError) as err:
        model.parse(body)
    assert err.value.status == 422, err.value.detail
    return err.value.detail


# -------------------------------------------------------------------------------------------- arrays

def test_arrays_take_the_fast_path_and_give_the_objects_values_without_ids():
    objects = [BASE, _instance(customer_id="c-2", plan="pro", age=None, region=None)]
    as_objects = MODEL.parse(_batch(*objects)).columns
    body = _batch(*map(_array, objects))
    assert _check(body)
    as_arrays = MODEL.parse(body).columns
    assert as_arrays.ids == [None, None]
    assert _same(as_arrays, type(as_objects)(as_objects.numeric, as_objects.categorical, [None, None]))


def test_one_request_may_mix_objects_and_arrays_in_order():
    body = _batch(BASE, _array(_instance(plan="pro")), _instance(customer_id="c-3"))
    assert _check(body)
    columns = MODEL.parse(body).columns
    assert columns.ids == ["c-1", None, "c-3"]
    assert columns.categorical[:, SCHEMA.categorical.index("plan")].tolist() == ["basic", "pro", "basic"]


def test_an_array_instance_reads_back_as_the_instance_dict():
    assert MODEL.parse(_batch(_array(BASE))).instances == [{**BASE, "customer_id": None}]


BAD_ARRAYS = {
    "too short": ([10.5, "basic", 30.0], "array_length", None),
    "too long": ([*_array(BASE), 1], "array_length", None),
    "empty": ([], "array_length", None),
    "text for a number": (["ten", "basic", 30.0, "north", 0.0], "float_type", 0),
    "bool for a number": ([True, "basic", 30.0, "north", 0.0], "float_type", 0),
    "number for a category": ([10.5, 3, 30.0, "north", 0.0], "string_type", 1),
    "null where not nullable": ([10.5, "basic", 30.0, "north", None], "float_type", 4),
    "nested junk": ([10.5, ["basic"], {"a": [1]}, "north", 0.0], "string_type", 1),
    "over the range": ([10.5, "basic", 30.0, "north", 1e13], "less_than_equal", 4),
}


@pytest.mark.parametrize("name", BAD_ARRAYS)
def test_bad_arrays_are_422_naming_the_instance_the_position_and_the_feature(name: str):
    array, kind, position = BAD_ARRAYS[name]
    body = _batch(BASE, array)
    _check(body)  # both paths give the same answer
    errors = _errors(body)
    assert errors[0]["type"] == kind, errors
    if position is None:
        assert errors == [errors[0]], "one error for an array of the wrong length, not one per position"
        assert errors[0]["loc"] == ["body", "instances", 1]
        assert f"has {len(array)} values; the model takes {len(NAMES)}" in errors[0]["msg"]
        assert ", ".join(NAMES) in errors[0]["msg"]
    else:
        assert errors[0]["loc"] == ["body", "instances", 1, position]
        assert errors[0]["msg"].startswith(f"{NAMES[position]} (position {position}): ")


def test_an_instance_neither_object_nor_array_says_both_forms_are_accepted():
    errors = _errors(_batch(BASE, 7))
    assert errors[0]["loc"] == ["body", "instances", 1] and errors[0]["type"] == "instance_type"
    assert "or an array of the 5 feature values" in errors[0]["msg"]


def test_object_errors_keep_their_field_location():
    errors = _errors(_batch(_instance(plan=3)))
    assert errors[0]["loc"] == ["body", "instances", 0, "plan"]


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.integers(min_value=-10**15, max_value=10**15) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                        max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None, database=None)
@given(instances=st.lists(st.lists(json_values, max_size=7), min_size=1, max_size=3))
def test_any_array_is_scored_or_refused_with_its_instance_and_position(instances):
    body = _batch(*instances)
    _check(body)
    try:
        MODEL.parse(body)
    except RequestError as err:
        assert err.status == 422, err.detail
        for error in err.detail:
            assert error["loc"][:2] == ["body", "instances"] and isinstance(error["loc"][2], int), error
            assert len(error["loc"]) == 3 or error["msg"].startswith(f"{NAMES[error['loc'][3]]} (position ")


# ------------------------------------------------------------------------------------- extra fields

def test_extra_fields_are_refused_by_default_and_ignored_when_told():
    body = _batch(_instance(segment="gold", _ingested_at=3, nested={"a": [1, None]}))
    assert _errors(body)[0]["type"] == "extra_forbidden"
    model = _ignoring_model()
    assert model.fast.parse(body) is not None
    for parse in (model.parse, model.parse_detailed):
        parsed = parse(body)
        assert _same(parsed.columns, MODEL.parse(_batch(BASE)).columns)
        assert parsed.instances == [BASE]
    single = json.dumps(_instance(segment="gold")).encode()
    assert _same(model.parse(single).columns, MODEL.parse(json.dumps(BASE).encode()).columns)


def test_ignoring_extra_fields_still_refuses_bad_known_fields_and_top_level_keys():
    model = _ignoring_model()
    assert _errors(_batch(_instance(plan=3, segment="gold")), model)[0]["loc"] == ["body", "instances", 0, "plan"]
    assert _errors(_batch(BASE, extra=1), model)[0]["type"] == "extra_forbidden"


def test_extra_fields_setting_accepts_only_forbid_or_ignore(monkeypatch):
    from pydantic import ValidationError

    from serving.settings import Settings

    monkeypatch.setenv("SERVING_EXTRA_FIELDS", "ignore")
    assert Settings().extra_fields == "ignore"
    monkeypatch.setenv("SERVING_EXTRA_FIELDS", "allow")
    with pytest.raises(ValidationError):
        Settings()


# ------------------------------------------------------------------------------------------ served

def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _rows(folder: Path) -> list[dict[str, str]]:
    [path] = folder.glob("*_outputs.csv")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("model_type", ["logistic_regression", "hist_gradient_boosting"])
def test_arrays_in_schema_order_score_exactly_as_objects_through_the_server(models: dict[str, Trained],
                                                                            model_type: str, tmp_path: Path):
    trained = models[model_type]
    server = start_server(tmp_path, AIP_STORAGE_URI=str(trained.folder), SERVING_LOG_FLUSH_SECONDS="0.1",
                          SERVING_PREDICTION_LOG_DIR=str(tmp_path / "predictions"), SERVING_MODEL_VERSION="v1")
    try:
        server.wait_health()
        with urllib.request.urlopen(f"{server.base_url}/schema", timeout=10) as response:
            schema = json.loads(response.read())
        order = [f["name"] for f in schema["feature_schema"]["features"]]
        array = schema["instance_array"]
        assert array["minItems"] == array["maxItems"] == len(array["prefixItems"]) == len(order)
        for spec, position in zip(schema["feature_schema"]["features"], array["prefixItems"], strict=True):
            types = {position["type"]} if "type" in position else {t["type"] for t in position["anyOf"]}
            assert types == {"number" if spec["kind"] == "numeric" else "string"} | ({"null"} if spec["nullable"]
                                                                                   else set()), (spec, position)
        objects = trained.instances(300)
        arrays = [[inst.get(name) for name in order] for inst in objects]
        status, by_object = _post(f"{server.base_url}/predict", {"instances": objects})
        assert status == 200, by_object
        status, by_array = _post(f"{server.base_url}/predict", {"instances": arrays})
        assert status == 200, by_array
        got_objects = np.array([p["churn_probability"] for p in by_object["predictions"]])
        got_arrays = np.array([p["churn_probability"] for p in by_array["predictions"]])
        assert got_objects.tobytes() == got_arrays.tobytes(), "not the same to the last bit"
        assert [p["customer_id"] for p in by_array["predictions"]] == [None] * len(arrays)
        status, errors = _post(f"{server.base_url}/predict", {"instances": [arrays[0], arrays[1][:-1]]})
        assert status == 422 and errors["detail"][0]["loc"] == ["body", "instances", 1], errors
        server.stop()  # SIGTERM: the log is flushed on shutdown
        rows = _rows(tmp_path / "predictions")
        assert len(rows) == 2 * len(objects)
        assert [r["customer_id"] for r in rows[len(objects):]] == [""] * len(objects)  # keyField: no id sent
        assert [r[order[0]] for r in rows[len(objects):]] == [r[order[0]] for r in rows[:len(objects)]]
    finally:
        server.stop()


def test_a_server_told_to_ignore_extra_fields_scores_bigquery_rows_and_logs_only_features(models, tmp_path: Path):
    trained = models["logistic_regression"]
    server = start_server(tmp_path, AIP_STORAGE_URI=str(trained.folder), SERVING_EXTRA_FIELDS="ignore",
                          SERVING_LOG_FLUSH_SECONDS="0.1", SERVING_PREDICTION_LOG_DIR=str(tmp_path / "predictions"))
    try:
        server.wait_health()
        objects = trained.instances(20)
        # instanceType=object with keyField=customer_id: Vertex drops the key and sends the row's other columns
        rows = [{k: v for k, v in inst.items() if k != "customer_id"} | {"snapshot_date": "2026-11-30", "churned": 1}
                for inst in objects]
        status, plain = _post(f"{server.base_url}/predict", {"instances": objects})
        status, with_extras = _post(f"{server.base_url}/predict", {"instances": rows})
        assert status == 200, with_extras
        assert ([p["churn_probability"] for p in with_extras["predictions"]]
                == [p["churn_probability"] for p in plain["predictions"]])
        server.stop()  # SIGTERM: the log is flushed on shutdown
        logged = _rows(tmp_path / "predictions")
        assert list(logged[0]) == header(tuple(trained.schema.names))  # no snapshot_date column
        decisions = [str(int(p["churned"])) for p in with_extras["predictions"]]
        assert [r["churned"] for r in logged[20:]] == decisions  # the decision, not the row's own `churned`
        assert [r["customer_id"] for r in logged[20:]] == [""] * 20
    finally:
        server.stop()
