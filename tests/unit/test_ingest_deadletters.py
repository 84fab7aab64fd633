"""Dead-letter helpers: raw bytes kept, base64 only when rendering non-UTF-8, counts by reason."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from contract.errors import DEAD_LETTER_REASONS
from ingest import deadletters

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_raw_bytes_are_kept_and_rendered_as_text_or_base64() -> None:
    d = deadletters.build(topic="t", raw=b"\xff\x00", received_at=NOW, reason="bad_json", detail="x")
    assert d.payload == b"\xff\x00"
    assert deadletters.render_payload(d.payload) == ("base64", base64.b64encode(b"\xff\x00").decode())
    assert deadletters.render_payload("Thống Nhất".encode()) == ("utf-8", "Thống Nhất")


def test_detail_is_cut_to_a_readable_length() -> None:
    d = deadletters.build(topic="t", raw=b"", received_at=NOW, reason="schema", detail="x" * 10_000)
    assert len(d.detail) == deadletters.DETAIL_MAX_CHARS


def test_counts_list_every_reason() -> None:
    c = deadletters.DeadLetterCounts()
    c.add([deadletters.build(topic="t", raw=b"", received_at=NOW, reason="oversize", detail="")] * 2)
    snap = c.snapshot()
    assert set(snap) == set(DEAD_LETTER_REASONS) and snap["oversize"] == 2 and c.total() == 2


def test_detail_and_topic_are_safe_text_and_the_payload_raw() -> None:
    d = deadletters.build(topic="smartward/v1/a/b/telemetry\u0085", raw=b'{"sensor": "a\\u0000"}',
                          received_at=NOW, reason="unknown_sensor", detail="a\u0000b\ud800c")
    assert d.detail == "a\\x00b\\ud800c" and d.topic.endswith("\\x85")
    assert d.payload == b'{"sensor": "a\\u0000"}' and d.once_key is None


def test_a_retained_message_has_one_key_per_topic_and_payload() -> None:
    def key(topic: str, raw: bytes) -> bytes | None:
        return deadletters.build(topic=topic, raw=raw, received_at=NOW, reason="schema", detail="",
                                 once=True).once_key
    assert key("t", b"x") == key("t", b"x") != key("t", b"y")
    assert key("t", b"x") != key("u", b"x")
    minimal = deadletters.minimal(deadletters.build(topic="t", raw=b"x", received_at=NOW, reason="schema",
                                                    detail="d", gateway="g", seq=3, once=True))
    assert minimal.gateway is None and minimal.seq is None and minimal.once_key == key("t", b"x")
