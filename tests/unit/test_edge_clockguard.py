"""The clock guard: readings taken while the clock is wrong are held, then stamped from
monotonic offsets; the floor survives a restart; sd_notify speaks systemd's datagram."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract.models import Reading
from edge import sdnotify
from edge.clockguard import NOT_BEFORE, ClockGuard

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REAL = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


class Mono:
    t = 100.0

    def __call__(self) -> float:
        return self.t


def r(ts: datetime, v: float = 1.0) -> Reading:
    return Reading("s", "water_level_cm", ts, v)


def test_readings_of_a_1970_clock_are_held_then_get_their_real_time() -> None:
    mono = Mono()
    g = ClockGuard(monotonic=mono)
    boot = EPOCH + timedelta(seconds=30)  # booted 30 s ago, no RTC
    assert g.admit([r(boot)], boot) == []
    mono.t += 10
    assert g.admit([r(boot + timedelta(seconds=10), 2)], boot + timedelta(seconds=10)) == []
    assert g.untrusted_polls == 2
    mono.t += 5  # NTP sets the clock: it is REAL now, 15 s after the first reading
    out = g.admit([r(REAL, 3)], REAL)
    assert [(x.ts, x.value) for x in out] == [(REAL - timedelta(seconds=15), 1.0),
                                               (REAL - timedelta(seconds=5), 2.0), (REAL, 3.0)]
    assert g.restamped == 2


def test_a_reading_stamped_just_before_the_clock_was_set_is_corrected_too() -> None:
    mono = Mono()
    g = ClockGuard(monotonic=mono)
    g.admit([], EPOCH + timedelta(seconds=100))
    mono.t += 2
    # a driver thread read at 1970+101 s; the agent polls after the jump
    [x] = g.admit([r(EPOCH + timedelta(seconds=101))], REAL)
    assert x.ts == REAL - timedelta(seconds=1)


def test_a_clock_set_back_below_the_last_good_time_is_not_trusted(tmp_path: Path) -> None:
    mono = Mono()
    state = tmp_path / "clock-floor"
    g = ClockGuard(monotonic=mono, state_file=state)
    assert g.admit([r(REAL)], REAL)
    assert state.read_text() == REAL.isoformat()
    # after a reboot into an image's build time (later than NOT_BEFORE, earlier than before)
    g2 = ClockGuard(monotonic=mono, state_file=state)
    stale = REAL - timedelta(days=2)
    assert stale > NOT_BEFORE and g2.admit([r(stale)], stale) == []
    # ... unless the kernel says it is synchronised (a clock that had run fast)
    g3 = ClockGuard(monotonic=mono, state_file=state, synced=lambda: True)
    assert g3.admit([r(stale)], stale)


def test_the_held_readings_are_bounded_and_the_overflow_is_counted() -> None:
    g = ClockGuard(monotonic=Mono(), max_held=3)
    for i in range(5):
        g.admit([r(EPOCH, i)], EPOCH)
    assert g.dropped == 2
    assert [x.value for x in g.admit([], REAL)] == [2, 3, 4]


def test_sd_notify_sends_one_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify("READY=1")
        assert server.recv(64) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.notify("READY=1")
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval_s() == 60.0
