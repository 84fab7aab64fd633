"""Rows that the stores' query methods return: the same shapes from every store, so that the
contract tests (and the API, when it reads through a store) see one model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ingest.ports import DeadLetter

Resolution = Literal["1m", "1h"]
RESOLUTION_SECONDS: dict[Resolution, int] = {"1m": 60, "1h": 3600}

# Readings of these qualities describe the environment; the rollups average only them.
# `bad`, `calibrating` and `maintenance` describe the instrument (TT 10/2021/TT-BTNMT keeps
# calibration periods out of averages too).
ROLLUP_QUALITIES: tuple[str, ...] = ("good", "suspect")


@dataclass(frozen=True, slots=True)
class StoredReading:
    time: datetime
    site: str
    gateway: str
    sensor: str
    metric: str
    value: float
    quality: str


@dataclass(frozen=True, slots=True)
class RollupRow:
    bucket: datetime
    site: str
    sensor: str
    metric: str
    avg: float
    min: float
    max: float
    count: int


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    letter: DeadLetter


@dataclass(frozen=True, slots=True)
class SeqGap:
    """A run of missing seqs of one gateway; ``lost`` of them were declared dropped by it."""

    gateway: str
    first_seq: int
    last_seq: int
    missing: int
    lost: int


@dataclass(frozen=True, slots=True)
class Completeness:
    """Data completeness of one gateway over its history: ``stored / expected``."""

    gateway: str
    site: str | None
    expected: int
    stored: int
    dead_lettered: int
    lost: int
    pending: int
    completeness_pct: float | None


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What one retention run removed: rows, or whole chunks under TimescaleDB."""

    readings_rows: int = 0
    readings_chunks: int = 0
    rollup_1m_rows: int = 0
    rollup_1h_rows: int = 0
    dead_letters_rows: int = 0
