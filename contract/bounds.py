"""Bounds every boundary shares (MQTT, HTTP, files): integers, text, times.

docs/contract.md "Additions → Bounds and text": every integer is within 0 … 2^63−1 (signed 64-bit,
as stored); text holds no control characters other than tab and newline (NUL never) and is at
most its documented length; times must be representable in UTC and in every store. One
definition here, used by the wire models (``contract.models``), the ingest's dead letters, the
ops service and the API's schemas, so that no layer lets through what another cannot store.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

MAX_INT = 2**63 - 1
"""The largest integer any payload may carry (PostgreSQL ``bigint``, SQLite ``INTEGER``)."""

# C0 controls except tab (\x09) and newline (\x0a), DEL, C1 controls, and lone surrogates
# (JSON may escape them as \ud800; they cannot be encoded as UTF-8, so no store takes them).
_FORBIDDEN = "\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff"
SAFE_TEXT_PATTERN = f"^[^{_FORBIDDEN}]*$"
"""A regular expression (Python / msgspec / pydantic syntax) that accepts only safe text."""

_forbidden_re = re.compile(f"[{_FORBIDDEN}]")

MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""Earliest instant any message may carry (a gateway booting in 1970 reads about this)."""
MAX_TIME = datetime(9999, 1, 1, tzinfo=UTC)
"""Latest instant any message may carry: far enough for any real use, and a day's offset
away from the end of Python's ``datetime`` range, so converting it never overflows."""


def text_problem(value: str, max_length: int) -> str | None:
    """Why ``value`` is not acceptable text of at most ``max_length`` characters, or None."""
    if len(value) > max_length:
        return f"longer than {max_length} characters ({len(value)})"
    m = _forbidden_re.search(value)
    if m is not None:
        return f"control character U+{ord(m.group()):04X} at position {m.start()}"
    return None


def is_safe_text(value: str) -> bool:
    return _forbidden_re.search(value) is None


def safe_text(value: str, max_length: int | None = None) -> str:
    """``value`` with every forbidden character escaped (``\\x00``, ``\\ud800``), cut to
    ``max_length`` characters when given: for details, log lines and messages that repeat what
    a client sent."""
    out = _forbidden_re.sub(_escape, value)
    if max_length is not None and len(out) > max_length:
        out = out[: max(0, max_length - 1)] + "…"
    return out


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def time_problem(value: datetime) -> str | None:
    """Why an aware ``value`` is outside [MIN_TIME, MAX_TIME), or None.

    Never raises: ``0001-01-01T00:00:00+00:01`` is a valid ISO 8601 string whose UTC instant
    lies before year 1, which Python cannot represent (``astimezone`` raises OverflowError)."""
    if value.tzinfo is None or value.utcoffset() is None:
        return "time without a UTC offset"
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return f"time {value.isoformat()} is out of range"
    if not MIN_TIME <= utc < MAX_TIME:
        return f"time {value.isoformat()} is outside [{MIN_TIME.isoformat()}, {MAX_TIME.isoformat()})"
    return None
