"""Simulated and manual clocks: fast replay of the past, never ahead of the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulators.clock import Clock, ManualClock, SimClock, WallClock

WALL0 = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


class FakeTime:
    """A wall clock and a monotonic clock that move together, under the test's control."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.wall_offset = 0.0  # an NTP step moves the wall clock, not the monotonic one

    def wall(self) -> datetime:
        return WALL0 + timedelta(seconds=self.elapsed + self.wall_offset)

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed


def sim(ft: FakeTime, **kw: object) -> SimClock:
    return SimClock(wall=ft.wall, monotonic=ft.monotonic, **kw)  # type: ignore[arg-type]


def test_sim_clock_starts_speed_times_horizon_in_the_past() -> None:
    ft = FakeTime()
    clock = sim(ft, speed=60.0, horizon_s=600.0)
    assert clock.start == WALL0 - timedelta(hours=10)
    assert clock.now() == clock.start
    ft.elapsed = 30.0
    assert clock.now() == clock.start + timedelta(seconds=1800)


def test_sim_clock_never_runs_ahead_of_the_wall_clock() -> None:
    ft = FakeTime()
    clock = sim(ft, speed=100.0, horizon_s=60.0)
    for step in range(0, 400):
        ft.elapsed = step * 0.5
        assert clock.now() <= ft.wall()
    # Caught up after horizon_s real seconds: from then on it is the wall clock.
    ft.elapsed = 61.0
    assert clock.caught_up()
    assert clock.now() == ft.wall()


def test_sim_clock_with_the_real_wall_clock_stamps_nothing_in_the_future() -> None:
    clock = SimClock(speed=1e6, horizon_s=1.0)
    for _ in range(200):
        assert clock.now() <= datetime.now(UTC)


def test_sim_clock_is_aware_utc_and_satisfies_the_clock_protocol() -> None:
    clock = SimClock(speed=5.0)
    assert isinstance(clock, Clock)
    assert isinstance(WallClock(), Clock)
    assert clock.now().utcoffset() == timedelta(0)


def test_real_seconds_until_accounts_for_speed_and_the_wall_clock() -> None:
    ft = FakeTime()
    clock = sim(ft, speed=10.0, horizon_s=100.0)  # starts 1000 s in the past
    assert clock.real_seconds_until(clock.start - timedelta(seconds=5)) == 0.0
    assert clock.real_seconds_until(clock.start + timedelta(seconds=500)) == pytest.approx(50.0)
    ft.elapsed = 50.0
    assert clock.real_seconds_until(clock.start + timedelta(seconds=500)) == 0.0
    # Still 550 s behind the wall clock: catching up runs at 10×.
    assert clock.real_seconds_until(ft.wall() + timedelta(seconds=30)) == pytest.approx(58.0)
    # Once caught up, waiting for a time beyond the wall clock takes real time.
    ft.elapsed = 200.0
    assert clock.real_seconds_until(ft.wall() + timedelta(seconds=30)) == pytest.approx(30.0)


def test_sim_clock_ignores_wall_clock_steps_for_its_pace() -> None:
    ft = FakeTime()
    clock = sim(ft, speed=10.0, horizon_s=100.0)
    ft.elapsed = 10.0
    ft.wall_offset = 3600.0  # NTP jumps the wall clock an hour ahead
    assert clock.now() == clock.start + timedelta(seconds=100)


def test_sim_clock_refuses_bad_arguments() -> None:
    ft = FakeTime()
    with pytest.raises(ValueError):
        sim(ft, speed=0.0)
    with pytest.raises(ValueError):
        sim(ft, speed=float("nan"))
    with pytest.raises(ValueError):
        sim(ft, start=datetime(2026, 1, 1))  # naive
    with pytest.raises(ValueError):
        sim(ft, start=WALL0 + timedelta(hours=1))  # in the future


def test_sim_clock_accepts_an_explicit_start_in_another_offset() -> None:
    ft = FakeTime()
    clock = sim(ft, speed=2.0, start=datetime.fromisoformat("2026-11-28T08:00:00+07:00"))
    assert clock.start == datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
    assert clock.start.tzinfo == UTC


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(WALL0)
    assert clock.now() == WALL0
    clock.advance(90)
    assert clock.now() == WALL0 + timedelta(seconds=90)
    clock.set(WALL0 - timedelta(days=1))
    assert clock.now() == WALL0 - timedelta(days=1)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 1, 1))
    assert isinstance(clock, Clock)
