"""S6: the API fuzzed from its own OpenAPI schema, for every role and without a token,
against TimescaleDB: no 5xx, and every answer matches the schema (status documented,
body valid). Bounded: a few examples per operation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import BaseSchema, Case

from tests.servers.timescale import TimescaleServer
from tests.support.api import USERS, Env, auth, login, pg_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzz_env(timescale: TimescaleServer) -> Iterator[Env]:
    timescale.ensure_running()
    # Generous login limits: the fuzzer posts many login forms (429 is documented anyway).
    yield from pg_env(
        timescale.fresh_db("fuzz"), login_attempts_per_ip=100_000, login_failures_per_user=100_000
    )


@pytest.fixture(scope="module")
def api_schema(fuzz_env: Env) -> BaseSchema:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_env.app)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_answers_every_role_within_its_schema(case: Case, fuzz_env: Env) -> None:
    if case.operation.path == "/api/v1/stream":
        return  # never ends: test_api_stream.py covers it over a real server
    tokens = fuzz_env.tokens
    if case.operation.path == "/api/v1/auth/logout":
        # Sessions of its own: logging out must not end the ones the other operations use.
        tokens = {u: login(fuzz_env.client, u) for u in USERS}
    for headers in [{}] + [auth(tokens[u]) for u in USERS]:
        response = case.call_and_validate(headers=headers)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])
