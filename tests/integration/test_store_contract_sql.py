"""The Store behaviour suite (tests/unit/test_store_contract.py) against real servers: plain
PostgreSQL and PostgreSQL with TimescaleDB (Apache edition), each a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ingest.stores.postgres import PostgresStore
from tests.unit.test_store_contract import StoreContract

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql", "timescaledb"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    url = request.getfixturevalue("postgres_db" if request.param == "postgresql" else "timescale_db")
    s = PostgresStore(url, timescaledb=request.param == "timescaledb")
    s.migrate()
    assert s.flavor() == request.param
    yield s
    s.close()


class TestSqlStoreContract(StoreContract):
    pass
