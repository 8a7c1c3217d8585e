"""Fuzzing the running server through its own OpenAPI document (schemathesis): no input gives a 5xx, and
every response matches the documented status codes and schemas.

The request schema in the document is built from the served model's feature schema, so schemathesis
generates customer instances (valid and invalid) for the model actually loaded. Invalid data must be
refused with one of the documented statuses: 400 (malformed), 413 (too many instances: schemathesis'
default list lacks it, so a negative case that only grew ``instances`` past ``maxItems`` would count as
accepted) or 422. Bounded: at most ``MAX_EXAMPLES`` generated cases per operation, plus schemathesis'
coverage cases; loopback only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from tests.serving.conftest import Trained, start_server

MAX_EXAMPLES = 80
REJECTION_STATUSES = [400, 413, 422]  # the predict route's documented answers to invalid input


@pytest.fixture(scope="module")
def fuzz_server(models: dict[str, Trained], tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("fuzz-server")
    server = start_server(work, AIP_STORAGE_URI=str(models["hist_gradient_boosting"].folder),
                          SERVING_MAX_INSTANCES="50", SERVING_PREDICTION_LOG_DIR=str(work / "predictions"))
    server.wait_health()
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_input_makes_a_server_error_and_responses_match_the_document(fuzz_server, mode):
    # Driven through Hypothesis directly (schemathesis' lazy pytest fixture does not run on pytest 9).
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTION_STATUSES}}})
    api = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json", config=config)
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/health", "/schema"}
    if mode == schemathesis.GenerationMode.NEGATIVE:  # only the predict route takes input to get wrong
        operations = [op for op in operations if op.method.upper() == "POST"]
    seen: dict[int, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            response = case.call_and_validate(base_url=fuzz_server.base_url, timeout=30)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, response.text

        call()
    assert fuzz_server.proc.poll() is None, fuzz_server.output()
    print(f"\n{mode.value}: status codes {dict(sorted(seen.items()))}")
    if mode == schemathesis.GenerationMode.NEGATIVE:
        assert seen.get(422, 0) > 0
    else:
        assert seen.get(200, 0) > 0


json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=3), max_leaves=12)


@pytest.mark.slow
def test_arrays_of_anything_are_scored_or_refused_with_the_instance_and_position(fuzz_server, models):
    """Vertex's array form, fuzzed over HTTP with a plain client: right and wrong lengths, every JSON type,
    nested junk, non-finite numbers. Every answer is 200 or a 422 naming the instance (and the position and
    feature when one value is wrong)."""
    names = models["hist_gradient_boosting"].schema.names
    valid = [[inst.get(n) for n in names] for inst in models["hist_gradient_boosting"].instances(5)]
    arrays = st.one_of(st.sampled_from(valid),
                       st.lists(json_values, min_size=len(names) - 1, max_size=len(names) + 1),
                       st.sampled_from(valid).flatmap(lambda row: st.tuples(st.integers(0, len(row) - 1), json_values)
                                                      .map(lambda change: [change[1] if i == change[0] else v
                                                                           for i, v in enumerate(row)])))
    seen: dict[int, int] = {}

    @given(instances=st.lists(arrays, min_size=1, max_size=4))
    @settings(max_examples=MAX_EXAMPLES * 2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def call(instances) -> None:
        body = json.dumps({"instances": instances}, allow_nan=True).encode()
        request = urllib.request.Request(f"{fuzz_server.base_url}/predict", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            status, answer = err.code, json.loads(err.read())
        seen[status] = seen.get(status, 0) + 1
        assert status in (200, 400, 422), (status, answer)
        if status == 200:
            assert len(answer["predictions"]) == len(instances)
        elif status == 422:
            for error in answer["detail"]:
                loc = error["loc"]
                assert loc[:2] == ["body", "instances"] and 0 <= loc[2] < len(instances), error
                if len(loc) > 3:
                    assert error["msg"].startswith(f"{names[loc[3]]} (position {loc[3]}): "), error

    call()
    assert fuzz_server.proc.poll() is None, fuzz_server.output()
    assert seen.get(200, 0) > 0 and seen.get(422, 0) > 0, seen
