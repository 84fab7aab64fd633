"""Channel adapters against local servers that record each request and answer as the provider
documents: eSMS.vn's JSON send API, Zalo ZNS's template API, a city system's webhook, and a
real SMTP server (aiosmtpd) for email. Errors are classified transient (retried) or permanent."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ops_center.domain.notify import Contact
from ops_center.notify.channels import ChannelError, OutMessage, SmtpChannel, WebhookChannel
from ops_center.notify.gateways import EsmsChannel, ZaloZnsChannel
from tests.servers.smtp import SmtpServer

Answer = tuple[int, dict[str, Any] | str]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeProvider:
    """A local HTTP server; ``answer`` decides each reply from the request."""

    answer: Callable[[Recorded], Answer]
    requests: list[Recorded] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider(answer=lambda _r: (200, {}))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", "0"))
            rec = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(n))
            fake.requests.append(rec)
            status, doc = fake.answer(rec)
            body = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


CONTACT = Contact(
    "tn-truc-ban", "Trực ban phường Thống Nhất", ("thong-nhat",), "trucban@example.vn", "+84912345678", None
)
AT = datetime(2026, 12, 7, 19, 14, tzinfo=UTC)
MSG = OutMessage(
    id="a1b2c3d4e5f6a7b8c9d0",
    subject="[KHẨN CẤP/EMERGENCY] Sự cố mới: Ngập úng tại Hàn Thuyên — Phường Thống Nhất",
    text="[KHẨN CẤP] Sự cố mới: Ngập úng tại Hàn Thuyên (Phường Thống Nhất), 02:14 08/12. Mực nước 42 cm\n"
    "[EMERGENCY] New incident: Flooding at Han Thuyen (Thong Nhat ward). Water 42 cm\n"
    "https://ioc.example.vn/screen/?incident=inc-1",
    incident_id="inc-1",
    site="thong-nhat",
    reason="opened",
    at=AT,
)


# --- eSMS.vn -------------------------------------------------------------------------------------


def esms_answer(code: str) -> Callable[[Recorded], Answer]:
    def answer(_r: Recorded) -> Answer:
        if code == "100":
            return 200, {"CodeResult": "100", "CountRegenerate": 0, "SMSID": "7f1c9e0e-1b7a-4f1a"}
        return 200, {
            "CodeResult": code,
            "ErrorMessage": {"101": "Sai ApiKey hoặc SecretKey", "99": "Lỗi không xác định"}.get(code, "lỗi"),
        }

    return answer


def test_esms_sends_the_documented_json_request(provider: FakeProvider) -> None:
    provider.answer = esms_answer("100")
    ch = EsmsChannel(
        f"{provider.url}/MainService.svc/json/SendMultipleMessage_V4_post_json/", "KEY", "SECRET", "SMARTWARD"
    )
    ch.send(CONTACT, MSG)
    (req,) = provider.requests
    assert req.path == "/MainService.svc/json/SendMultipleMessage_V4_post_json/"
    assert req.headers["content-type"].startswith("application/json")
    doc = req.json()
    assert doc == {
        "ApiKey": "KEY",
        "SecretKey": "SECRET",
        "Phone": "84912345678",
        "Content": MSG.text,
        "Brandname": "SMARTWARD",
        "SmsType": "2",
        "IsUnicode": "1",
        "RequestId": MSG.id,
    }


@pytest.mark.parametrize(("code", "transient"), [("101", False), ("104", False), ("99", True), ("103", True)])
def test_esms_errors_are_classified(provider: FakeProvider, code: str, transient: bool) -> None:
    provider.answer = esms_answer(code)
    ch = EsmsChannel(provider.url + "/send", "KEY", "SECRET", "SMARTWARD")
    with pytest.raises(ChannelError) as err:
        ch.send(CONTACT, MSG)
    assert err.value.transient is transient and code in str(err.value)


def test_http_gateway_down_or_failing_is_transient(provider: FakeProvider) -> None:
    provider.answer = lambda _r: (503, "upstream unavailable")
    with pytest.raises(ChannelError) as err:
        EsmsChannel(provider.url + "/send", "K", "S", "B").send(CONTACT, MSG)
    assert err.value.transient
    provider.answer = lambda _r: (200, "<html>not json</html>")
    with pytest.raises(ChannelError) as err:
        EsmsChannel(provider.url + "/send", "K", "S", "B").send(CONTACT, MSG)
    assert err.value.transient
    with pytest.raises(ChannelError) as err:
        EsmsChannel("http://127.0.0.1:9/send", "K", "S", "B", timeout_s=2).send(CONTACT, MSG)
    assert err.value.transient


# --- Zalo ZNS --------------------------------------------------------------------------------------


def test_zalo_zns_sends_a_template_message_with_the_oa_token(provider: FakeProvider) -> None:
    provider.answer = lambda _r: (
        200,
        {"error": 0, "message": "Success", "data": {"msg_id": "a1", "sent_time": "1733591640000"}},
    )
    ZaloZnsChannel(provider.url + "/message/template", "OA-TOKEN", "412345").send(CONTACT, MSG)
    (req,) = provider.requests
    assert req.path == "/message/template" and req.headers["access_token"] == "OA-TOKEN"
    doc = req.json()
    assert doc["phone"] == "84912345678" and doc["template_id"] == "412345" and doc["tracking_id"] == MSG.id
    data = doc["template_data"]
    assert data["link"] == "https://ioc.example.vn/screen/?incident=inc-1"
    assert data["severity"] == "KHẨN CẤP/EMERGENCY" and data["detail"].startswith("[KHẨN CẤP] Sự cố mới")
    assert all(isinstance(v, str) and len(v) <= 200 for v in data.values())


def test_zalo_zns_errors_are_permanent(provider: FakeProvider) -> None:
    provider.answer = lambda _r: (200, {"error": -124, "message": "Access token invalid"})
    with pytest.raises(ChannelError) as err:
        ZaloZnsChannel(provider.url + "/message/template", "BAD", "412345").send(CONTACT, MSG)
    assert not err.value.transient and "-124" in str(err.value)


# --- webhook ---------------------------------------------------------------------------------------


def test_webhook_body_is_signed_with_hmac_sha256(provider: FakeProvider) -> None:
    provider.answer = lambda _r: (204, "")
    hook = Contact("city", "Hệ thống thành phố", (), None, None, provider.url + "/hooks/smartward")
    WebhookChannel(b"webhook-secret").send(hook, MSG)
    (req,) = provider.requests
    expected = "sha256=" + hmac.new(b"webhook-secret", req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-smartward-signature"] == expected
    doc = req.json()
    assert doc["incident_id"] == "inc-1" and doc["reason"] == "opened" and doc["contact"] == "city"
    assert doc["subject"] == MSG.subject and doc["at"] == "2026-12-07T19:14:00Z"


def test_webhook_refusal_is_permanent_and_overload_transient(provider: FakeProvider) -> None:
    hook = Contact("city", "City", (), None, None, provider.url + "/h")
    provider.answer = lambda _r: (400, {"error": "bad"})
    with pytest.raises(ChannelError) as err:
        WebhookChannel(b"k").send(hook, MSG)
    assert not err.value.transient
    provider.answer = lambda _r: (429, {"error": "slow down"})
    with pytest.raises(ChannelError) as err:
        WebhookChannel(b"k").send(hook, MSG)
    assert err.value.transient


# --- email -----------------------------------------------------------------------------------------


def test_email_reaches_a_real_smtp_server_with_the_vietnamese_subject_intact(smtp_server: SmtpServer) -> None:
    SmtpChannel(smtp_server.url, "Smartward IOC <ioc@example.vn>").send(CONTACT, MSG)
    (m,) = smtp_server.messages()
    assert str(m["Subject"]) == MSG.subject
    assert str(m["To"]) == "Trực ban phường Thống Nhất <trucban@example.vn>"
    assert m["Message-ID"] == f"<{MSG.id}@smartward>"
    assert m.get_content().replace("\r\n", "\n").strip() == MSG.text
    raw_subject = smtp_server.inbox.envelopes[0]
    assert raw_subject[1] == ["trucban@example.vn"]


def test_email_with_the_server_down_is_transient() -> None:
    down = SmtpServer()
    with pytest.raises(ChannelError) as err:
        SmtpChannel(down.url, "ioc@example.vn", timeout_s=2).send(CONTACT, MSG)
    assert err.value.transient
