"""Security headers on every answer of the API process: the API, the operations screen
(``/screen/``), errors, 404s and the 413s of the body limit alike (issue #10, docs/security.md).

- ``Content-Security-Policy``: scripts, styles, fonts and connections only from the API's own
  origin (the screen has no inline script, no ``on*=`` attribute, no inline ``style=``); images
  also from ``data:``/``blob:`` (map markers) and from the origin of ``SMARTWARD_MAP_TILES``
  when set; no plugins, no ``<base>``, forms only to itself; never framed
  (``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for older browsers).
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``.

FastAPI's own ``/docs`` and ``/redoc`` pages load Swagger UI / ReDoc from a CDN with an inline
bootstrap script: they get a policy that allows exactly that and nothing else of ours changes.
The headers are computed once; the middleware adds them to the start of each answer, and never
replaces one a route set itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from ops_center.api.metrics import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS: Final = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
_DOCS_CDN: Final = "https://cdn.jsdelivr.net"


def tiles_origin(url: str | None) -> str | None:
    """The origin (scheme://host[:port]) of a tile URL template such as
    ``https://tiles.example.vn/{z}/{x}/{y}.png``, or None when unset or not http(s)."""
    if not url:
        return None
    parts = urlsplit(url.replace("{s}", "a"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    # A subdomain template ({s}.tile...) may use any of its letters: allow the wildcard.
    host = parts.netloc.rsplit("@", 1)[-1]
    if "{s}" in url:
        host = "*." + host.split(".", 1)[1] if "." in host else host
    return f"{parts.scheme}://{host}"


def content_security_policy(map_tiles: str | None = None) -> str:
    img = ["'self'", "data:", "blob:"]
    origin = tiles_origin(map_tiles)
    if origin is not None:
        img.append(origin)
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(img)}",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


DOCS_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        f"script-src 'self' 'unsafe-inline' {_DOCS_CDN}",
        f"style-src 'self' 'unsafe-inline' {_DOCS_CDN}",
        "img-src 'self' data: https://fastapi.tiangolo.com",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


def _common(policy: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


class SecurityHeaders:
    def __init__(self, app: ASGIApp, map_tiles: str | None = None) -> None:
        self.app = app
        self.headers = _common(content_security_policy(map_tiles))
        self.docs_headers = _common(DOCS_POLICY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.docs_headers if scope.get("path") in DOCS_PATHS else self.headers

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                msg["headers"] = _merged(msg.get("headers", ()), extra)
            await send(msg)

        await self.app(scope, receive, send_with_headers)


Headers = list[tuple[bytes, bytes]]


def _merged(headers: Sequence[tuple[bytes, bytes]], extra: Headers) -> Headers:
    out = list(headers)
    present = {name.lower() for name, _ in out}
    out.extend((name, value) for name, value in extra if name not in present)
    return out
