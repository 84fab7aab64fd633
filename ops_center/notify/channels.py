"""Channel adapters: one ``Channel`` port, an adapter per technology.

- ``SmtpChannel``: email over SMTP (``smtp://``, STARTTLS when the server offers it) or SMTPS
  (``smtps://``), standard library ``smtplib`` + ``email``; the subject is RFC 2047 encoded
  UTF-8, so Vietnamese survives every mail system; the Message-ID is the delivery id.
- ``WebhookChannel``: a JSON POST to the contact's ``url``, signed with HMAC-SHA256 over the
  raw body in ``X-Smartward-Signature: sha256=<hex>``.
- SMS and Zalo ZNS: ops_center/notify/gateways.py.

Errors are classified: ``ChannelError.transient`` (retry with backoff: the server is down, a
timeout, 4xx SMTP replies, HTTP 5xx/429) or permanent (a refused address, HTTP 4xx): the
sender marks a permanent failure ``failed`` at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from typing import Protocol, cast
from urllib.parse import unquote, urlsplit

from ops_center.domain.notify import Contact


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to one contact (``id`` is the delivery id: the notification's, or the
    digest's)."""

    id: str
    subject: str
    text: str
    incident_id: str | None
    site: str | None
    reason: str
    at: datetime
    count: int = 1  # notifications carried (a digest carries several)


class ChannelError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Channel(Protocol):
    def send(self, contact: Contact, message: OutMessage) -> None:
        """Deliver, or raise ``ChannelError``."""


class SmtpChannel:
    def __init__(
        self, url: str, sender: str, *, timeout_s: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SMARTWARD_SMTP_URL must be smtp:// or smtps://, not {parts.scheme!r}")
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender = sender
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context or ssl.create_default_context()

    def build(self, contact: Contact, message: OutMessage) -> Message:
        # email.header.Header (compat32) encodes the subject as RFC 2047 words that carry their
        # spaces inside: the newer email policy folds between encoded words and a reader drops
        # that space (RFC 2047 §6.2), which turned "tiếp nhận" into "tiếpnhận".
        msg = MIMEText(message.text, "plain", "utf-8")
        msg["From"] = self.sender
        msg["To"] = formataddr((contact.name, contact.email or ""), charset="utf-8")
        msg["Subject"] = cast(str, Header(message.subject, "utf-8"))  # compat32 takes a Header
        msg["Date"] = format_datetime(message.at)
        msg["Message-ID"] = f"<{message.id}@smartward>"
        if message.incident_id:
            msg["X-Smartward-Incident"] = message.incident_id
        return msg

    def send(self, contact: Contact, message: OutMessage) -> None:
        if contact.email is None:
            raise ChannelError(f"contact {contact.id} has no email", transient=False)
        msg = self.build(contact, message)
        try:
            client: smtplib.SMTP
            if self.tls:
                client = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout_s, context=self.ssl_context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            with client:
                if not self.tls:
                    client.ehlo()
                    if client.has_extn("starttls"):
                        client.starttls(context=self.ssl_context)
                        client.ehlo()
                if self.user is not None:
                    client.login(self.user, self.password or "")
                client.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _ in exc.recipients.values()]
            raise ChannelError(
                f"recipient refused: {codes}", transient=all(400 <= c < 500 for c in codes)
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise ChannelError(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", transient=exc.smtp_code < 500
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"SMTP unavailable: {exc}", transient=True) from exc


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def post_json(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int, bytes]:
    """POST ``body``; the status and the answer (HTTP errors are answers too). Network errors
    raise a transient ``ChannelError``."""
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8", **headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status), bytes(resp.read(64 * 1024))
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read(64 * 1024))
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        raise ChannelError(f"unreachable: {exc}", transient=True) from exc


def http_status_error(status: int, answer: bytes) -> ChannelError:
    return ChannelError(
        f"HTTP {status}: {answer[:200].decode('utf-8', 'replace')}",
        transient=status >= 500 or status in (408, 429),
    )


class WebhookChannel:
    def __init__(self, secret: bytes, *, timeout_s: float = 10.0) -> None:
        self.secret = secret
        self.timeout_s = timeout_s

    def send(self, contact: Contact, message: OutMessage) -> None:
        if contact.url is None:
            raise ChannelError(f"contact {contact.id} has no url", transient=False)
        doc = {
            "v": 1,
            "id": message.id,
            "incident_id": message.incident_id,
            "site": message.site,
            "contact": contact.id,
            "reason": message.reason,
            "subject": message.subject,
            "text": message.text,
            "count": message.count,
            "at": message.at.isoformat().replace("+00:00", "Z"),
        }
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        status, answer = post_json(
            contact.url,
            body,
            {"X-Smartward-Signature": signature(self.secret, body), "X-Smartward-Delivery": message.id},
            self.timeout_s,
        )
        if not 200 <= status < 300:
            raise http_status_error(status, answer)
