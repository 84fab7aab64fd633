"""A wrong clock never loses data: readings taken while the wall clock cannot be trusted are
held, and stamped from monotonic offsets once it can.

Many gateways have no battery-backed clock: they boot in 1970 (or at their image's build
time) and jump when NTP comes back; some jump back when NTP corrects a fast clock. The
guard distrusts the clock while it reads earlier than

- ``not_before``: the agent's release date (no real clock can read earlier), and
- the latest time it trusted before (kept in a small file next to the outbox, so a reboot
  into 1970 is caught too).

When the kernel says the clock is synchronised (``adjtimex``, as chrony, ntpd or
systemd-timesyncd leave it), the clock is trusted from ``not_before`` on even below the
remembered time (a clock that had run fast and was set back).

While distrusted, each poll's readings are held with the clock's offset from
``time.monotonic`` at that poll; once the clock is good, every held reading moves by the
change of that offset, i.e. it gets the time it was really taken. Nothing is sealed with a
1970 time, so no batch is refused by the ingest's time window because of the gateway's clock.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from contract.models import Reading

logger = logging.getLogger(__name__)

# The release date of this agent: a clock reading earlier is wrong.
NOT_BEFORE = datetime(2026, 12, 1, tzinfo=UTC)
# Readings held while the clock is wrong (a day of a busy gateway); past it the oldest go.
MAX_HELD = 200_000
_SAVE_EVERY_S = 60.0
_TIME_ERROR = 5  # adjtimex(): the clock is not synchronised


def kernel_clock_synced() -> bool | None:
    """The kernel's own view (``adjtimex``): True synchronised, False not, None unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 reads only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


class ClockGuard:
    def __init__(
        self,
        *,
        state_file: Path | None = None,
        not_before: datetime = NOT_BEFORE,
        synced: Callable[[], bool | None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_held: int = MAX_HELD,
    ) -> None:
        self._state_file = state_file
        self._not_before = not_before
        self._synced = synced
        self._monotonic = monotonic
        self._max_held = max_held
        self._floor = not_before
        if state_file is not None:
            with contextlib.suppress(OSError, ValueError):
                saved = datetime.fromisoformat(state_file.read_text().strip())
                if saved.tzinfo is not None:
                    self._floor = max(self._floor, saved)
        self._held: list[tuple[datetime, list[Reading]]] = []
        self._n_held = 0
        self._last_bad: datetime | None = None
        self._next_save = 0.0
        self._trusted: bool | None = None
        self.untrusted_polls = 0
        self.restamped = 0
        self.dropped = 0

    @property
    def floor(self) -> datetime:
        return self._floor

    def trusted(self, now: datetime) -> bool:
        synced = self._synced() if self._synced is not None else None
        if synced and now >= self._not_before:
            return True
        return now >= self._floor

    def admit(self, readings: list[Reading], now: datetime) -> list[Reading]:
        """The readings to batch now: none while the clock is wrong (held), the held ones
        restamped once it is good."""
        mono = timedelta(seconds=self._monotonic())
        offset = now - mono  # what the clock read at monotonic zero
        ok = self.trusted(now)
        if ok != self._trusted:
            if ok and self._trusted is not None:
                logger.warning("clock is good again (%s): stamping %d held readings", now.isoformat(),
                               self._n_held)
            elif not ok:
                logger.warning("clock cannot be trusted (%s, earlier than %s): holding readings until "
                               "it is set", now.isoformat(), self._floor.isoformat())
            self._trusted = ok
        if not ok:
            self.untrusted_polls += 1
            self._last_bad = offset
            if readings:
                self._held.append((offset, readings))
                self._n_held += len(readings)
                while self._n_held > self._max_held and self._held:
                    _, old = self._held.pop(0)
                    self._n_held -= len(old)
                    self.dropped += len(old)
            return []
        out: list[Reading] = []
        for bad_offset, rs in self._held:
            delta = offset - bad_offset
            out.extend(msgspec.structs.replace(r, ts=r.ts + delta) for r in rs)
            self.restamped += len(rs)
        self._held.clear()
        self._n_held = 0
        if self._last_bad is not None and any(r.ts < self._not_before for r in readings):
            # Stamped by a driver thread just before the clock was set: same correction.
            delta = offset - self._last_bad
            readings = [msgspec.structs.replace(r, ts=r.ts + delta) if r.ts < self._not_before else r
                        for r in readings]
        out.extend(readings)
        self._remember(now)
        return out

    def _remember(self, now: datetime) -> None:
        self._floor = max(self._floor, now)
        mono = self._monotonic()
        if self._state_file is None or mono < self._next_save:
            return
        self._next_save = mono + _SAVE_EVERY_S
        try:
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_text(self._floor.isoformat())
            os.replace(tmp, self._state_file)
        except OSError as exc:
            logger.warning("cannot save the clock floor in %s: %s", self._state_file, exc)
