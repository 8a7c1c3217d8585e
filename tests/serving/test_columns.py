"""serving.columns: the validation fast path accepts only what the pydantic models accept, with the same
values; every other body is left to them, so a request gets the same answer (arrays or detailed errors)
whichever path decides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churn.logformat import Layout
from churn.schema import FeatureSchema, FeatureSpec
from serving.columns import ColumnParser, Columns, columns_from_instances
from serving.model import RequestError, ServedModel, load_model
from serving.schemas import request_models
from tests.serving.conftest import Trained

SCHEMA = FeatureSchema(version=1, features=(
    FeatureSpec("tenure_days", "numeric", "customer"),
    FeatureSpec("plan", "categorical", "customer", categories=("basic", "pro")),
    FeatureSpec("age", "numeric", "customer", nullable=True),
    FeatureSpec("region", "categorical", "customer", nullable=True),
    FeatureSpec("spend-90d", "numeric", "transactions"),  # not an identifier
))
MAX_INSTANCES = 5
BASE = {"customer_id": "c-1", "tenure_days": 10.5, "plan": "basic", "age": 30.0, "region": "north", "spend-90d": 0.0}


def _model(schema: FeatureSchema = SCHEMA) -> ServedModel:
    """A model without a session: enough to parse (parsing never scores)."""
    return ServedModel(name="m", version="v1", source="-", folder=Path("."), schema=schema, threshold=0.5, manifest={},
                       session=None, requests=request_models(schema, MAX_INSTANCES),
                       fast=ColumnParser(schema, MAX_INSTANCES), log_layout=Layout.for_schema(schema))


MODEL = _model()


def _same(a: Columns, b: Columns) -> bool:
    return (a.numeric.dtype == b.numeric.dtype == np.float64 and a.numeric.shape == b.numeric.shape
            and np.array_equal(a.numeric, b.numeric, equal_nan=True)
            and np.array_equal(np.signbit(a.numeric), np.signbit(b.numeric))
            and a.categorical.shape == b.categorical.shape and (a.categorical == b.categorical).all()
            and a.ids == b.ids)


def _outcome(parse, body: bytes):
    try:
        parsed = parse(body)
    except RequestError as err:
        return "error", err.status, err.detail
    return "ok", parsed.columns, parsed.threshold


def _check(body: bytes) -> bool:
    """Asserts the fast path agrees with the detailed one on ``body``; returns whether it accepted it."""
    detailed = _outcome(MODEL.parse_detailed, body)
    served = _outcome(MODEL.parse, body)
    fast = MODEL.fast.parse(body)
    if fast is not None:
        assert detailed[0] == "ok", (body[:200], detailed)
        assert _same(fast[2], detailed[1]) and fast[1] == detailed[2], body[:200]
    assert served[0] == detailed[0]
    if served[0] == "ok":
        assert _same(served[1], detailed[1]) and served[2] == detailed[2]
    else:
        assert served[1:] == detailed[1:]
    return fast is not None


def _instance(**changes) -> dict:
    inst = dict(BASE)
    for key, value in changes.items():
        if value is KeyError:
            inst.pop(key)
        else:
            inst[key] = value
    return inst


def _batch(*instances, **top) -> bytes:
    return json.dumps({"instances": list(instances), **top}).encode()


def _literal(field: str, text: str) -> bytes:
    """A batch whose ``field`` holds the raw JSON ``text``."""
    return _batch(_instance(**{field: "@@"})).replace(b'"@@"', text.encode())


ACCEPTED = {
    "batch": _batch(BASE, _instance(customer_id="c-2", plan="pro")),
    "single object": json.dumps(BASE).encode(),
    "whole numbers": _batch(_instance(tenure_days=3, age=0, **{"spend-90d": -0})),
    "range limits": _batch(_instance(tenure_days=1e12, **{"spend-90d": -1e12})),
    "null nullable": _batch(_instance(age=None, region=None)),
    "absent nullable and id": _batch(_instance(age=KeyError, region=KeyError, customer_id=KeyError)),
    "null id": _batch(_instance(customer_id=None)),
    "empty and unseen categories": _batch(_instance(plan="", region="never-seen")),
    "text at the length limit": _batch(_instance(plan="é" * 1000, customer_id="😀" * 1000)),
    "parameters": _batch(BASE, parameters={"threshold": 0.25}),
    "whole-number threshold": _batch(BASE, parameters={"threshold": 1}),
    "null parameters": _batch(BASE, parameters=None),
    "null threshold": _batch(BASE, parameters={"threshold": None}),
    "most instances": _batch(*[BASE] * MAX_INSTANCES),
    "escapes": _batch(_instance(plan='a,"b"\n\\c', customer_id="\u0000\u001f")),
    "exponents": _literal("tenure_days", "1.5E+3"),
    "underflow": _literal("tenure_days", "1e-400"),
    "whitespace": b"  " + _batch(BASE) + b"\n ",
}

LEFT_TO_PYDANTIC = {
    "bool for a number": _batch(_instance(tenure_days=True)),
    "text for a number": _batch(_instance(tenure_days="12")),
    "null required number": _batch(_instance(tenure_days=None)),
    "missing required": _batch(_instance(plan=KeyError)),
    "number for a category": _batch(_instance(plan=3)),
    "null required category": _batch(_instance(plan=None)),
    "text too long": _batch(_instance(region="x" * 1001)),
    "id not text": _batch(_instance(customer_id=17)),
    "unknown field": _batch(_instance(favourite_colour="blue")),
    "over the range": _batch(_instance(tenure_days=1e12 + 1)),
    "big integer": _literal("tenure_days", "123456789012345678901234567890"),
    "NaN": _literal("tenure_days", "NaN"),
    "Infinity": _literal("tenure_days", "-Infinity"),
    "1e400": _literal("tenure_days", "1e400"),
    "nested": _batch(_instance(tenure_days=[1])),
    "empty instances": _batch(),
    "too many instances": _batch(*[BASE] * (MAX_INSTANCES + 1)),
    "instances not a list": json.dumps({"instances": BASE}).encode(),
    "instance not an object": _batch([1, 2]),
    "unknown top-level key": _batch(BASE, extra=1),
    "unknown parameter": _batch(BASE, parameters={"explain": True}),
    "threshold as text": _batch(BASE, parameters={"threshold": "0.5"}),
    "threshold as bool": _batch(BASE, parameters={"threshold": True}),
    "threshold over 1": _batch(BASE, parameters={"threshold": 1.5}),
    "array body": json.dumps([BASE]).encode(),
    "duplicate key, wrong then right": b'{"instances": [{"tenure_days": "x", ' + json.dumps(BASE).encode()[1:] + b"]}",
    "duplicate key, right then wrong": _batch(BASE)[:-3] + b', "plan": 1}]}',
    "malformed": b'{"instances": [',
    "empty body": b"",
    "lone surrogate": _literal("plan", '"\\ud800"'),
    "invalid UTF-8": _batch(BASE).replace(b"north", b"nor\xffth"),
    "byte order mark": b"\xef\xbb\xbf" + _batch(BASE),
    "trailing text": _batch(BASE) + b" x",
    "raw control character": _batch(BASE).replace(b"north", b"nor\tth"),
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_valid_bodies_take_the_fast_path_with_the_detailed_paths_values(name: str):
    assert _check(ACCEPTED[name]), f"{name}: declined by the fast path"


@pytest.mark.parametrize("name", LEFT_TO_PYDANTIC)
def test_other_bodies_get_the_detailed_paths_answer(name: str):
    _check(LEFT_TO_PYDANTIC[name])


def test_absent_and_null_optional_values_are_missing_in_the_arrays():
    columns = MODEL.parse(_batch(_instance(age=None, region=KeyError, customer_id=KeyError))).columns
    assert np.isnan(columns.numeric[0, SCHEMA.numeric.index("age")])
    assert columns.categorical[0, SCHEMA.categorical.index("region")] == ""
    assert columns.ids == [None]
    assert MODEL.parse(_batch(BASE)).instances == [BASE]


numbers = st.one_of(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
                    st.integers(min_value=-10**12, max_value=10**12))


@settings(max_examples=300, deadline=None, database=None)
@given(value=numbers, spelling=st.sampled_from(["{!r}", "{:.17g}", "{:.3e}", "{:.20f}", "{:.1f}", "{:.25g}"]))
def test_numbers_are_read_exactly_as_the_detailed_path_reads_them(value, spelling):
    text = spelling.format(value) if not isinstance(value, int) or spelling == "{!r}" else str(value)
    _check(_literal("tenure_days", text))


@settings(max_examples=200, deadline=None, database=None)
@given(plan=st.text(max_size=30), region=st.one_of(st.none(), st.text(max_size=5)),
       customer_id=st.one_of(st.none(), st.text(max_size=10)))
def test_text_is_read_exactly_as_the_detailed_path_reads_it(plan, region, customer_id):
    body = _batch(_instance(plan=plan, region=region, customer_id=customer_id))
    assert _check(body)


@pytest.mark.parametrize("model_type", ["logistic_regression", "hist_gradient_boosting"])
def test_validation_rows_take_the_fast_path_and_score_as_through_pydantic(models: dict[str, Trained], model_type):
    trained = models[model_type]
    model = load_model(trained.folder, name="churn-model", source="-", max_instances=1000)
    instances = trained.instances()[:1000]
    body = json.dumps({"instances": instances}).encode()
    fast = model.fast.parse(body)
    assert fast is not None
    detailed = model.parse_detailed(body).columns
    assert _same(fast[2], detailed)
    assert _same(detailed, columns_from_instances(model.schema, instances))
    np.testing.assert_array_equal(model.score(fast[2]), model.predict_proba(instances))
