"""SMS and Zalo ZNS through HTTP gateways, in the request shapes their providers document.

- ``EsmsChannel``: eSMS.vn's JSON send API (``SendMultipleMessage_V4_post_json``): a JSON
  body with ``ApiKey``, ``SecretKey``, ``Phone``, ``Content``, ``Brandname``, ``SmsType`` (2:
  customer-care brandname), ``IsUnicode`` and ``RequestId`` (the provider refuses a second
  request with the same id, so a retry after a lost answer does not send twice). The answer
  is ``{"CodeResult": "100", "SMSID": ...}`` on success; ``99`` (unknown error) and ``103``
  (balance) are retried, other codes (``101`` wrong keys, ``104`` unknown brandname...) are
  permanent.
- ``ZaloZnsChannel``: Zalo Notification Service, ``POST /message/template`` with the Official
  Account's token in the ``access_token`` header and ``{"phone": "849...", "template_id",
  "template_data": {...}, "tracking_id"}``; the answer is ``{"error": 0, "data": {"msg_id"}}``
  on success, a negative ``error`` otherwise (permanent: a template or phone the OA may not use
  will not get better by retrying). The approved template has the parameters ``severity``,
  ``title``, ``site``, ``time``, ``detail`` and ``link`` (docs/notifications.md).

``SMARTWARD_SMS_URL`` / ``SMARTWARD_ZALO_URL`` are the full endpoint URLs (so a test points
them at a local server).
"""

from __future__ import annotations

import json
from typing import Final

from ops_center.domain.notify import Contact
from ops_center.notify.channels import ChannelError, OutMessage, http_status_error, post_json
from ops_center.notify.render import vn_time

ESMS_OK: Final = "100"
ESMS_TRANSIENT: Final = frozenset({"99", "103"})
# 459 characters: at most seven 67-character parts of a concatenated Unicode SMS (Vietnamese
# needs UCS-2); the messages are written to fit well within it (ops_center/notify/render.py).
SMS_MAX_CHARS: Final = 459


def phone_84(phone: str) -> str:
    """``+84912345678`` / ``0912345678`` → ``84912345678`` (the form both gateways take)."""
    digits = phone.lstrip("+")
    return "84" + digits[1:] if digits.startswith("0") else digits


def _answer(answer: bytes) -> dict[str, object]:
    try:
        doc = json.loads(answer)
    except ValueError as exc:
        raise ChannelError(f"not JSON: {answer[:120]!r}", transient=True) from exc
    if not isinstance(doc, dict):
        raise ChannelError(f"unexpected answer: {answer[:120]!r}", transient=True)
    return doc


class EsmsChannel:
    def __init__(
        self, url: str, api_key: str, secret_key: str, brandname: str, *, timeout_s: float = 10.0
    ) -> None:
        self.url, self.api_key, self.secret_key, self.brandname = url, api_key, secret_key, brandname
        self.timeout_s = timeout_s

    def send(self, contact: Contact, message: OutMessage) -> None:
        if contact.phone is None:
            raise ChannelError(f"contact {contact.id} has no phone", transient=False)
        text = message.text if len(message.text) <= SMS_MAX_CHARS else message.text[: SMS_MAX_CHARS - 1] + "…"
        doc = {
            "ApiKey": self.api_key,
            "SecretKey": self.secret_key,
            "Phone": phone_84(contact.phone),
            "Content": text,
            "Brandname": self.brandname,
            "SmsType": "2",
            "IsUnicode": "1",
            "RequestId": message.id,
        }
        status, answer = post_json(self.url, json.dumps(doc, ensure_ascii=False).encode(), {}, self.timeout_s)
        if status != 200:
            raise http_status_error(status, answer)
        res = _answer(answer)
        code = str(res.get("CodeResult", ""))
        if code != ESMS_OK:
            raise ChannelError(
                f"eSMS CodeResult {code}: {res.get('ErrorMessage', '')}", transient=code in ESMS_TRANSIENT
            )


class ZaloZnsChannel:
    def __init__(self, url: str, access_token: str, template_id: str, *, timeout_s: float = 10.0) -> None:
        self.url, self.access_token, self.template_id = url, access_token, template_id
        self.timeout_s = timeout_s

    def send(self, contact: Contact, message: OutMessage) -> None:
        if contact.phone is None:
            raise ChannelError(f"contact {contact.id} has no phone", transient=False)
        lines = message.text.split("\n")
        link = next((ln for ln in reversed(lines) if ln.startswith(("http://", "https://"))), "")
        data = {
            "title": message.subject[:200],
            "detail": lines[0][:200] if lines else "",
            "link": link[:200],
            "time": vn_time(message.at),
            "site": message.site or "",
            "severity": message.subject.split("]", 1)[0].lstrip("[")[:30],
        }
        doc = {
            "phone": phone_84(contact.phone),
            "template_id": self.template_id,
            "template_data": data,
            "tracking_id": message.id,
        }
        status, answer = post_json(
            self.url,
            json.dumps(doc, ensure_ascii=False).encode(),
            {"access_token": self.access_token},
            self.timeout_s,
        )
        if status != 200:
            raise http_status_error(status, answer)
        res = _answer(answer)
        error = res.get("error")
        if error != 0:
            raise ChannelError(f"Zalo ZNS error {error}: {res.get('message', '')}", transient=False)
