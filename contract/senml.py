"""SenML JSON (RFC 8428) from third-party devices: decoding, resolution, naming, units.

Pure (no I/O, no clock: the receive time is passed in). The ingest turns the resolved records
into the same readings as a telemetry batch (``ingest/senml.py``); docs/interfaces.md has an
example message.

- **Naming.** A resolved name (base name + name, RFC 8428 §4.5.1) is
  ``urn:dev:sw:{sensor}:{metric}``: a device typically sends ``"bn": "urn:dev:sw:tn-aq-01:"``
  once and ``"n": "pm25"`` per record. A name in any other form is a ``schema`` error.
- **Resolution** (§4.6): base name, base time, base unit and base value apply to the record
  that carries them and every later record until changed. ``bver`` above 10 is refused.
- **Time** (§4.5.3): the resolved time (``bt`` + ``t``, 0 when both are absent) is seconds
  since the Unix epoch when it is 2**28 or more, otherwise seconds relative to the receive
  time (0 = now, negative = in the past). Only absolute times make a redelivered message the
  same readings again; a relative time is stamped at each receipt.
- **Values**: ``v`` (plus ``bv``) and ``vb`` (true/false as 1/0). String and data values
  (``vs``, ``vd``) and sums (``s``, ``bs``) are not readings of the catalog: ``schema``.
- **Units** (§4.5.2, §12.1): the resolved unit (``u``, else ``bu``) may be absent (the catalog
  unit is meant) and otherwise must be the catalog unit of the metric or its SenML spelling
  (``ug/m3`` for µg/m³, ``Cel`` for °C, ``%RH`` for relative humidity...). No conversion: a
  wrong unit is refused (``schema``), never scaled.
- **Labels**: a label ending in ``_`` must be understood (§4.4) and none is: ``schema``. Other
  unknown labels are ignored, as the RFC asks.
- **Bounds**: the same as every boundary (contract/bounds.py): at most 5000 records and
  256 KiB, integers within ±(2**63 − 1), finite numbers (``non_finite``), representable times.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from contract.bounds import MAX_INT, MAX_TIME, MIN_TIME, text_problem
from contract.catalog import METRICS
from contract.errors import DecodeError
from contract.models import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_BATCH, Reading

if TYPE_CHECKING:
    from contract.registry import Registry

NAME_PREFIX: Final = "urn:dev:sw:"
SENML_VERSION: Final = 10
RELATIVE_LIMIT_S: Final = 2**28  # RFC 8428 §4.5.3
_UNIT_MAX_CHARS = 32

# RFC 8428 §4.5.1: names start with a letter or digit; then letters, digits, "-:./_".
_NAME_RE = re.compile(r"^[A-Za-z0-9][-:./_A-Za-z0-9]*$")
_OUR_NAME_RE = re.compile(
    rf"^{re.escape(NAME_PREFIX)}(?P<sensor>[a-z0-9][a-z0-9-]{{0,62}}):(?P<metric>[a-z][a-z0-9_]{{0,62}})$")

# SenML spellings (RFC 8428 §12.1 and the IANA SenML units registry) of catalog units.
_UNIT_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "µg/m³": ("ug/m3",),
    "°C": ("Cel",),
    "dB(A)": ("dBA",),
    "m³/h": ("m3/h",),
    "mg/L": ("mg/l",),
    "mg/Nm³": ("mg/Nm3",),
    "": ("/",),
}
_METRIC_ALIASES: Final[dict[str, tuple[str, ...]]] = {"humidity_pct": ("%RH",)}

_NUMBER_LABELS = frozenset({"bt", "bv", "bs", "bver", "v", "s", "t", "ut"})
_STRING_LABELS = frozenset({"bn", "bu", "n", "u", "vs", "vd"})
_BASE_LABELS = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SenmlRecord:
    """A resolved record (RFC 8428 §4.6) with our naming applied."""

    sensor: str
    metric: str
    time: datetime
    value: float
    unit: str | None


def accepted_units(metric: str) -> tuple[str, ...]:
    """Unit strings a record may carry for ``metric`` (absent is accepted as well)."""
    unit = METRICS[metric].unit
    return (unit, *_UNIT_ALIASES.get(unit, ()), *_METRIC_ALIASES.get(metric, ()))


def unit_ok(metric: str, unit: str | None) -> bool:
    return unit is None or (metric in METRICS and unit in accepted_units(metric))


def name_of(sensor: str, metric: str) -> str:
    return f"{NAME_PREFIX}{sensor}:{metric}"


def parse_name(name: str) -> tuple[str, str] | None:
    """(sensor, metric) of a resolved name in our form, else None."""
    m = _OUR_NAME_RE.match(name)
    return None if m is None else (m["sensor"], m["metric"])


def decode(raw: bytes, received_at: datetime) -> list[SenmlRecord]:
    """Resolve a SenML JSON pack. Raises ``DecodeError`` with a dead-letter reason code."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise DecodeError("oversize", f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    data = _load(raw)
    if not isinstance(data, list):
        raise DecodeError("schema", "a SenML pack is a JSON array of records")
    if not 1 <= len(data) <= MAX_READINGS_PER_BATCH:
        raise DecodeError("schema",
                          f"a SenML pack holds 1 to {MAX_READINGS_PER_BATCH} records, not {len(data)}")
    out: list[SenmlRecord] = []
    base: dict[str, Any] = {"bn": "", "bt": 0, "bu": None, "bv": 0}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DecodeError("schema", f"record {i}: not a JSON object")
        _check_labels(i, rec)
        for label in ("bn", "bt", "bu", "bv"):
            if label in rec:
                base[label] = rec[label]
        if "bver" in rec and (type(rec["bver"]) is not int or not 1 <= rec["bver"] <= SENML_VERSION):
            raise DecodeError("schema", f"record {i}: SenML version {rec['bver']!r} is not understood "
                              f"(this platform reads version {SENML_VERSION})")
        if any(k in rec for k in ("s", "bs", "vs", "vd")):
            raise DecodeError("schema", f"record {i}: only numeric (v) and boolean (vb) values are readings; "
                              "string, data and sum values are not accepted")
        has_value = "v" in rec or "vb" in rec
        if not has_value:
            if set(rec) <= _BASE_LABELS | {"ut"} and "n" not in rec:
                continue  # a record of base fields only
            raise DecodeError("schema", f"record {i}: no value (v or vb)")
        if "v" in rec and "vb" in rec:
            raise DecodeError("schema", f"record {i}: more than one value field")
        out.append(_resolve(i, rec, base, received_at))
    if not out:
        raise DecodeError("schema", "the SenML pack has no record with a value")
    return out


