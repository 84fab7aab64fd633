"""Dead letters: building them, counting them by reason, rendering their payload.

Nothing is dropped without a row and a counter (docs/contract.md, docs/reliability.md promise 3).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import Counter
from datetime import datetime
from typing import Literal

from contract.bounds import safe_text
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
    once: bool = False,
) -> DeadLetter:
    """A dead letter with the raw bytes untouched (``payload``) and every text safe: the
    detail (which may quote what the sender wrote) and the topic escaped (``\\x00``), the
    detail cut to a readable length (docs/contract.md "Bounds and text"). ``once``: the message
    may come again unchanged (retained); the store keeps one letter for it."""
    return DeadLetter(
        received_at=received_at,
        topic=safe_text(topic, 1000),
        reason=reason,
        detail=safe_text(detail, DETAIL_MAX_CHARS),
        payload=bytes(raw),
        gateway=gateway,
        site=site,
        seq=seq,
        once_key=once_key(topic, raw) if once else None,
    )


def once_key(topic: str, raw: bytes) -> bytes:
    """BLAKE2b-128 of topic and payload: one dead letter per retained poison message."""
    h = hashlib.blake2b(digest_size=16)
    h.update(topic.encode("utf-8", "backslashreplace"))
    h.update(b"\0")
    h.update(raw)
    return h.digest()


def minimal(letter: DeadLetter) -> DeadLetter:
    """What is left of a letter the store refused: reason, escaped detail, topic and raw
    bytes; the sender's gateway and seq only when they are plain slugs and numbers."""
    return DeadLetter(received_at=letter.received_at, topic=safe_text(letter.topic, 1000),
                      reason=letter.reason, detail=safe_text(letter.detail, DETAIL_MAX_CHARS),
                      payload=bytes(letter.payload), once_key=letter.once_key)


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
