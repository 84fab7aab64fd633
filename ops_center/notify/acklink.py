"""Acknowledge links: signed, short-lived, single-use, bound to one contact.

A link names one notification (so one incident and one contact) and an expiry, signed with
HMAC-SHA256 under ``SMARTWARD_SECRET_KEY`` (a separate derived key, so an acknowledge token
can never pass as an access token or the other way round). Single use is the store's
``notifications.ack_used_at`` (set once). The link opens a page with one button: the
acknowledgement itself is a POST, so a mail scanner or a chat app's link preview that fetches
the URL acknowledges nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

_CONTEXT = b"smartward-ack-link-v1"


class AckLinkError(ValueError):
    """Malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class AckClaim:
    notification_id: str
    expires_at: datetime


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest()


def _mac(secret: str, payload: str) -> str:
    digest = hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: str, notification_id: str, expires_at: datetime) -> str:
    payload = f"{notification_id}.{int(expires_at.timestamp())}"
    return f"{payload}.{_mac(secret, payload)}"


def verify(secret: str, token: str, now: datetime) -> AckClaim:
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isalnum() or not parts[1].isdigit() or len(parts[1]) > 12:
        raise AckLinkError("malformed")
    payload = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_mac(secret, payload), parts[2]):
        raise AckLinkError("bad signature")
    expires = datetime.fromtimestamp(int(parts[1]), tz=UTC)
    if now >= expires:
        raise AckLinkError("expired")
    return AckClaim(parts[0], expires)


def ack_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/api/v1/ack/{token}"
