"""``POST /api/v1/auth/token`` (OAuth2 password form) and ``POST /api/v1/auth/refresh``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from contract.bounds import is_safe_text
from ops_center.adapters.records import UserRecord
from ops_center.api.deps import AppState, StateDep, client_ip
from ops_center.api.errors import ERROR_RESPONSES, ApiError
from ops_center.api.schemas import RefreshIn, TokenOut
from ops_center.security.tokens import IssuedToken, TokenError, TokenType

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERROR_RESPONSES)


def _issue(state: AppState, user: UserRecord) -> TokenOut:
    def one(typ: TokenType) -> IssuedToken:
        return state.tokens.issue(
            typ, user=user.name, role=user.role, sites=tuple(user.sites), version=user.token_version
        )

    access, refresh = one("access"), one("refresh")
    return TokenOut(access_token=access.token, expires_in=access.expires_in_s, refresh_token=refresh.token)


@router.post("/token", summary="Đăng nhập / log in (OAuth2 password flow)")
def login(
    request: Request, state: StateDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
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
    user = state.repo.get_user(name) if len(form.username) <= 64 else None
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
    return _issue(state, user)


@router.post("/refresh", summary="Làm mới phiên / refresh the access token")
def refresh(request: Request, state: StateDep, body: RefreshIn) -> TokenOut:
    try:
        claims = state.tokens.verify(body.refresh_token, "refresh")
    except TokenError as exc:
        raise ApiError(401, "invalid_token", headers={"WWW-Authenticate": "Bearer"}) from exc
    user = state.repo.get_user(claims.sub)
    if (
        user is None
        or user.disabled
        or user.token_version != claims.ver
        or user.role != claims.role
        or tuple(user.sites) != claims.sites
    ):
        state.audit(request, actor=claims.sub, action="token_refresh", outcome="failed", detail="stale token")
        raise ApiError(401, "invalid_token", headers={"WWW-Authenticate": "Bearer"})
    return _issue(state, user)
