"""Access and refresh tokens: JWT (RFC 7519) signed with HS256 and nothing else.

The algorithm is pinned on both sides: a token whose header says anything but ``HS256``
(``none``, ``RS256`` with our secret as a "public key"...) is refused before its signature
is even looked at (RFC 8725 §3.1). ``iss``, ``aud``, ``exp``, ``iat``, ``sub`` and ``typ``
are required. Claims are only a cache of the user row: the API re-reads the user (at most
``principal_cache_s`` apart, ops_center/api/principals.py), so a disabled user or a changed
role takes effect within that bound, and ``ver`` (the user's token version, bumped by
``passwd``/``disable``) revokes every token issued before.

A verified access token is remembered (bounded, until it expires): the signature and claims
of a given token string cannot change, and every open operations screen presents the same
token twice a second (docs/performance.md, "Ops API"). A different string, however close
(a tampered claim, another signature), is verified in full.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import jwt

from ops_center.domain.roles import Role, is_role

ALGORITHM: Final = "HS256"
LEEWAY_S: Final = 5
VERIFIED_MAX: Final = 4096  # access tokens remembered as verified (LRU)
TokenType = Literal["access", "refresh"]


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    sub: str
    role: Role
    sites: tuple[str, ...]
    typ: TokenType
    ver: int
    exp: datetime
    jti: str
    sid: str | None = None  # the login session (ops_center/adapters/sessions.py)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in_s: int
    jti: str = ""
    expires_at: datetime | None = None


class TokenService:
    def __init__(
        self,
        key: str,
        *,
        issuer: str,
        audience: str,
        access_ttl_s: int,
        refresh_ttl_s: int,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not key:
            raise ValueError("empty signing key")
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()
        self._verified_lock = threading.Lock()

    def issue(
        self,
        typ: TokenType,
        *,
        user: str,
        role: Role,
        sites: tuple[str, ...],
        version: int,
        session: str | None = None,
    ) -> IssuedToken:
        now = self._clock()
        ttl = self.access_ttl_s if typ == "access" else self.refresh_ttl_s
        jti = secrets.token_hex(8)
        exp = int((now + timedelta(seconds=ttl)).timestamp())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": exp,
            "jti": jti,
            "typ": typ,
            "role": role,
            "sites": list(sites),
            "ver": version,
        }
        if session is not None:
            claims["sid"] = session
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return IssuedToken(token, ttl, jti, datetime.fromtimestamp(exp, UTC))

    def verify(self, token: str, typ: TokenType) -> TokenClaims:
        if typ != "access":  # refresh tokens are rare (and rotated): always in full
            return self._verify(token, typ)
        with self._verified_lock:
            known = self._verified.get(token)
            if known is not None:
                self._verified.move_to_end(token)
        if known is not None:
            if self._clock() < known.exp + timedelta(seconds=LEEWAY_S):
                return known
            with self._verified_lock:
                self._verified.pop(token, None)
        claims = self._verify(token, typ)  # raises for an expired one, as on first sight
        with self._verified_lock:
            self._verified[token] = claims
            while len(self._verified) > VERIFIED_MAX:
                self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str, typ: TokenType) -> TokenClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"algorithm {header.get('alg')!r} is not accepted")
        try:
            raw = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "typ", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from exc
        role, sites, ver = raw.get("role"), raw.get("sites"), raw.get("ver")
        if raw.get("typ") != typ:
            raise TokenError(f"expected a {typ} token")
        if not isinstance(role, str) or not is_role(role):
            raise TokenError("bad role claim")
        if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
            raise TokenError("bad sites claim")
        if not isinstance(ver, int) or isinstance(ver, bool):
            raise TokenError("bad ver claim")
        sub = raw["sub"]
        if not isinstance(sub, str) or not sub:
            raise TokenError("bad sub claim")
        sid = raw.get("sid")
        if sid is not None and not isinstance(sid, str):
            raise TokenError("bad sid claim")
        return TokenClaims(
            sub=sub,
            role=role,  # type: ignore[arg-type]  # checked by is_role above
            sites=tuple(sites),
            typ=typ,
            ver=ver,
            exp=datetime.fromtimestamp(int(raw["exp"]), UTC),
            jti=str(raw["jti"]),
            sid=sid,
        )
