"""``create_app``: the API as a FastAPI application, composed from what the composition
root (``smartward ops serve``, ``smartward demo``) hands it. Nothing is created at import
time; the app's lifespan runs the KPI publisher of the live stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from contract.registry import Registry, load_registry
from ops_center.adapters.factory import open_session_store, open_tt10_reader
from ops_center.adapters.repository import OpsRepository, RepositoryError
from ops_center.api.deps import AppState, Readiness
from ops_center.api.errors import install_handlers
from ops_center.api.headers import SecurityHeaders
from ops_center.api.limits import BodySizeLimit
from ops_center.api.metrics import ApiMetrics, MetricsMiddleware
from ops_center.api.pagecache import BodyCache
from ops_center.api.principals import UserRows
from ops_center.api.routes import (
    admin,
    alerts,
    auth,
    cap,
    catalog,
    commands,
    exports,
    feeds,
    gateways,
    incidents,
    maintenance,
    me,
    notifications,
    ops,
    readings,
    screen_map,
    sensors,
    sites,
    stream,
    users,
)
from ops_center.api.schemas import OverviewOut
from ops_center.api.sta import router as sta
from ops_center.commands.desk import CommandDesk
from ops_center.feed import Feed
from ops_center.security.passwords import Passwords
from ops_center.security.proxies import TrustedProxies
from ops_center.security.ratelimit import LoginLimiter
from ops_center.security.tokens import TokenService
from ops_center.service.actions import ActionHook
from ops_center.service.kpi import KpiService
from ops_center.settings import OpsSettings
from ops_center.web import SCREEN_PATH, WEB_DIR

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
    data_clock: Callable[[], datetime] | None = None,
    passwords: Passwords | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The API. ``readiness`` returns named checks (e.g. ``{"store": True, "broker": False}``);
    without one, only the store is checked. ``on_action`` tells the ops service about a
    person's incident action after it is committed. ``registry`` defaults to
    ``settings.registry`` (or the bundled demo registry). ``on_shutdown`` runs when the app's
    lifespan ends (e.g. closing a repository the app's factory opened). ``data_clock`` (default:
    ``clock``) is the time the readings' freshness is judged against: the demo's simulated clock
    while its scenario replays (KPIs, sensors, the map); tokens and the audit keep ``clock``."""
    reg = registry if registry is not None else load_registry(settings.registry)
    now = clock or (lambda: datetime.now(UTC))
    metrics = ApiMetrics(feed)
    desk = CommandDesk.build(settings, repo, feed, now)  # the command link runs with the lifespan
    desk.register_metrics(metrics.registry)
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
        readiness=desk.readiness(readiness or (lambda: {"store": repo.ping()})),
        metrics=metrics,
        kpis=KpiService(repo.readings, repo.gateways, repo.incidents, reg, settings, data_clock or now,
                        render=sites.overview_json),
        on_action=on_action,
        clock=now,
        users=UserRows(settings.principal_cache_s),
        # Any event of this process's feed (an incident opened or acted on here) makes the
        # pages computed before it stale at once; from elsewhere, ``list_cache_s`` bounds it.
        incident_pages=BodyCache(settings.list_cache_s, generation=lambda: feed.stats.published),
        proxies=TrustedProxies.parse(settings.trusted_proxies),
        sessions=open_session_store(repo),
        tt10=open_tt10_reader(repo),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        blocking = state.blocking = ThreadPoolExecutor(
            max_workers=max(4, settings.db_pool_max), thread_name_prefix="smartward-api"
        )
        task = asyncio.create_task(_publish_kpis(state), name="smartward-kpi-publisher")
        desk.start()
        try:
            yield
        finally:
            await run_in_threadpool(desk.stop)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            state.blocking = None
            await run_in_threadpool(blocking.shutdown)
            await run_in_threadpool(state.kpis.close)
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(
        title="smartward — Trung tâm điều hành / Operations center API",
        version="1.0.0",
        description="Phường thông minh Nam Định / Nam Định smart wards. Errors: "
        '`{"error": code, "detail": {"vi": ..., "en": ...}}`.',
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    app.state.smartward = state
    app.state.commands = desk
    install_handlers(app)
    include_flat(app.router, cap.router, prefix=API_PREFIX)  # before incidents: /incidents/{id}.cap
    for module in (auth, me, catalog, sites, gateways, sensors, readings, alerts, incidents, stream, admin):
        include_flat(app.router, module.router, prefix=API_PREFIX)
    include_flat(app.router, maintenance.router, prefix=API_PREFIX)
    include_flat(app.router, commands.router, prefix=API_PREFIX)
    include_flat(app.router, exports.router, prefix=API_PREFIX)
    include_flat(app.router, feeds.router, prefix=API_PREFIX)
    include_flat(app.router, notifications.router, prefix=API_PREFIX)
    notifications.register_notification_metrics(metrics.registry, repo)
    include_flat(app.router, screen_map.router, prefix=API_PREFIX)
    include_flat(app.router, users.router, prefix=API_PREFIX)  # admin: issue #14
    include_flat(app.router, ops.router)
    include_flat(app.router, sta.router)  # OGC SensorThings API 1.1 at /sta/v1.1 (read-only)
    # The operations screen (static files, ops_center/web/): under its own prefix, so a catch-all
    # mount never answers for an API path (nor turns an API 405 into its 404).
    app.mount(SCREEN_PATH, StaticFiles(directory=WEB_DIR, html=True), name="screen")
    # Outermost last: metrics see every answer, the 413s of the body limit included.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeaders, map_tiles=settings.map_tiles)  # on every answer
    return app


def include_flat(target: APIRouter, router: APIRouter, *, prefix: str = "") -> None:
    """``target.include_router(router, prefix=prefix)``, with the routes copied into ``target``.

    FastAPI 0.16x keeps an included router as a node that is matched again on every request
    (each included router and each of its routes visited in turn, with its own bookkeeping):
    with the API's eleven routers that was most of a bare request's cost. Copying the routes,
    as FastAPI's ``include_router`` itself did before, matches a request against one flat list.
    The OpenAPI document is the same (a test compares it)."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"include_flat copies API routes only, not {route!r}")
        target.add_api_route(
            prefix + route.path,
            route.endpoint,
            response_model=route.response_model,
            status_code=route.status_code,
            tags=route.tags,
            dependencies=route.dependencies,
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=route.responses,
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            callbacks=route.callbacks,
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
        )


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
            answer = OverviewOut.model_validate(overview, from_attributes=True)
            state.feed.publish("kpi", site, answer.model_dump(mode="json"))
