"""One exception root for the contract package."""

from __future__ import annotations

from typing import Literal

DeadLetterReason = Literal[
    "bad_json",
    "schema",
    "unknown_sensor",
    "topic_mismatch",
    "oversize",
    "time_window",
    "conflict",
    "non_finite",
]

DEAD_LETTER_REASONS: tuple[DeadLetterReason, ...] = (
    "bad_json",
    "schema",
    "unknown_sensor",
    "topic_mismatch",
    "oversize",
    "time_window",
    "conflict",
    "non_finite",
)


class ContractError(Exception):
    """Root of every error raised by the contract package."""


class TopicError(ContractError):
    """A topic string is not one of the contract's topics."""


class DecodeError(ContractError):
    """A payload cannot be decoded into a contract message.

    ``reason`` is one of the dead-letter reason codes of docs/contract.md, so the ingest can
    file the message without re-classifying it.
    """

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DeadLetterReason = reason
        self.detail = detail


class RegistryError(ContractError):
    """The registry file is invalid. ``line`` is 1-based when known."""

    def __init__(self, message: str, *, source: str = "<registry>", line: int | None = None) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.message = message
