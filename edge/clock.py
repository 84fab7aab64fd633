"""Clocks for the edge agent.

The agent reads the time only through a :class:`Clock`, so a simulated fleet can run an
hour of sensor time in seconds. Two time bases exist in the agent on purpose:

- the clock (this module) times the data: when sensors are polled, how old a batch may get,
  the ``sent_at`` and status timestamps;
- ``time.monotonic`` times the network: reconnect back-off, ack timeout, backlog rate and the
  status period are properties of the link and the broker, which do not speed up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def real_seconds_until(self, t: datetime) -> float:
        """How many real seconds until the clock reads ``t`` (negative when past)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def real_seconds_until(self, t: datetime) -> float:
        return (t - self.now()).total_seconds()


class ScaledClock:
    """Wall time from ``start``, running ``speed`` times faster than real time."""

    def __init__(
        self,
        *,
        speed: float = 1.0,
        start: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.start = start if start is not None else datetime.now(UTC)
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._monotonic = monotonic
        self._t0 = monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(self._monotonic() - self._t0) * self.speed)

    def real_seconds_until(self, t: datetime) -> float:
        return (t - self.now()).total_seconds() / self.speed
