"""Error bodies: ``{"error": code, "detail": {"vi": ..., "en": ...}}``, texts from the one
message catalog (ops_center/messages.py). Every handler here turns its exception into that
shape, so a client (and the OpenAPI schema) sees one error format for every status."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ops_center.adapters.repository import RepositoryUnavailable
from ops_center.messages import message

logger = logging.getLogger(__name__)


class Localized(BaseModel):
    vi: str
    en: str


class FieldError(BaseModel):
    loc: list[str]
    msg: str


class ErrorBody(BaseModel):
    error: str
    detail: Localized
    fields: list[FieldError] | None = None


class ApiError(Exception):
    """Raised by routes and dependencies; rendered by :func:`install_handlers`."""

    def __init__(
        self, status: int, code: str, *, headers: Mapping[str, str] | None = None, **params: object
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.params = params
        self.headers = dict(headers or {})


def error_response(
    status: int,
    code: str,
    *,
    headers: Mapping[str, str] | None = None,
    fields: list[FieldError] | None = None,
    params: Mapping[str, object] | None = None,
) -> JSONResponse:
    m = message(code, **(params or {}))
    body = ErrorBody(error=code, detail=Localized(vi=m.vi, en=m.en), fields=fields)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=dict(headers or {}))


# Documented on every router, so the OpenAPI schema says what the error bodies look like
# (and schema-driven tests check them) instead of FastAPI's default validation shape.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": desc}
    for status, desc in {
        400: "Bad request",
        401: "Not authenticated / bad token",
        403: "Role may not act",
        404: "Not found (or outside the user's scope)",
        409: "Conflict with the current state",
        413: "Body too large",
        422: "Invalid input or unbounded query",
        429: "Too many requests",
        503: "Store unavailable",
    }.items()
}

_STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation",
    429: "too_many_requests",
    503: "not_ready",
}


def allowed_methods(request: Request) -> str:
    """The ``Allow`` of a 405 (RFC 9110 §15.5.6): every method of every route of the path.
    Starlette names only the first route's, wrong for a collection served by two routes
    (``GET`` and ``POST /api/v1/maintenance``)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def install_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, headers=exc.headers, params=exc.params)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields = [
            FieldError(loc=[str(p) for p in e.get("loc", ())], msg=str(e.get("msg", "")))
            for e in exc.errors()
        ][:20]
        names = ", ".join(".".join(f.loc[1:] or f.loc) for f in fields) or "?"
        return error_response(422, "validation", fields=fields, params={"names": names})

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
        if exc.status_code == 405:
            exc.headers = {**(exc.headers or {}), "Allow": allowed_methods(request)}
        params: dict[str, object] = {}
        if code == "conflict":
            params["state"] = "?"
        elif code == "payload_too_large":
            params["limit"] = "?"
        elif code == "too_many_requests":
            params["retry_after"] = "?"
        elif code == "validation":
            params["names"] = "?"
        return error_response(exc.status_code, code, headers=exc.headers, params=params)

    async def store_unavailable(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("store unavailable: %s", exc)
        return error_response(503, "store_unavailable", headers={"Retry-After": "5"})

    async def internal(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RepositoryUnavailable, store_unavailable)
    app.add_exception_handler(Exception, internal)
