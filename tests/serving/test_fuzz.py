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

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
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
