"""Encode and decode contract messages.

Decoding classifies every failure into a dead-letter reason code of docs/contract.md so that
the ingest never has to guess: ``oversize`` (over 256 KiB), ``bad_json`` (empty, invalid
UTF-8, not JSON), ``non_finite`` (NaN, Infinity, numbers beyond float range), ``schema``
(anything else the models refuse: also every integer outside 0 … 2^63−1, unsafe text, and a
time outside [1970, 9999) UTC, docs/contract.md "Bounds and text"). A DecodeError's detail is safe
text: it may quote what the sender wrote, with every control character escaped.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from contract.bounds import MAX_INT, safe_text, time_problem
from contract.errors import DecodeError
from contract.models import (
    MAX_PAYLOAD_BYTES,
    Ack,
    Command,
    CommandResult,
    Status,
    TelemetryBatch,
)

_T = TypeVar("_T")

_encoder = msgspec.json.Encoder()
_telemetry = msgspec.json.Decoder(TelemetryBatch)
_status = msgspec.json.Decoder(Status)
_ack = msgspec.json.Decoder(Ack)
_command = msgspec.json.Decoder(Command)
_result = msgspec.json.Decoder(CommandResult)

# A reading time whose year is strictly between these is inside [MIN_TIME, MAX_TIME) whatever
# its UTC offset (at most a day): the hot path compares one attribute, the rare rest goes
# through ``time_problem``.
_SAFE_YEAR_LO = 1970
_SAFE_YEAR_HI = 9998
_DETAIL_MAX_CHARS = 500
_ARGS_MAX_DEPTH = 16


def encode(msg: TelemetryBatch | Status | Ack | Command | CommandResult) -> bytes:
    return _encoder.encode(msg)


def _classify_malformed(raw: bytes, exc: Exception) -> DecodeError:
    if not raw.strip():
        return DecodeError("bad_json", "empty payload")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return DecodeError("bad_json", f"payload is not UTF-8: {uexc}")
    # Python's json accepts the NaN / Infinity tokens that JSON forbids, and lone surrogates
    # (``"\ud800"``) that msgspec refuses: which of the two made msgspec give up?
    non_finite = False

    def constant(_name: str) -> float:
        nonlocal non_finite
        non_finite = True
        return 0.0

    def number(literal: str) -> float:
        nonlocal non_finite
        value = float(literal)
        non_finite = non_finite or not math.isfinite(value)  # 1e400
        return value

    try:
        json.loads(text, parse_constant=constant, parse_float=number)
    except (ValueError, RecursionError):
        return DecodeError("bad_json", safe_text(str(exc), _DETAIL_MAX_CHARS))
    if non_finite:
        return DecodeError("non_finite", "NaN or Infinity is not a JSON number")
    return DecodeError("schema", "text with a lone surrogate (not representable in UTF-8)")


def _decode(decoder: msgspec.json.Decoder[_T], raw: bytes) -> _T:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise DecodeError("oversize", f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text = safe_text(str(exc), _DETAIL_MAX_CHARS)
        if text.startswith("Number out of range"):
            raise DecodeError("non_finite", text) from exc
        raise DecodeError("schema", text) from exc
    except msgspec.DecodeError as exc:
        raise _classify_malformed(raw, exc) from exc
    except UnicodeDecodeError as exc:
        # msgspec reports invalid UTF-8 inside a JSON string this way, not as DecodeError.
        raise DecodeError("bad_json", f"payload is not UTF-8: {exc}") from exc


def _check_time(where: str, value: datetime | None) -> None:
    if value is None:
        return
    problem = time_problem(value)
    if problem is not None:
        raise DecodeError("schema", f"{where}: {problem}")


def decode_telemetry(raw: bytes) -> TelemetryBatch:
    batch = _decode(_telemetry, raw)
    isfinite = math.isfinite
    lo, hi = _SAFE_YEAR_LO, _SAFE_YEAR_HI
    for r in batch.readings:  # the hot path: one cheap test per reading
        if not isfinite(r.value) or not lo < r.ts.year < hi:
            _reading_problem(batch)
    _check_time("sent_at", batch.sent_at)
    return batch


def _reading_problem(batch: TelemetryBatch) -> None:
    """The slow path: which reading is wrong, and why (raises unless a year at the edge of the
    fast test is inside the bounds after all)."""
    for i, r in enumerate(batch.readings):
        if not math.isfinite(r.value):
            raise DecodeError("non_finite", f"readings[{i}].value is not finite")
        _check_time(f"readings[{i}].ts", r.ts)


def decode_status(raw: bytes) -> Status:
    status = _decode(_status, raw)
    _check_time("ts", status.ts)
    _check_time("outbox_oldest", status.outbox_oldest)
    return status


def decode_ack(raw: bytes) -> Ack:
    return _decode(_ack, raw)


def decode_command(raw: bytes) -> Command:
    cmd = _decode(_command, raw)
    _check_time("expires_at", cmd.expires_at)
    problem = _args_problem(cmd.args, "args", 0)
    if problem is not None:
        raise DecodeError("schema", problem)
    return cmd


def _args_problem(value: Any, where: str, depth: int) -> str | None:
    """Free-form command arguments: every integer bounded, nesting limited."""
    if depth > _ARGS_MAX_DEPTH:
        return f"{where}: nested deeper than {_ARGS_MAX_DEPTH}"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        return None if 0 <= value <= MAX_INT else f"{where}: integer outside 0 … 2^63−1"
    if isinstance(value, str):
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            p = _args_problem(v, f"{where}.{safe_text(str(k), 40)}", depth + 1)
            if p is not None:
                return p
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            p = _args_problem(v, f"{where}[{i}]", depth + 1)
            if p is not None:
                return p
    return None


def decode_command_result(raw: bytes) -> CommandResult:
    result = _decode(_result, raw)
    _check_time("ts", result.ts)
    return result


def to_builtins(msg: Any) -> Any:
    """Plain dicts/lists/str for logs and APIs."""
    return msgspec.to_builtins(msg)