def readings(records: Sequence[SenmlRecord]) -> list[Reading]:
    """The readings of resolved records. SenML has no quality: a value inside the catalog's
    physical bounds is ``good``, outside them ``bad``, as the edge's drivers do."""
    return [Reading(sensor=r.sensor, metric=r.metric, ts=r.time, value=r.value,
                    quality="good" if METRICS[r.metric].in_bounds(r.value) else "bad")
            for r in records]


def gateway_readings(raw: bytes, received_at: datetime, gateway: str, registry: Registry) -> list[Reading]:
    """The readings of a pack published on ``gateway``'s ``senml`` topic, for a consumer that
    reads the broker itself (the ops service): decoded, every (sensor, metric) one of the
    gateway's (``unknown_sensor``), every unit the catalog's (``schema``). The ingest makes the
    same checks with its dead letters' details (``ingest/senml.py``). Raises ``DecodeError``."""
    records = decode(raw, received_at)
    for r in records:
        if not registry.allows(gateway, r.sensor, r.metric):
            raise DecodeError("unknown_sensor", f"{r.sensor}/{r.metric} is not registered for {gateway}")
        if not unit_ok(r.metric, r.unit):
            raise DecodeError("schema", f"{r.sensor}/{r.metric}: unit {r.unit!r} is not the catalog's")
    return readings(records)


