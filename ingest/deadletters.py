"""Dead letters: building them, counting them by reason, rendering their payload.

Nothing is dropped without a row and a counter (CONTRACT.md, RELIABILITY.md promise 3).
"""

from __future__ import annotations

import base64
import threading
from collections import Counter
from datetime import datetime
from typing import Literal

from contract.errors import DEAD_LETTER_REASONS, DeadLetterReason
from ingest.ports import DeadLetter

DETAIL_MAX_CHARS = 500

PayloadEncoding = Literal["utf-8", "base64"]


def build(
    *,
    topic: str,
    raw: bytes,
    received_at: datetime,
    reason: DeadLetterReason,
    detail: str,
    gateway: str | None = None,
    site: str | None = None,
    seq: int | None = None,
) -> DeadLetter:
    """A dead letter with the raw bytes untouched and the detail cut to a readable length."""
    if len(detail) > DETAIL_MAX_CHARS:
        detail = detail[: DETAIL_MAX_CHARS - 1] + "…"
    return DeadLetter(
        received_at=received_at,
        topic=topic,
        reason=reason,
        detail=detail,
        payload=bytes(raw),
        gateway=gateway,
        site=site,
        seq=seq,
    )


def render_payload(raw: bytes) -> tuple[PayloadEncoding, str]:
    """Text for APIs and logs: the payload itself when it is UTF-8, else base64."""
    try:
        return "utf-8", raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(raw).decode("ascii")


class DeadLetterCounts:
    """Thread-safe counts of dead letters by reason (every reason present, 0 included)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, letters: list[DeadLetter] | tuple[DeadLetter, ...]) -> None:
        with self._lock:
            for d in letters:
                self._counts[d.reason] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {reason: self._counts.get(reason, 0) for reason in DEAD_LETTER_REASONS}

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
