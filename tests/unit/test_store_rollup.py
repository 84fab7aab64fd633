"""Bucket arithmetic and the thread that keeps rollups current."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ingest.errors import StoreError, StoreUnavailable
from ingest.rollup import RollupRunner, bucket_start


def test_buckets_are_utc_minutes_and_hours_aligned_on_the_epoch() -> None:
    t = datetime(2026, 11, 28, 12, 34, 56, 789, tzinfo=timezone(timedelta(hours=7)))
    assert bucket_start(t, 60) == datetime(2026, 11, 28, 5, 34, tzinfo=UTC)
    assert bucket_start(t, 3600) == datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
    assert bucket_start(datetime(1969, 12, 31, 23, 59, 30, tzinfo=UTC), 60) == datetime(
        1969, 12, 31, 23, 59, tzinfo=UTC)
    exact = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
    assert bucket_start(exact, 60) == exact


class FakeRollups:
    def __init__(self, answers: list[int | BaseException]) -> None:
        self.answers = answers
        self.calls = 0

    def refresh_rollups(self, *, max_rows: int = 10) -> int:
        self.calls += 1
        if not self.answers:
            return 0
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_run_once_catches_up_page_by_page() -> None:
    fake = FakeRollups([10, 10, 3])
    runner = RollupRunner(fake, max_rows=10)
    assert runner.run_once() == 23
    assert fake.calls == 3
    assert runner.refreshed == 23


def test_a_notified_runner_refreshes_soon_and_survives_outages() -> None:
    fake = FakeRollups([StoreUnavailable("down"), StoreError("refused"), 5])
    with RollupRunner(fake, interval_s=60, min_interval_s=0) as runner:
        deadline = time.monotonic() + 10
        while not runner.caught_up.is_set():  # down, refused, then it works
            assert time.monotonic() < deadline, "the runner did not recover"
            runner.notify()
            runner.caught_up.wait(0.2)
    assert runner.failures == 2
    assert runner.refreshed == 5


def test_runner_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        RollupRunner(FakeRollups([]), interval_s=0)
