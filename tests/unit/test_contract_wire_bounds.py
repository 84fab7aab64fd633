"""Bounds in the wire models themselves (docs/contract.md "Additions → Bounds and text"): every
integer 0 … 2^63−1, floats for integers refused, safe text of a documented length, every time
representable — outside them the codec raises a ``schema`` DecodeError, never anything else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract import codec
from contract.errors import DecodeError

BIG = 2**64
STATUS: dict[str, Any] = {"v": 1, "gateway": "tn-gw-01", "state": "online", "ts": "2026-11-28T05:00:00Z",
                          "agent": "smartward-edge/0.1.0", "outbox_batches": 1, "dropped_batches": 0,
                          "dropped_through": 0, "last_seq": 5}
BATCH: dict[str, Any] = {"v": 1, "gateway": "tn-gw-01", "seq": 1, "sent_at": "2026-11-28T05:00:00Z",
                         "readings": [{"sensor": "tn-aq-01", "metric": "pm25", "ts": "2026-11-28T04:59:58Z",
                                       "value": 1.5}]}
RESULT: dict[str, Any] = {"v": 1, "id": "c-1", "ok": True, "detail": "applied", "ts": "2026-11-28T05:00:02Z"}
COMMAND: dict[str, Any] = {"v": 1, "id": "c-1", "name": "set_lamp", "sensor": "tn-lamp-07",
                           "args": {"on": True}, "expires_at": "2026-11-28T05:05:00Z"}
YEAR0 = "0001-01-01T00:00:00+00:01"
END = "9999-12-31T23:59:59-23:59"


def _raw(base: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**base, **changes}).encode()


def _schema(decode: Any, raw: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(raw)
    assert info.value.reason == "schema", info.value
    return info.value


@pytest.mark.parametrize("field", ["last_seq", "dropped_through", "dropped_batches", "outbox_batches"])
@pytest.mark.parametrize("value", [BIG, 2**63, -1, 1e30, 3.0])
def test_status_integers_are_bounded(field: str, value: Any) -> None:
    _schema(codec.decode_status, _raw(STATUS, **{field: value}))


def test_status_largest_integer_is_accepted() -> None:
    assert codec.decode_status(_raw(STATUS, last_seq=2**63 - 1)).last_seq == 2**63 - 1


@pytest.mark.parametrize("counters", [{"readings": BIG}, {"readings": -1}, {"readings": 2.0},
                                      {"x" * 64: 1}, {"Bad Key": 1}, {"a\u0000": 1},
                                      {f"k{i}": i for i in range(65)}])
def test_status_counters_are_bounded(counters: dict[str, Any]) -> None:
    _schema(codec.decode_status, _raw(STATUS, counters=counters))


@pytest.mark.parametrize("field", ["ts", "outbox_oldest"])
@pytest.mark.parametrize("value", [YEAR0, END, "1969-12-31T23:59:59Z"])
def test_status_times_are_bounded(field: str, value: str) -> None:
    _schema(codec.decode_status, _raw(STATUS, **{field: value}))


@pytest.mark.parametrize("agent", ["a\u0000b", "a\u001bb", "x" * 201, "a\u0085"])
def test_status_agent_is_safe_text(agent: str) -> None:
    _schema(codec.decode_status, _raw(STATUS, agent=agent))


def test_lone_surrogate_is_a_schema_error_not_non_finite() -> None:
    raw = (b'{"v": 1, "gateway": "tn-gw-01", "state": "online", "ts": "2026-11-28T05:00:00Z", '
           b'"agent": "a\\ud800"}')
    _schema(codec.decode_status, raw)


def test_nan_is_still_non_finite() -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_telemetry(_raw(BATCH).replace(b"1.5", b"NaN"))
    assert info.value.reason == "non_finite"


@pytest.mark.parametrize("value", [YEAR0, END, "1969-01-01T00:00:00Z"])
def test_telemetry_times_are_bounded(value: str) -> None:
    _schema(codec.decode_telemetry, _raw(BATCH, sent_at=value))
    reading = {**BATCH["readings"][0], "ts": value}
    _schema(codec.decode_telemetry, _raw(BATCH, readings=[BATCH["readings"][0], reading]))


@pytest.mark.parametrize("seq", [BIG, 2**63, 1.0, 0])
def test_telemetry_seq_is_bounded(seq: Any) -> None:
    _schema(codec.decode_telemetry, _raw(BATCH, seq=seq))


@pytest.mark.parametrize("seq", [BIG, -1, 1.0])
def test_ack_seq_is_bounded(seq: Any) -> None:
    _schema(codec.decode_ack, json.dumps({"v": 1, "seq": seq}).encode())


@pytest.mark.parametrize("changes", [{"detail": "a\u0000"}, {"detail": "x" * 1001}, {"id": "a\u0007"},
                                     {"id": ""}, {"ts": YEAR0}, {"ts": END}])
def test_command_result_is_bounded(changes: dict[str, Any]) -> None:
    _schema(codec.decode_command_result, _raw(RESULT, **changes))


@pytest.mark.parametrize("changes", [{"expires_at": YEAR0}, {"id": "a\u0000"},
                                     {"args": {"dim_pct": BIG}}, {"args": {"x": [[-1]]}}])
def test_command_is_bounded(changes: dict[str, Any]) -> None:
    _schema(codec.decode_command, _raw(COMMAND, **changes))


def test_valid_messages_still_decode() -> None:
    status = codec.decode_status(_raw(STATUS, counters={"readings": 2**63 - 1}))
    assert status.counters["readings"] == 2**63 - 1
    assert codec.decode_telemetry(_raw(BATCH)).seq == 1
    assert codec.decode_command_result(_raw(RESULT, detail="đã áp dụng\n\tok")).ok
    assert codec.decode_command(_raw(COMMAND, args={"on": True, "dim_pct": 60, "t": -1.5})).name == "set_lamp"
