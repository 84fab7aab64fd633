"""``create_app``: the API as a FastAPI application, composed from what the composition
root (``smartward ops serve``, ``smartward demo``) hands it. Nothing is created at import
time; the app's lifespan runs the KPI publisher of the live stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool

from contract.registry import Registry, load_registry
from ops_center.adapters.repository import OpsRepository, RepositoryError
from ops_center.api.deps import AppState, Readiness
from ops_center.api.errors import install_handlers
from ops_center.api.kpi import KpiService
from ops_center.api.lifecycle import ActionHook
from ops_center.api.limits import BodySizeLimit
from ops_center.api.metrics import ApiMetrics, MetricsMiddleware
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
from ops_center.feed import Feed
from ops_center.security.passwords import Passwords
from ops_center.security.ratelimit import LoginLimiter
from ops_center.security.tokens import TokenService
from ops_center.settings import OpsSettings

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def create_app(
    settings: OpsSettings,
    repo: OpsRepository,
    feed: Feed,
    readiness: Readiness | None = None,
    *,
    registry: Registry | None = None,
    on_action: ActionHook | None = None,
    clock: Callable[[], datetime] | None = None,
    passwords: Passwords | None = None,
) -> FastAPI:
    """The API. ``readiness`` returns named checks (e.g. ``{"store": True, "broker": False}``);
    without one, only the store is checked. ``on_action`` tells the ops service about a
    person's incident action after it is committed. ``registry`` defaults to
    ``settings.registry`` (or the bundled demo registry)."""
    reg = registry if registry is not None else load_registry(settings.registry)
    now = clock or (lambda: datetime.now(UTC))
    metrics = ApiMetrics(feed)
    state = AppState(
        settings=settings,
        repo=repo,
        feed=feed,
        registry=reg,
        tokens=TokenService(
            settings.signing_key(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl_s=settings.access_token_ttl_s,
            refresh_ttl_s=settings.refresh_token_ttl_s,
            clock=now,
        ),
        passwords=passwords or Passwords(),
        limiter=LoginLimiter(
            attempts_per_ip=settings.login_attempts_per_ip,
            failures_per_user=settings.login_failures_per_user,
            window_s=settings.login_window_s,
        ),
        readiness=readiness or (lambda: {"store": repo.ping()}),
        metrics=metrics,
        kpis=KpiService(repo, reg, settings, now),
        on_action=on_action,
        clock=now,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_publish_kpis(state), name="smartward-kpi-publisher")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="smartward — Trung tâm điều hành / Operations center API",
        version="1.0.0",
        description="Phường thông minh Nam Định / Nam Định smart wards. Errors: "
        '`{"error": code, "detail": {"vi": ..., "en": ...}}`.',
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    app.state.smartward = state
    install_handlers(app)
    api = APIRouter(prefix=API_PREFIX)
    for module in (auth, me, sites, gateways, sensors, readings, alerts, incidents, stream, admin):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(ops.router)
    # Outermost last: metrics see every answer, the 413s of the body limit included.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


async def _publish_kpis(state: AppState) -> None:
    """Every ``kpi_interval_s``, while anyone is watching, each site's KPIs on the stream."""
    interval = state.settings.kpi_interval_s
    while True:
        await asyncio.sleep(interval)
        if state.feed.stats.subscribers == 0:
            continue
        for site in list(state.registry.sites):
            try:
                overview = await run_in_threadpool(state.kpis.site_overview, site)
            except RepositoryError as exc:
                logger.warning("kpi for %s not published: %s", site, exc)
                continue
            except Exception:
                logger.exception("kpi for %s failed", site)
                continue
            state.feed.publish("kpi", site, overview.model_dump(mode="json"))
