"""The one clock of a one-process stack (smartward/stack.py): ``SimClock`` paced, held by the
governor, stopping at barriers and at ``stop_at``."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

_HELD_RECHECK_S = 0.05
_IDLE_S = 60.0


class PacedClock:
    """``SimClock`` semantics (a start in the past, ``speed`` times real time, never ahead of the
    wall clock), plus: it can be held (the governor), it waits at ``barriers`` until each is
    passed, and it stops for good at ``stop_at``.

    Implements the edge's ``Clock`` (``now``, ``real_seconds_until``) and the simulators'.
    """

    def __init__(self, *, start: datetime, speed: float, stop_at: datetime | None = None,
                 barriers: Sequence[datetime] = (),
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number (got {speed})")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if start > wall():
            raise ValueError("start is in the future: readings would be stamped ahead of the wall clock")
        self.start = start
        self.speed = speed
        self.stop_at = stop_at
        self._wall = wall
        self._mono = monotonic
        self._lock = threading.Lock()
        self._base = start.timestamp()
        self._base_mono = monotonic()
        self._held = False
        self._held_since = 0.0
        self._barriers = sorted(b.timestamp() for b in barriers if b > start)
        self.held_s = 0.0  # real seconds spent held (how much the pipeline slowed the clock)

    def _raw(self, mono: float) -> float:
        return self._base if self._held else self._base + self.speed * (mono - self._base_mono)

    def _limit(self) -> float | None:
        """Where the clock waits: the next barrier, or the stop."""
        stop = None if self.stop_at is None else self.stop_at.timestamp()
        barrier = self._barriers[0] if self._barriers else None
        if barrier is None or (stop is not None and stop <= barrier):
            return stop
        return barrier

    def _cap(self) -> float:
        cap = self._wall().timestamp()
        limit = self._limit()
        return cap if limit is None else min(cap, limit)

    def now(self) -> datetime:
        with self._lock:
            t = min(self._raw(self._mono()), self._cap())
        return datetime.fromtimestamp(t, UTC)

    def real_seconds_until(self, t: datetime) -> float:
        target = t.timestamp()
        with self._lock:
            raw = self._raw(self._mono())
            now = min(raw, self._cap())
            if target <= now:
                return target - now
            limit = self._limit()
            if limit is not None and target > limit:
                if now >= limit:  # waiting at a barrier (re-check soon) or stopped for good
                    return _IDLE_S if limit == self._stop_s() else _HELD_RECHECK_S
                target = limit  # wake when the clock gets there, to say so
            if self._held:
                return _HELD_RECHECK_S
            return max((target - raw) / self.speed, target - self._wall().timestamp(), 0.0)

    def _stop_s(self) -> float | None:
        return None if self.stop_at is None else self.stop_at.timestamp()

    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> None:
        with self._lock:
            if self._held:
                return
            mono = self._mono()
            self._base = min(self._raw(mono), self._cap())
            self._held = True
            self._held_since = mono

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            mono = self._mono()
            self._held = False
            self._base_mono = mono
            self.held_s += mono - self._held_since

    def set_speed(self, speed: float) -> None:
        """Change the rate from now on (no jump)."""
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number (got {speed})")
        with self._lock:
            if speed == self.speed:
                return
            mono = self._mono()
            self._base = min(self._raw(mono), self._cap())
            self._base_mono = mono
            self.speed = speed

    def next_barrier(self) -> datetime | None:
        with self._lock:
            return datetime.fromtimestamp(self._barriers[0], UTC) if self._barriers else None

    def pass_barrier(self) -> None:
        """Let the clock go on past the barrier it waits at (from there, not from where it
        would have been)."""
        with self._lock:
            if not self._barriers:
                return
            mono = self._mono()
            self._base = min(self._raw(mono), self._cap())
            self._base_mono = mono
            self._barriers.pop(0)

    def finished(self) -> bool:
        return self.stop_at is not None and self.now() >= self.stop_at
