"""Malformed telemetry payloads, each labelled with the dead-letter reason it must get.

docs/reliability.md B1/B2/B3: bad JSON, wrong types, NaN/Infinity, huge numbers, missing fields,
invalid UTF-8, empty, deep nesting, unknown sensor, topic/payload mismatch, oversize,
timestamps out of the window, and a conflicting re-send. The reason codes are docs/contract.md's
("Dead letters"): ``bad_json``, ``schema``, ``non_finite`` and ``oversize`` are decided by
``contract.codec`` from the bytes alone; ``unknown_sensor``, ``topic_mismatch``,
``time_window`` and ``conflict`` need the registry, the topic, the clock or the store.

Every payload has its own ``seq`` from ``first_seq`` upwards, far above what a real
gateway reaches, so a dead-lettered batch never occupies a ``seq`` a real batch needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from contract import topics
from contract.errors import DeadLetterReason
from contract.models import MAX_PAYLOAD_BYTES
from contract.registry import Registry


@dataclass(frozen=True)
class MalformedPayload:
    name: str
    topic: str
    payload: bytes
    reason: DeadLetterReason
    description_vi: str
    description_en: str
    # For ``conflict``: a valid batch with the same (gateway, seq) to publish first.
    preceded_by: bytes | None = None


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def malformed_payloads(
    registry: Registry, gateway: str, *, now: datetime, first_seq: int = 900_000_000
) -> list[MalformedPayload]:
    """Bad payloads for ``gateway``'s telemetry topic (and one on another's), as raw bytes."""
    site = registry.site_of(gateway)
    if site is None:
        raise KeyError(f"Không có gateway {gateway!r} trong sổ đăng ký / "
                       f"no gateway {gateway!r} in the registry")
    spec = registry.sensors_of(gateway)[0]
    sensor, metric = spec.id, spec.metrics[0]
    other_gw = next((g for _, gw in registry.iter_gateways() if (g := gw.id) != gateway), None)
    other_sensor = registry.sensors_of(other_gw)[0].id if other_gw else "zz-ghost-01"
    topic = topics.telemetry(site, gateway)
    ts = _iso(now - timedelta(seconds=60))
    seq = iter(range(first_seq, first_seq + 10_000))

    def batch(readings: list[dict[str, Any]] | None = None, **over: Any) -> dict[str, Any]:
        b: dict[str, Any] = {
            "v": 1, "gateway": gateway, "seq": next(seq), "sent_at": _iso(now),
            "readings": readings if readings is not None else [reading()],
        }
        b.update(over)
        return b

    def reading(**over: Any) -> dict[str, Any]:
        r: dict[str, Any] = {"sensor": sensor, "metric": metric, "ts": ts, "value": 21.5}
        r.update(over)
        return r

    def raw_value(token: str) -> bytes:
        # Tokens JSON forbids (NaN) or that overflow a double cannot come from json.dumps.
        return _dump(batch()).replace(b'"value":21.5', b'"value":' + token.encode())

    out: list[MalformedPayload] = []

    def add(name: str, payload: bytes, reason: DeadLetterReason, vi: str, en: str,
            *, on: str = topic, preceded_by: bytes | None = None) -> None:
        out.append(MalformedPayload(name, on, payload, reason, vi, en, preceded_by))

    good = _dump(batch())
    add("empty", b"", "bad_json", "Gói rỗng", "Empty payload")
    add("whitespace", b" \n\t ", "bad_json", "Chỉ có khoảng trắng", "Whitespace only")
    add("not_json", b"hello ingest", "bad_json", "Không phải JSON", "Not JSON")
    add("truncated", good[: len(good) // 2], "bad_json", "JSON bị cắt cụt", "Truncated JSON")
    add("trailing_garbage", good + b"}}", "bad_json", "Ký tự thừa sau JSON", "Trailing characters")
    add("invalid_utf8_prefix", b"\xff\xfe" + _dump(batch()), "bad_json",
        "Byte không phải UTF-8 ở đầu gói", "Invalid UTF-8 bytes before the JSON")
    add("invalid_utf8_in_string", _dump(batch()).replace(sensor.encode(), sensor.encode()[:-1] + b"\xc3\x28"),
        "bad_json", "Chuỗi UTF-8 hỏng trong mã cảm biến", "Invalid UTF-8 inside a JSON string")
    add("utf16", _dump(batch()).decode().encode("utf-16"), "bad_json",
        "Mã hóa UTF-16 thay vì UTF-8", "UTF-16 instead of UTF-8")
    add("json_null", b"null", "schema", "JSON null thay vì đối tượng", "JSON null instead of an object")
    add("json_array", _dump([batch()]), "schema", "Mảng thay vì đối tượng", "Array instead of an object")
    add("value_is_string", _dump(batch([reading(value="21.5")])), "schema",
        "Giá trị là chuỗi", "Value is a string")
    add("value_is_bool", _dump(batch([reading(value=True)])), "schema",
        "Giá trị là true/false (phải gửi 0/1)", "Value is a JSON boolean (send 0/1)")
    add("seq_is_string", _dump(batch(seq="42")), "schema", "seq là chuỗi", "seq is a string")
    add("seq_zero", _dump(batch(seq=0)), "schema", "seq bằng 0 (bắt đầu từ 1)", "seq is 0 (starts at 1)")
    missing_seq = batch()
    del missing_seq["seq"]
    add("missing_seq", _dump(missing_seq), "schema", "Thiếu trường seq", "Missing field seq")
    no_ts = reading()
    del no_ts["ts"]
    add("missing_reading_ts", _dump(batch([no_ts])), "schema", "Bản ghi thiếu ts", "Reading without ts")
    add("naive_timestamp", _dump(batch([reading(ts=ts.removesuffix("Z"))])), "schema",
        "Thời gian không có múi giờ", "Timestamp without an offset")
    add("wrong_version", _dump(batch(v=2)), "schema",
        "Phiên bản v=2 không được hỗ trợ", "Unsupported version v=2")
    add("empty_readings", _dump(batch([])), "schema", "Danh sách bản ghi rỗng", "Empty readings list")
    add("unknown_field", _dump(batch(extra="x")), "schema", "Trường lạ", "Unknown field")
    add("bad_quality", _dump(batch([reading(quality="excellent")])), "schema",
        "Chất lượng không hợp lệ", "Invalid quality")
    deep = b"[" * 10_000 + b"1" + b"]" * 10_000
    add("deep_nesting", _dump(batch()).replace(b'"value":21.5', b'"value":' + deep), "schema",
        "Lồng sâu 10 000 mức", "Nested 10,000 levels deep")
    add("nan", raw_value("NaN"), "non_finite", "Giá trị NaN", "NaN value")
    add("infinity", raw_value("Infinity"), "non_finite", "Giá trị Infinity", "Infinity value")
    add("negative_infinity", raw_value("-Infinity"), "non_finite", "Giá trị -Infinity", "-Infinity value")
    add("huge_float", raw_value("1e400"), "non_finite",
        "Số vượt giới hạn double", "Number beyond double range")
    add("huge_integer", raw_value("1" + "0" * 400), "non_finite",
        "Số nguyên 401 chữ số", "A 401-digit integer")
    n = MAX_PAYLOAD_BYTES // 80 + 100  # ~90 bytes a reading: comfortably over the limit, under 5000 readings
    start = now - timedelta(seconds=n)
    big = _dump(batch([reading(ts=_iso(start + timedelta(seconds=i))) for i in range(n)]))
    add("oversize", big, "oversize", f"Gói {len(big)} byte > 256 KiB", f"{len(big)}-byte payload > 256 KiB")
    add("unknown_sensor", _dump(batch([reading(sensor="zz-ghost-01")])), "unknown_sensor",
        "Cảm biến không có trong sổ đăng ký", "Sensor not in the registry")
    add("sensor_of_other_gateway", _dump(batch([reading(sensor=other_sensor)])), "unknown_sensor",
        "Cảm biến thuộc gateway khác", "Sensor belongs to another gateway")
    add("unknown_metric", _dump(batch([reading(metric="banana_index")])), "unknown_sensor",
        "Chỉ số không khai báo cho cảm biến", "Metric not declared for the sensor")
    if other_gw is not None:
        add("topic_mismatch", _dump(batch(gateway=other_gw)), "topic_mismatch",
            "gateway trong gói khác gateway của topic", "Payload gateway differs from the topic's")
    add("ts_1970", _dump(batch([reading(ts="1970-01-01T00:00:00Z")])), "time_window",
        "Thời gian năm 1970", "Timestamp in 1970")
    add("ts_far_future", _dump(batch([reading(ts=_iso(now + timedelta(days=3650)))])), "time_window",
        "Thời gian 10 năm trong tương lai", "Timestamp ten years ahead")
    first = batch()
    second = dict(first, readings=[reading(value=99.5)])
    add("conflict", _dump(second), "conflict", "Gửi lại cùng seq với nội dung khác",
        "Same seq re-sent with different content", preceded_by=_dump(first))
    return out
