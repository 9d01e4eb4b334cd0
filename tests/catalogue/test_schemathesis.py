"""Property-based tests of the public GET routes from the OpenAPI description (Schemathesis).

Each operation gets a bounded number of generated requests against the app in-process (ASGI);
none may produce a 5xx, every status must be documented and every body must match its schema.
Requests carry a valid operator token: generated random tokens would only ever reach the 401
path, which tests/catalogue/test_api.py covers.
(Schemathesis' lazy pytest loader does not run on pytest 9 yet, so the operations are driven
with Hypothesis directly.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.catalogue.conftest import bearer, make_context, seed
from webhooks.app import create_app

GET_ROUTES = [
    "/api/v1/functions",
    "/api/v1/functions/{name}",
    "/api/v1/functions/{name}/versions",
    "/api/v1/versions",
    "/api/v1/activations",
    "/api/v1/activations/{activation_id}",
    "/api/v1/events",
    "/api/v1/events/dead",
    "/api/v1/deliveries",
    "/api/v1/accounting",
]
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def seeded_schema(tmp_path_factory: pytest.TempPathFactory) -> tuple[schemathesis.BaseSchema, dict[str, str]]:
    context = make_context(Path(tmp_path_factory.mktemp("schemathesis")))
    data = seed(context)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(context)), bearer(data.tokens["*:read"])


@pytest.fixture(scope="module")
def api_schema(seeded_schema: tuple[schemathesis.BaseSchema, dict[str, str]]) -> schemathesis.BaseSchema:
    return seeded_schema[0]


def test_every_public_get_route_is_covered(api_schema: schemathesis.BaseSchema) -> None:
    documented = {
        path
        for path, methods in api_schema.raw_schema["paths"].items()
        if path.startswith("/api/") and "get" in methods
    }
    assert documented == set(GET_ROUTES)


@pytest.mark.parametrize("path", GET_ROUTES)
def test_public_get_route(seeded_schema: tuple[schemathesis.BaseSchema, dict[str, str]], path: str) -> None:
    api_schema, headers = seeded_schema
    operation = api_schema[path]["GET"]
    statuses: set[int] = set()

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        statuses.add(case.call_and_validate(checks=CHECKS, headers=headers).status_code)

    run()
    assert statuses & {200, 404}, f"no generated request got past validation: {statuses}"
