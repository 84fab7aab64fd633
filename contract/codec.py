"""Encode and decode contract messages.

Decoding classifies every failure into a dead-letter reason code of CONTRACT.md so that
the ingest never has to guess: ``oversize`` (over 256 KiB), ``bad_json`` (empty, invalid
UTF-8, not JSON), ``non_finite`` (NaN, Infinity, numbers beyond float range), ``schema``
(anything else the models refuse).
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import msgspec

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


def encode(msg: TelemetryBatch | Status | Ack | Command | CommandResult) -> bytes:
    return _encoder.encode(msg)


def _classify_malformed(raw: bytes, exc: Exception) -> DecodeError:
    if not raw.strip():
        return DecodeError("bad_json", "empty payload")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return DecodeError("bad_json", f"payload is not UTF-8: {uexc}")
    # Python's json accepts the NaN / Infinity tokens that JSON forbids; if it can read
    # the payload, the only thing wrong with it is a non-finite number.
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return DecodeError("bad_json", str(exc))
    return DecodeError("non_finite", "NaN or Infinity is not a JSON number")


def _decode(decoder: msgspec.json.Decoder[_T], raw: bytes) -> _T:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise DecodeError("oversize", f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith("Number out of range"):
            raise DecodeError("non_finite", text) from exc
        raise DecodeError("schema", text) from exc
    except msgspec.DecodeError as exc:
        raise _classify_malformed(raw, exc) from exc
    except UnicodeDecodeError as exc:
        # msgspec reports invalid UTF-8 inside a JSON string this way, not as DecodeError.
        raise DecodeError("bad_json", f"payload is not UTF-8: {exc}") from exc


def decode_telemetry(raw: bytes) -> TelemetryBatch:
    batch = _decode(_telemetry, raw)
    isfinite = math.isfinite
    for i, r in enumerate(batch.readings):
        if not isfinite(r.value):
            raise DecodeError("non_finite", f"readings[{i}].value is not finite")
    return batch


def decode_status(raw: bytes) -> Status:
    return _decode(_status, raw)


def decode_ack(raw: bytes) -> Ack:
    return _decode(_ack, raw)


def decode_command(raw: bytes) -> Command:
    return _decode(_command, raw)


def decode_command_result(raw: bytes) -> CommandResult:
    return _decode(_result, raw)


def to_builtins(msg: Any) -> Any:
    """Plain dicts/lists/str for logs and APIs."""
    return msgspec.to_builtins(msg)
