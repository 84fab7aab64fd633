"""``POST /api/v1/auth/token`` (OAuth2 password form), ``POST /api/v1/auth/refresh`` and
``POST /api/v1/auth/logout``.

Each login starts a session (ops_center/adapters/sessions.py): its refresh token is rotated
on every exchange, and a refresh token presented twice revokes the whole session (the copy a
thief holds and the user's own alike); logging out revokes it as well. Access tokens name
their session and are refused once it is revoked (within ``principal_cache_s``)."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from contract.bounds import is_safe_text
from ops_center.adapters.records import UserRecord
from ops_center.adapters.sessions import SessionRecord
from ops_center.api.deps import AppState, PrincipalDep, StateDep, UsersDep, client_ip
from ops_center.api.errors import ERROR_RESPONSES, ApiError
from ops_center.api.schemas import LogoutOut, RefreshIn, TokenOut
from ops_center.security.tokens import IssuedToken, TokenError, TokenType

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/auth", tags=["auth"], responses=ERROR_RESPONSES)


def _pair(state: AppState, user: UserRecord, session: str) -> tuple[IssuedToken, IssuedToken]:
    def one(typ: TokenType) -> IssuedToken:
        return state.tokens.issue(
            typ, user=user.name, role=user.role, sites=tuple(user.sites), version=user.token_version,
            session=session,
        )

    return one("access"), one("refresh")


def _out(access: IssuedToken, refresh: IssuedToken) -> TokenOut:
    return TokenOut(access_token=access.token, expires_in=access.expires_in_s, refresh_token=refresh.token)


def _start_session(state: AppState, user: UserRecord) -> TokenOut:
    session = secrets.token_urlsafe(16)
    access, refresh = _pair(state, user, session)
    assert refresh.expires_at is not None
    state.sessions.start(SessionRecord(id=session, user=user.name, refresh_jti=refresh.jti,
                                       created_at=state.now(), expires_at=refresh.expires_at))
    return _out(access, refresh)


@router.post("/token", summary="Đăng nhập / log in (OAuth2 password flow)")
def login(
    request: Request, state: StateDep, users: UsersDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> TokenOut:
    ip = client_ip(request) or "?"
    # A control character in a name or password is no credential: 422 before the store
    # (PostgreSQL refuses NUL in text) and before the audit log that would repeat it.
    for field, value in (("username", form.username), ("password", form.password)):
        if not is_safe_text(value):
            raise ApiError(422, "validation", names=field)
    name = form.username[:64]
    wait = state.limiter.check(ip, name)
    if wait is not None:
        state.metrics.rate_limited.inc()
        state.audit(request, actor=name, action="login", outcome="denied", detail="rate limited")
        raise ApiError(429, "too_many_requests", headers={"Retry-After": str(wait)}, retry_after=wait)
    state.limiter.attempted(ip)
    user = users.get_user(name) if len(form.username) <= 64 else None
    valid = state.passwords.verify(user.password_hash if user else None, form.password)
    if user is None or not valid or user.disabled:
        state.limiter.failed(name)
        state.metrics.login_failures.inc()
        reason = (
            "unknown user" if user is None else ("disabled" if user.disabled and valid else "bad password")
        )
        state.audit(request, actor=name, action="login", outcome="failed", detail=reason)
        raise ApiError(401, "bad_credentials", headers={"WWW-Authenticate": "Bearer"})
    state.limiter.succeeded(name)
    state.audit(request, actor=user.name, action="login", outcome="ok")
    return _start_session(state, user)


@router.post("/refresh", summary="Làm mới phiên / refresh the access token (the refresh token rotates)")
def refresh(request: Request, state: StateDep, users: UsersDep, body: RefreshIn) -> TokenOut:
    try:
        claims = state.tokens.verify(body.refresh_token, "refresh")
    except TokenError as exc:
        raise ApiError(401, "invalid_token", headers={"WWW-Authenticate": "Bearer"}) from exc
    user = users.get_user(claims.sub)
    if (
        claims.sid is None  # issued before sessions existed: log in again
        or user is None
        or user.disabled
        or user.token_version != claims.ver
        or user.role != claims.role
        or tuple(user.sites) != claims.sites
    ):
        state.audit(request, actor=claims.sub, action="token_refresh", outcome="failed", detail="stale token")
        raise ApiError(401, "invalid_token", headers={"WWW-Authenticate": "Bearer"})
    access, fresh = _pair(state, user, claims.sid)
    assert fresh.expires_at is not None
    outcome = state.sessions.rotate(claims.sid, claims.jti, fresh.jti, fresh.expires_at, state.now())
    if outcome != "rotated":
        if outcome == "reused":
            state.users.forget(user.name)  # this process refuses the session's access tokens now
            state.metrics.denials.labels("token_reuse").inc()
            logger.warning("refresh token reused: session of %s revoked", user.name)
        detail = "refresh token reused: session revoked" if outcome == "reused" else "session ended"
        state.audit(request, actor=user.name, action="token_refresh", outcome="denied", detail=detail)
        raise ApiError(401, "invalid_token", headers={"WWW-Authenticate": "Bearer"})
    return _out(access, fresh)


@router.post("/logout", summary="Đăng xuất / log out (revokes the session)")
def logout(request: Request, state: StateDep, principal: PrincipalDep) -> LogoutOut:
    sid = principal.claims.sid
    revoked = sid is not None and state.sessions.revoke(sid, "logout", state.now())
    state.users.forget(principal.user.name)  # this process refuses the session's tokens at once
    state.audit(request, actor=principal.user.name, action="logout", outcome="ok")
    return LogoutOut(revoked=revoked)