def _load(raw: bytes) -> Any:
    if not raw.strip():
        raise DecodeError("bad_json", "empty payload")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("bad_json", f"payload is not UTF-8: {exc}") from exc

    def constant(token: str) -> Any:
        raise DecodeError("non_finite", f"{token} is not a JSON number")

    try:
        return json.loads(text, parse_constant=constant)
    except RecursionError as exc:
        raise DecodeError("bad_json", "nesting too deep") from exc
    except ValueError as exc:
        raise DecodeError("bad_json", str(exc)) from exc


def _check_labels(i: int, rec: dict[str, Any]) -> None:
    for label, value in rec.items():
        if label.endswith("_"):
            raise DecodeError("schema", f"record {i}: must-understand label {label!r} is not understood")
        if label in _NUMBER_LABELS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DecodeError("schema", f"record {i}: {label!r} must be a number")
            if isinstance(value, int) and abs(value) > MAX_INT:
                raise DecodeError("schema", f"record {i}: {label!r} is beyond ±(2^63 − 1)")
            if isinstance(value, float) and not math.isfinite(value):
                raise DecodeError("non_finite", f"record {i}: {label!r} is not a finite number")
        elif label in _STRING_LABELS:
            if not isinstance(value, str):
                raise DecodeError("schema", f"record {i}: {label!r} must be a string")
        elif label == "vb" and not isinstance(value, bool):
            raise DecodeError("schema", f"record {i}: 'vb' must be true or false")


def _resolve(i: int, rec: dict[str, Any], base: dict[str, Any], received_at: datetime) -> SenmlRecord:
    name = str(base["bn"]) + str(rec.get("n", ""))
    if not name or not _NAME_RE.match(name):
        raise DecodeError("schema", f"record {i}: {name!r} is not a valid SenML name (RFC 8428 §4.5.1)")
    parsed = parse_name(name)
    if parsed is None:
        raise DecodeError("schema", f"record {i}: name {name!r} is not of the form "
                          f"{NAME_PREFIX}{{sensor}}:{{metric}}")
    sensor, metric = parsed

    if "vb" in rec:
        value = 1.0 if rec["vb"] else 0.0
    else:
        value = float(base["bv"]) + float(rec["v"])
        if not math.isfinite(value):
            raise DecodeError("non_finite", f"record {i}: base value + value is not finite")

    unit = rec.get("u", base["bu"])
    if unit is not None:
        if not isinstance(unit, str):
            raise DecodeError("schema", f"record {i}: 'bu' must be a string")
        problem = text_problem(unit, _UNIT_MAX_CHARS)
        if problem is not None:
            raise DecodeError("schema", f"record {i}: unit {problem}")

    t = float(base["bt"]) + float(rec.get("t", 0))
    return SenmlRecord(sensor, metric, _time(i, t, received_at), value, unit)


def _time(i: int, t: float, received_at: datetime) -> datetime:
    """RFC 8428 §4.5.3, rounded to the microsecond the stores keep."""
    if not math.isfinite(t):
        raise DecodeError("non_finite", f"record {i}: time is not finite")
    lo = (MIN_TIME - _EPOCH).total_seconds()
    hi = (MAX_TIME - _EPOCH).total_seconds()
    if t >= RELATIVE_LIMIT_S:
        if t >= hi:
            raise DecodeError("time_window", f"record {i}: time {t!r} is beyond year 9999")
        return _EPOCH + timedelta(microseconds=round(t * 1_000_000))
    # Relative: t < 2**28 s (about 8.5 years), possibly very negative.
    if t <= lo - (received_at - _EPOCH).total_seconds():
        raise DecodeError("time_window", f"record {i}: relative time {t!r} s lies before 1970")
    return received_at + timedelta(microseconds=round(t * 1_000_000))
