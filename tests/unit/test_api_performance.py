"""What the API's hot paths do to be cheap must not change what they answer
(docs/performance.md, "Ops API"): the incidents page rendered without models is the model's
JSON byte for byte, the flat route table gives the same OpenAPI document, and the overview
cache computes once for many screens and never serves an overview older than its TTL."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import pkgutil
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.registry import load_registry
from ops_center.adapters.records import IncidentRecord, UserRecord
from ops_center.adapters.sqlite import SqliteOpsRepository
from ops_center.api import routes as routes_package
from ops_center.api.app import API_PREFIX
from ops_center.api.pagecache import BodyCache
from ops_center.api.principals import UserRows
from ops_center.api.routes import ops
from ops_center.api.routes.sites import overview_json
from ops_center.api.schemas import IncidentOut, IncidentPage, incident_page_json
from ops_center.security.scope import Scope
from ops_center.security.tokens import TokenError, TokenService
from ops_center.security.users import set_disabled
from ops_center.service.kpi import KpiService
from ops_center.settings import OpsSettings
from tests.support.api import Env, auth, build_app, sqlite_env

REG = load_registry()


def route_modules() -> list[ModuleType]:
    found = []
    for info in pkgutil.iter_modules(routes_package.__path__):
        module = importlib.import_module(f"{routes_package.__name__}.{info.name}")
        if isinstance(getattr(module, "router", None), APIRouter):
            found.append(module)
    return found

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
        for module in route_modules():  # every router of the package, whoever added it
            if module is not ops:
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
    return KpiService(  # the fake serves as the three ports an overview reads
        repo, repo, repo, REG, settings_, clocks.now,
        render=overview_json, monotonic=clocks.monotonic,
    )


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


# --- shared list pages (ops_center/api/pagecache.py) -------------------------------------------


def test_many_requests_for_one_page_at_once_cost_one_query() -> None:
    clocks = Clocks()
    cache: BodyCache[str] = BodyCache(1.0, monotonic=clocks.monotonic)

    async def main() -> list[bytes]:
        gate = asyncio.Event()

        async def compute() -> bytes:
            await gate.wait()
            return b"page"

        waiting = [asyncio.create_task(cache.get("k", compute)) for _ in range(50)]
        await asyncio.sleep(0)  # let every request reach the cache: they queue on one query
        gate.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(main()) == [b"page"] * 50
    assert cache.computations == 1


def test_a_page_is_never_served_past_its_ttl_nor_after_a_feed_event() -> None:
    clocks, generation = Clocks(), [0]
    cache: BodyCache[str] = BodyCache(1.0, monotonic=clocks.monotonic, generation=lambda: generation[0])
    answers = iter([b"v1", b"v2", b"v3"])

    async def compute() -> bytes:
        return next(answers)

    async def get() -> bytes:
        return await cache.get("k", compute)

    assert asyncio.run(get()) == b"v1"
    clocks.advance(0.99)
    assert asyncio.run(get()) == b"v1"
    clocks.advance(0.01)  # 1 s old: recomputed
    assert asyncio.run(get()) == b"v2"
    generation[0] += 1  # e.g. an incident acknowledged through this process
    assert cache.fresh("k") is None
    assert asyncio.run(get()) == b"v3"


def test_a_failed_page_query_fails_only_its_own_request_and_is_not_kept() -> None:
    cache: BodyCache[str] = BodyCache(1.0)

    async def main() -> tuple[BaseException | bytes, ...]:
        gate = asyncio.Event()
        calls = 0

        async def compute() -> bytes:
            nonlocal calls
            calls += 1
            if calls == 1:
                await gate.wait()
                raise RuntimeError("store down")
            return b"page"

        first = asyncio.create_task(cache.get("k", compute))
        await asyncio.sleep(0)
        second = asyncio.create_task(cache.get("k", compute))  # waits for the first query
        await asyncio.sleep(0)
        gate.set()
        return tuple(await asyncio.gather(first, second, return_exceptions=True))

    first, second = asyncio.run(main())
    assert isinstance(first, RuntimeError) and second == b"page"
    assert cache.fresh("k") == b"page"


def test_the_page_cache_keeps_at_most_its_bound() -> None:
    cache: BodyCache[int] = BodyCache(10.0, max_entries=3)

    async def fill() -> None:
        for k in range(5):
            await cache.get(k, lambda k=k: _const(str(k).encode()))  # type: ignore[misc]

    asyncio.run(fill())
    assert [cache.fresh(k) for k in range(5)] == [None, None, b"2", b"3", b"4"]


async def _const(body: bytes) -> bytes:
    return body


# --- tokens and user rows ------------------------------------------------------------------------


def test_a_remembered_token_does_not_vouch_for_a_tampered_copy() -> None:
    tokens = TokenService("k" * 48, issuer="i", audience="a", access_ttl_s=900, refresh_ttl_s=3600)
    good = tokens.issue("access", user="tn-staff", role="ward_staff", sites=("thong-nhat",), version=0).token
    assert tokens.verify(good, "access").sub == "tn-staff"
    assert tokens.verify(good, "access").sub == "tn-staff"  # remembered
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"], claims["sites"] = "admin", []
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        tokens.verify(f"{head}.{forged}.{sig}", "access")
    with pytest.raises(TokenError):  # an access token is still no refresh token
        tokens.verify(good, "refresh")


def test_user_rows_are_kept_for_their_ttl_and_bounded() -> None:
    clocks = Clocks()
    rows = UserRows(1.0, max_users=2, monotonic=clocks.monotonic)
    scope = Scope.for_user("a", "ward_staff", ("thong-nhat",), REG.sites)
    for name in ("a", "b", "c"):
        rows.put(UserRecord(name, "h", "ward_staff", ("thong-nhat",)), scope, clocks.monotonic())
    assert rows.get("a") is None and rows.get("b") is not None and rows.get("c") is not None
    clocks.advance(1.0)
    assert rows.get("b") is None and rows.get("c") is None


# --- the API with its caches on: scope isolation, freshness, revocation ---------------------------


@pytest.fixture
def cached_env(tmp_path: Path) -> Iterator[tuple[Env, Clocks]]:
    clocks = Clocks()
    for env in sqlite_env(tmp_path / "app.db", overview_cache_s=2.0, principal_cache_s=1.0, list_cache_s=1.0):
        state = env.app.state.smartward
        state.users = UserRows(1.0, monotonic=clocks.monotonic)
        state.incident_pages = BodyCache(
            1.0, monotonic=clocks.monotonic, generation=lambda feed=state.feed: feed.stats.published
        )
        yield env, clocks


def _incident_ids(env: Env, user: str, query: str = "") -> set[str]:
    r = env.client.get(f"/api/v1/incidents{query}", headers=auth(env.tokens[user]))
    assert r.status_code == 200, r.text
    return {i["id"] for i in r.json()["items"]}


def test_cached_pages_and_overviews_never_cross_scopes(cached_env: tuple[Env, Clocks]) -> None:
    env, _ = cached_env
    c = env.client
    for _ in range(2):  # the second round is answered from the caches
        assert _incident_ids(env, "qt-staff") == {"inc-qt-1"}
        assert _incident_ids(env, "tn-staff") == {"inc-tn-1"}
        assert _incident_ids(env, "leader") == {"inc-tn-1", "inc-qt-1", "inc-ax-1"}
        assert _incident_ids(env, "qt-staff", "?site=quang-trung") == {"inc-qt-1"}
        assert _incident_ids(env, "tn-staff", "?site=quang-trung") == set()  # filtered, audited
        ov = c.get("/api/v1/sites/quang-trung/overview", headers=auth(env.tokens["qt-staff"]))
        assert ov.status_code == 200 and ov.json()["site"] == "quang-trung"
        denied = c.get("/api/v1/sites/quang-trung/overview", headers=auth(env.tokens["tn-staff"]))
        assert denied.status_code == 404
    assert env.app.state.smartward.incident_pages.computations == 4  # qt, tn, leader, (): once each
    audit = env.repo.users.audit_entries(100, 0).items
    assert sum(1 for a in audit if a.action == "scope_filtered" and a.actor == "tn-staff") == 2
    assert sum(1 for a in audit if a.action == "scope_denied" and a.actor == "tn-staff") == 2


def test_an_incident_opened_elsewhere_is_listed_within_the_ttl(cached_env: tuple[Env, Clocks]) -> None:
    env, clocks = cached_env
    assert _incident_ids(env, "tn-staff") == {"inc-tn-1"}
    now = datetime.now(UTC)
    env.repo.incidents.upsert_incident(  # as the ops service of another process writes it
        IncidentRecord(
            id="inc-tn-2",
            site="thong-nhat",
            kind="flooding",
            severity="warning",
            state="open",
            title_vi="Ngập",
            title_en="Flood",
            opened_at=now,
            updated_at=now,
        )
    )
    assert _incident_ids(env, "tn-staff") == {"inc-tn-1"}  # the shared page, younger than 1 s
    clocks.advance(1.0)
    assert _incident_ids(env, "tn-staff") == {"inc-tn-1", "inc-tn-2"}


def test_an_action_in_this_process_is_listed_at_once(cached_env: tuple[Env, Clocks]) -> None:
    env, _ = cached_env
    h = auth(env.tokens["tn-staff"])
    assert _incident_ids(env, "tn-staff", "?state=open") == {"inc-tn-1"}
    r = env.client.post("/api/v1/incidents/inc-tn-1/acknowledge", headers=h, json={"note": "đang xử lý"})
    assert r.status_code == 200, r.text
    assert _incident_ids(env, "tn-staff", "?state=open") == set()
    assert _incident_ids(env, "tn-staff", "?state=acknowledged") == {"inc-tn-1"}


def test_a_disabled_user_is_refused_within_the_ttl(cached_env: tuple[Env, Clocks]) -> None:
    env, clocks = cached_env
    h = auth(env.tokens["qt-staff"])
    assert env.client.get("/api/v1/incidents", headers=h).status_code == 200
    # As `smartward users disable` does:
    set_disabled(env.repo.users, name="qt-staff", disabled=True, actor="test")
    clocks.advance(1.0)
    assert env.client.get("/api/v1/incidents", headers=h).status_code == 401
    assert env.client.get("/api/v1/sites/quang-trung/overview", headers=h).status_code == 401
