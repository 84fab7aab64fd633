"""The API's command-result link and poison results (issue 10): a result outside the contract
or one the store refuses for good is counted and acknowledged, never retried forever at the
head of the line (it would block every result behind it); only an unavailable store keeps a
result unacknowledged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from contract import topics
from contract.models import CommandResult
from mqttlink.acks import Delivery, InOrderAcks
from ops_center.adapters.repository import RepositoryError, RepositoryUnavailable
from ops_center.commands.link import CommandLink

TOPIC = topics.build("thong-nhat", "tn-gw-01", "cmd/result")
GOOD = {"v": 1, "id": "c-1", "ok": True, "detail": "applied", "ts": "2026-11-28T05:00:02Z"}


def _link(on_result: Any) -> CommandLink:
    return CommandLink("mqtt://127.0.0.1:1", client_id="test-link", on_result=on_result)


def _d(payload: bytes, topic: str = TOPIC) -> Delivery:
    return Delivery(topic, payload, 1, 1, 0)


POISON = [
    json.dumps({**GOOD, "detail": "a\u0000b"}).encode(),
    json.dumps({**GOOD, "ts": "0001-01-01T00:00:00+00:01"}).encode(),
    json.dumps({**GOOD, "ts": "9999-12-31T23:59:59-23:59"}).encode(),
    json.dumps({**GOOD, "id": "x" * 65}).encode(),
    json.dumps({**GOOD, "ok": 18446744073709551616}).encode(),
    b'{"v": 1, "id": "c\\ud800", "ok": true, "detail": "", "ts": "2026-11-28T05:00:02Z"}',
    b"\xff\xfe",
    b"[" * 100_000,
    b"",
]


@pytest.mark.parametrize("payload", POISON)
def test_a_poison_result_is_counted_and_acknowledged(payload: bytes) -> None:
    seen: list[CommandResult] = []
    link = _link(lambda site, gw, r: seen.append(r))
    assert link._handle(_d(payload)) is None
    assert link.bad_results == 1 and not seen


def test_a_result_the_store_refuses_for_good_is_acknowledged_not_retried() -> None:
    def refuse(site: str, gw: str, r: CommandResult) -> None:
        raise RepositoryError("postgresql: value too long")

    link = _link(refuse)
    assert link._handle(_d(json.dumps(GOOD).encode())) is None
    assert link.bad_results == 1


def test_an_unavailable_store_keeps_the_result_for_a_retry() -> None:
    def down(site: str, gw: str, r: CommandResult) -> None:
        raise RepositoryUnavailable("connection refused")

    link = _link(down)
    assert link._handle(_d(json.dumps(GOOD).encode())) is not None
    assert link.bad_results == 0


def test_the_refused_results_are_a_metric() -> None:
    link = _link(lambda *a: None)
    link._handle(_d(b"\xff"))
    reg = CollectorRegistry()
    link.register_metrics(reg)
    assert reg.get_sample_value("smartward_api_command_results_refused") == 1


def test_a_poison_result_never_blocks_the_ones_behind_it() -> None:
    handled: list[bytes] = []
    acked: list[bytes] = []

    def handle(d: Delivery) -> str | None:
        if d.payload == b"bug":
            raise RuntimeError("a bug")
        handled.append(d.payload)
        return None

    import threading
    done = threading.Event()

    def ack(d: Delivery) -> None:
        acked.append(d.payload)
        if d.payload == b"last":
            done.set()

    q = InOrderAcks(handle, ack)
    q.start()
    try:
        for p in (b"first", b"bug", b"last"):
            q.put(_d(p))
        assert done.wait(5)
    finally:
        q.stop()
    assert acked == [b"first", b"bug", b"last"] and handled == [b"first", b"last"]
    assert q.errors == 1
