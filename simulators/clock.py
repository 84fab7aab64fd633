"""Clocks: the wall clock, a simulated clock that runs fast, a manual clock for tests.

The simulated clock replays the past faster than real time and then follows the wall
clock: it starts ``speed × horizon_s`` simulated seconds ago and runs ``speed`` times
faster, capped by the wall clock. So a demo shows hours of history within minutes and no
reading is ever stamped in the future (the ingest would refuse it, docs/reliability.md B3).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from simulators.timebase import require_aware


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC time."""
        ...


def _wall_now() -> datetime:
    return datetime.now(UTC)


class WallClock:
    """Real time."""

    def now(self) -> datetime:
        return _wall_now()


class SimClock:
    """Simulated clock running `speed` times faster than real time. It starts in the past
    (default start = wall_now - speed * horizon_s) and never runs ahead of the wall clock:
    now() = min(start + speed * monotonic_elapsed, wall_now). So no reading is ever stamped in the future.

    ``wall`` and ``monotonic`` are injectable for tests; the elapsed time is measured on the
    monotonic clock so that a wall-clock step (NTP) does not make the simulation jump.
    """

    def __init__(
        self,
        *,
        speed: float = 1.0,
        start: datetime | None = None,
        horizon_s: float = 3600.0,
        wall: Callable[[], datetime] = _wall_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number (got {speed})")
        if not (math.isfinite(horizon_s) and horizon_s >= 0):
            raise ValueError(f"horizon_s must be >= 0 (got {horizon_s})")
        self._wall = wall
        self._monotonic = monotonic
        now = require_aware(wall(), "wall clock")
        self.speed = float(speed)
        if start is None:
            self.start = now - timedelta(seconds=self.speed * horizon_s)
        else:
            self.start = require_aware(start, "start")
        if self.start > now:
            raise ValueError(f"start {self.start.isoformat()} is in the future: "
                             "readings would be stamped ahead of the wall clock")
        self._t0 = monotonic()

    def _elapsed_s(self) -> float:
        return self._monotonic() - self._t0

    def now(self) -> datetime:
        simulated = self.start + timedelta(seconds=self.speed * self._elapsed_s())
        return min(simulated, require_aware(self._wall(), "wall clock"))

    def caught_up(self) -> bool:
        """True once the simulation has reached the wall clock (it then runs at real speed)."""
        return self.start + timedelta(seconds=self.speed * self._elapsed_s()) >= self._wall()

    def real_seconds_until(self, t: datetime) -> float:
        """Real seconds to wait until ``now() >= t`` (0 if it already is)."""
        t = require_aware(t, "t")
        fast = (t - self.start).total_seconds() / self.speed - self._elapsed_s()
        wall = (t - require_aware(self._wall(), "wall clock")).total_seconds()
        return max(0.0, fast, wall)


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: datetime) -> None:
        self._now = require_aware(start, "start")

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"a clock only moves forward (got {seconds} s)")
        self._now += timedelta(seconds=seconds)

    def set(self, t: datetime) -> None:
        self._now = require_aware(t, "t")
