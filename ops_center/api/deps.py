"""Dependencies of the routes: the app's state, the current user, and ``get_scope``, the ONE
place that decides what a user may see (used by every route, the live stream, exports and
list filters; S3/S4 of docs/reliability.md are tested against it route by route)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer

from contract.registry import Registry
from ops_center.adapters.ports import (
    GatewayRepository,
    IncidentRepository,
    MaintenanceRepository,
    ReadingsReader,
    SecurityEventRepository,
    Tt10Reader,
    UserRepository,
)
from ops_center.adapters.records import AuditEntry, AuditOutcome, UserRecord
from ops_center.adapters.repository import OpsRepository, RepositoryError
from ops_center.adapters.sessions import MemorySessionStore, SessionStore
from ops_center.api.errors import ApiError
from ops_center.api.metrics import ApiMetrics
from ops_center.api.pagecache import BodyCache
from ops_center.api.principals import KnownUser, UserRows
from ops_center.domain.roles import Action
from ops_center.feed import Feed
from ops_center.security.passwords import Passwords
from ops_center.security.proxies import TrustedProxies
from ops_center.security.ratelimit import LoginLimiter
from ops_center.security.scope import Scope
from ops_center.security.tokens import TokenClaims, TokenError, TokenService
from ops_center.service.actions import ActionHook
from ops_center.service.kpi import KpiService
from ops_center.settings import OpsSettings

logger = logging.getLogger(__name__)

Readiness = Callable[[], Mapping[str, bool]]
P = ParamSpec("P")
T = TypeVar("T")
TOKEN_URL = "/api/v1/auth/token"


@dataclass
class AppState:
    settings: OpsSettings
    repo: OpsRepository
    feed: Feed
    registry: Registry
    tokens: TokenService
    passwords: Passwords
    limiter: LoginLimiter
    readiness: Readiness
    metrics: ApiMetrics
    kpis: KpiService
    on_action: ActionHook | None
    clock: Callable[[], datetime]
    users: UserRows
    # Incident pages by (sites narrowed to the scope, state, limit, offset): pagecache.py.
    incident_pages: BodyCache[tuple[tuple[str, ...] | None, str | None, int, int]]
    # The app's own threads for blocking calls (the store), while its lifespan runs.
    blocking: ThreadPoolExecutor | None = None
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    sessions: SessionStore = field(default_factory=MemorySessionStore)
    tt10: Tt10Reader | None = None  # the TT 10/2021 upload log; None when the store has none

    def now(self) -> datetime:
        return self.clock()

    async def offload(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` off the event loop. On the app's own executor: a plain
        ``run_in_executor`` costs about half the CPU of FastAPI's ``run_in_threadpool`` (anyio's
        capacity limiter and run-variable bookkeeping), paid on every request of the hot
        routes (docs/performance.md, "Ops API"). Without a running lifespan, on FastAPI's pool."""
        executor = self.blocking
        if executor is None:
            return await run_in_threadpool(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(
            executor, functools.partial(fn, *args, **kwargs)
        )

    def audit(
        self,
        request: Request | None,
        *,
        actor: str,
        action: str,
        outcome: AuditOutcome,
        target: str | None = None,
        site: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append to the audit log. A failure to write is logged and counted, and does not
        change the answer the user gets (the request's own outcome stays what it was)."""
        entry = AuditEntry(
            at=self.now(),
            actor=actor,
            action=action,
            outcome=outcome,
            target=target,
            site=site,
            ip=client_ip(request),
            detail=detail,
        )
        try:
            self.repo.users.append_audit(entry)
        except RepositoryError:
            self.metrics.audit_errors.inc()
            logger.exception("could not write audit entry %s %s", action, target)


def client_ip(request: Request | None) -> str | None:
    """The client's address: the TCP peer, or what ``X-Forwarded-For`` says when the peer is
    one of ``SMARTWARD_TRUSTED_PROXIES`` (ops_center/security/proxies.py)."""
    if request is None or request.client is None:
        return None
    peer = request.client.host
    state: AppState | None = getattr(request.app.state, "smartward", None)
    if state is None or not state.proxies.networks:
        return peer
    return state.proxies.client(peer, request.headers.getlist("x-forwarded-for"))


# The dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in
# the thread pool, a hop that cost more than the work (docs/performance.md, "Ops API"). The
# ones that read the store hop to the pool once, explicitly.


async def get_state(request: Request) -> AppState:
    return app_state(request)


def app_state(request: Request) -> AppState:
    """The state without a dependency: for the hot routes, where each dependency FastAPI
    solves costs tens of µs per request."""
    state: AppState = request.app.state.smartward
    return state


StateDep = Annotated[AppState, Depends(get_state)]


# The ports of the ops store a route uses (ops_center/adapters/ports.py): a route takes the one
# or two it needs, never the whole store.


def _port(pick: Callable[[AppState], T]) -> Callable[[Request], Awaitable[T]]:
    async def get(request: Request) -> T:
        return pick(app_state(request))

    return get


IncidentsDep = Annotated[IncidentRepository, Depends(_port(lambda s: s.repo.incidents))]
GatewaysDep = Annotated[GatewayRepository, Depends(_port(lambda s: s.repo.gateways))]
UsersDep = Annotated[UserRepository, Depends(_port(lambda s: s.repo.users))]
SecurityEventsDep = Annotated[SecurityEventRepository, Depends(_port(lambda s: s.repo.security))]
MaintenanceDep = Annotated[MaintenanceRepository, Depends(_port(lambda s: s.repo.maintenance))]
ReadingsDep = Annotated[ReadingsReader, Depends(_port(lambda s: s.repo.readings))]
Tt10Dep = Annotated[Tt10Reader | None, Depends(_port(lambda s: s.tt10))]  # None: the store has no log

oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    user: UserRecord
    claims: TokenClaims
    scope: Scope


def _unauthorized(code: str = "invalid_token") -> ApiError:
    return ApiError(401, code, headers={"WWW-Authenticate": "Bearer"})


def _claims(state: AppState, token: str | None) -> TokenClaims:
    if not token:
        raise _unauthorized("not_authenticated")
    try:
        return state.tokens.verify(token, "access")
    except TokenError as exc:
        logger.info("refused token: %s", exc)
        raise _unauthorized() from exc


def _read_user(state: AppState, name: str) -> KnownUser | None:
    """The user row now (and the scope it gives), remembered for ``principal_cache_s``."""
    read_at = state.users.now()
    user = state.repo.users.get_user(name)
    if user is None:
        state.users.forget(name)
        return None
    revoked = state.sessions.revoked_for(name, state.now())
    known = KnownUser(
        user, Scope.for_user(user.name, user.role, user.sites, state.registry.sites), read_at, revoked
    )
    state.users.put(known.user, known.scope, read_at, revoked)
    return known


def _principal(claims: TokenClaims, known: KnownUser | None) -> Principal:
    """Any mismatch between the token and the user row (disabled, token version, role,
    sites) is a 401: the token is stale; so is a token of a revoked session."""
    if known is None:
        raise _unauthorized()
    user = known.user
    if (
        user.disabled
        or user.token_version != claims.ver
        or user.role != claims.role
        or tuple(user.sites) != claims.sites
        or (claims.sid is not None and claims.sid in known.revoked_sessions)
    ):
        raise _unauthorized()
    return Principal(user, claims, known.scope)


def principal_from_token(state: AppState, token: str | None) -> Principal:
    """Token -> the user as stored now -> their scope (blocking: reads the store)."""
    claims = _claims(state, token)
    return _principal(claims, _read_user(state, claims.sub))


async def resolve_principal(state: AppState, token: str | None) -> Principal:
    """``principal_from_token`` with the user row read at most ``principal_cache_s`` ago
    (ops_center/api/principals.py): on the event loop when it was, else one trip to the
    pool. The token itself is checked on every request (a verified one is remembered by
    the token service)."""
    claims = _claims(state, token)
    known = state.users.get(claims.sub)
    if known is None:
        known = await state.offload(_read_user, state, claims.sub)
    return _principal(claims, known)


async def principal_holds(state: AppState, claims: TokenClaims) -> bool:
    """Whether the user row (read at most ``principal_cache_s`` ago) still backs ``claims``: for
    an answer that outlives the request it was authorised for (the live stream). A store that
    cannot tell is a no (the client reconnects and is asked again)."""
    known = state.users.get(claims.sub)
    try:
        if known is None:
            known = await state.offload(_read_user, state, claims.sub)
        _principal(claims, known)
    except (ApiError, RepositoryError):
        return False
    return True


async def get_principal(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal:
    # The state is read here rather than through ``StateDep``: each dependency FastAPI
    # resolves costs tens of µs per request, on every route.
    principal = await resolve_principal(app_state(request), token)
    request.state.actor = principal.user.name
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_scope(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> Scope:
    # Resolves the principal itself rather than through ``PrincipalDep``: one dependency
    # fewer for FastAPI to solve on every scoped request.
    return (await get_principal(request, token)).scope


ScopeDep = Annotated[Scope, Depends(get_scope)]


def principal_from_ticket(state: AppState, ticket: str) -> Principal:
    """A stream ticket (single use, ``STREAM_TICKET_TTL_S``) -> the principal of the access
    token it was issued against, checked against the user row as a token is (blocking)."""
    grant = state.sessions.redeem_ticket(ticket, state.now())
    if grant is None:
        raise _unauthorized()
    known = _read_user(state, grant.user)
    if known is None:
        raise _unauthorized()
    user = known.user
    claims = TokenClaims(
        sub=user.name, role=user.role, sites=tuple(user.sites), typ="access", ver=grant.token_version,
        exp=grant.access_expires_at, jti="ticket", sid=grant.session,
    )
    return _principal(claims, known)


async def get_stream_principal(
    request: Request,
    state: StateDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    ticket: Annotated[
        str | None,
        Query(
            min_length=16,
            max_length=128,
            pattern=r"^[A-Za-z0-9_-]+$",
            description=(
                "For EventSource clients, which cannot set headers: a ticket from "
                "POST /api/v1/stream/ticket (single use, 30 s). Never a token in the URL."
            ),
        ),
    ] = None,
) -> Principal:
    if token:
        principal = await resolve_principal(state, token)
    elif ticket is not None:
        principal = await state.offload(principal_from_ticket, state, ticket)
    else:
        raise _unauthorized("not_authenticated")
    request.state.actor = principal.user.name
    return principal


StreamPrincipalDep = Annotated[Principal, Depends(get_stream_principal)]


# --- guards: every denial is answered the same way and audited -----------------------------------


def require_visible(
    request: Request, state: AppState, scope: Scope, site: str | None, *, target: str, exists: bool = True
) -> None:
    """404 unless ``scope`` sees ``site``. A real resource of another site is audited as a
    scope denial (S3); a resource that does not exist at all is just a 404."""
    if exists and site is not None and scope.can_see(site):
        return
    if exists:
        state.metrics.denials.labels("scope").inc()
        state.audit(
            request, actor=scope.user, action="scope_denied", outcome="denied", target=target, site=site
        )
    raise ApiError(404, "not_found")


def require_action(
    request: Request, state: AppState, scope: Scope, action: Action, *, target: str, site: str | None = None
) -> None:
    if scope.may(action):
        return
    state.metrics.denials.labels("role").inc()
    state.audit(
        request, actor=scope.user, action=f"denied:{action}", outcome="denied", target=target, site=site
    )
    raise ApiError(403, "forbidden")


async def get_admin_scope(request: Request, state: StateDep, scope: ScopeDep) -> Scope:
    if not scope.may("admin"):  # the denial is audited (a write): in the pool
        await state.offload(require_action, request, state, scope, "admin", target=request.url.path)
    return scope


AdminScopeDep = Annotated[Scope, Depends(get_admin_scope)]


async def get_city_scope(request: Request, state: StateDep, scope: ScopeDep) -> Scope:
    if not scope.may("city.read"):
        await state.offload(require_action, request, state, scope, "city.read", target=request.url.path)
    return scope


CityScopeDep = Annotated[Scope, Depends(get_city_scope)]


def list_filter(request: Request, state: AppState, scope: Scope, site: str | None) -> tuple[str, ...] | None:
    """The site filter of a list endpoint: silently narrowed to the scope; asking for a
    site outside it is audited and answers an empty list."""
    sites = scope.narrow(site)
    if site is not None and not sites and site in state.registry.sites:
        state.metrics.denials.labels("filter").inc()
        state.audit(
            request,
            actor=scope.user,
            action="scope_filtered",
            outcome="denied",
            target=request.url.path,
            site=site,
        )
    return sites


def utcnow() -> datetime:
    return datetime.now(UTC)
