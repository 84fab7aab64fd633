"""What the API's hot paths do to be cheap must not change what they answer
(docs/performance.md, "Ops API"): the incidents page rendered without models is the model's
JSON byte for byte, the flat route table gives the same OpenAPI document, and the overview
cache computes once for many screens and never serves an overview older than its TTL."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from fastapi import APIRouter, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.registry import load_registry
from ops_center.adapters.records import IncidentRecord
from ops_center.adapters.repository import OpsRepository
from ops_center.adapters.sqlite import SqliteOpsRepository
from ops_center.api.app import API_PREFIX
from ops_center.api.kpi import KpiService
from ops_center.api.routes import (
    admin,
    alerts,
    auth,
    gateways,
    incidents,
    me,
    ops,
    readings,
    sensors,
    sites,
    stream,
)
from ops_center.api.schemas import IncidentOut, IncidentPage, incident_page_json
from ops_center.settings import OpsSettings
from tests.integration.test_api_support import build_app

REG = load_registry()

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=0)
)
incident_records = st.builds(
    IncidentRecord,
    id=texts,
    site=texts,
    kind=texts,
    severity=st.sampled_from(("info", "warning", "critical", "emergency")),
    state=st.sampled_from(("open", "acknowledged", "resolved")),
    title_vi=texts,
    title_en=texts,
    opened_at=times,
    updated_at=times,
    acknowledged_at=st.none() | times,
    resolved_at=st.none() | times,
    assignee=st.none() | texts,
    escalated_at=st.none() | times,
)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(incident_records, max_size=5), total=st.integers(0, 10**6), offset=st.integers(0, 1000))
def test_incident_page_json_is_the_models_json_byte_for_byte(
    items: list[IncidentRecord], total: int, offset: int
) -> None:
    model = IncidentPage(items=[IncidentOut.of(i) for i in items], total=total, limit=50, offset=offset)
    assert incident_page_json(items, total=total, limit=50, offset=offset) == model.model_dump_json().encode()


def test_flat_route_table_gives_the_same_openapi_document() -> None:
    repo = SqliteOpsRepository(":memory:")
    repo.migrate()
    try:
        app = build_app(repo)
        nested = FastAPI(
            title=app.title, version=app.version, description=app.description, openapi_url=app.openapi_url
        )
        api = APIRouter(prefix=API_PREFIX)
        for module in (auth, me, sites, gateways, sensors, readings, alerts, incidents, stream, admin):
            api.include_router(module.router)
        nested.include_router(api)
        nested.include_router(ops.router)
        assert app.openapi() == nested.openapi()
    finally:
        repo.close()


class SlowKpiRepo:
    """The reads of an overview; ``batch_stats`` waits for ``gate`` and counts computations."""

    def __init__(self) -> None:
        self.computations = 0
        self.gate = threading.Event()
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def latest_values(self, pairs: Sequence[tuple[str, str]], since: datetime) -> list[Any]:
        return []

    def batch_stats(self, gateways: Sequence[str], since: datetime) -> list[Any]:
        with self._lock:
            self.computations += 1
        self.entered.set()
        assert self.gate.wait(10)
        return []

    def open_incident_counts(self, sites: Sequence[str] | None) -> dict[str, dict[str, int]]:
        return {}

    def dead_letter_counts(self, sites: Sequence[str] | None, since: datetime) -> dict[str, int]:
        return {}

    def hourly_means(self, sensors: Sequence[str], metrics: Sequence[str], since: datetime) -> dict[Any, Any]:
        return {}


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def kpis(repo: SlowKpiRepo, clocks: Clocks, ttl_s: float = 2.0) -> KpiService:
    settings_ = OpsSettings(environment="local", overview_cache_s=ttl_s)
    return KpiService(cast(OpsRepository, repo), REG, settings_, clocks.now, monotonic=clocks.monotonic)


def test_many_screens_asking_at_once_cost_one_overview_computation() -> None:
    repo, clocks = SlowKpiRepo(), Clocks()
    service = kpis(repo, clocks)
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(service.site_overview_json, "thong-nhat") for _ in range(8)]
        assert repo.entered.wait(10)
        repo.gate.set()
        bodies = {f.result(timeout=10) for f in answers}
    assert repo.computations == 1
    assert len(bodies) == 1
    service.close()


def test_overview_is_refreshed_ahead_and_never_served_past_its_ttl() -> None:
    repo, clocks = SlowKpiRepo(), Clocks()
    repo.gate.set()
    service = kpis(repo, clocks, ttl_s=2.0)
    first = service.site_overview_json("thong-nhat")
    assert service.cached_json("thong-nhat") == first
    assert repo.computations == 1

    clocks.advance(1.5)  # past half its age: still served, and one refresh starts behind it
    repo.gate.clear()
    repo.entered.clear()
    assert service.cached_json("thong-nhat") == first
    assert repo.entered.wait(10)
    assert service.cached_json("thong-nhat") == first  # no second refresh while one runs
    repo.gate.set()
    service.close()  # waits for the refresh
    assert repo.computations == 2
    refreshed = service.cached_json("thong-nhat")
    assert refreshed is not None and refreshed != first  # computed at the later wall time

    clocks.advance(2.0)  # the refreshed entry is now 2 s old: never served
    assert service.cached_json("thong-nhat") is None


def test_without_a_ttl_every_overview_is_computed() -> None:
    repo, clocks = SlowKpiRepo(), Clocks()
    repo.gate.set()
    service = kpis(repo, clocks, ttl_s=0)
    service.site_overview("thong-nhat")
    service.site_overview("thong-nhat")
    assert repo.computations == 2
    assert service.cached_json("thong-nhat") is None
