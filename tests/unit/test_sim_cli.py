"""``smartward sim evaluate --start``: a pinned, reproducible scenario start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contract.registry import Registry, load_registry
from simulators.scenarios import Scenario, get_scenario
from smartward.sim_cli import _parser
from smartward.sim_eval import LOCAL, StartTooLateError, parse_start, pinned_scenario

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def test_a_start_without_offset_is_vietnamese_local_time() -> None:
    start = parse_start("2026-11-16T00:00")
    assert start == datetime(2026, 11, 15, 17, 0, tzinfo=UTC)
    assert start.utcoffset() == timedelta(hours=7)


def test_a_start_with_an_offset_keeps_it() -> None:
    assert parse_start("2026-11-16T00:00Z") == datetime(2026, 11, 16, 0, 0, tzinfo=UTC)
    assert parse_start("2026-11-16T02:00+02:00") == datetime(2026, 11, 16, 0, 0, tzinfo=UTC)


def test_evaluate_takes_start_and_rejects_what_is_not_a_date() -> None:
    args = _parser().parse_args(["evaluate", "--scenario", "gas-leak", "--start", "2026-11-25T00:00"])
    assert args.start == datetime(2026, 11, 25, 0, 0, tzinfo=LOCAL)
    assert _parser().parse_args(["evaluate", "--scenario", "gas-leak"]).start is None
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["evaluate", "--scenario", "gas-leak", "--start", "25/11/2026"])
    assert exc.value.code == 2


def test_a_pinned_scenario_starts_exactly_there(registry: Registry) -> None:
    def build(start: datetime) -> Scenario:
        return get_scenario("gas-leak", start=start, registry=registry)

    start = datetime(2026, 11, 25, 0, 0, tzinfo=LOCAL)
    sc = pinned_scenario(build, start, tail_s=180.0, now=NOW)
    assert sc.start == start
    assert sc.expected == build(start).expected  # the same ground truth on every run


def test_a_pinned_scenario_that_would_run_past_now_is_refused(registry: Registry) -> None:
    def build(start: datetime) -> Scenario:
        return get_scenario("gas-leak", start=start, registry=registry)  # 4 h long

    late = NOW - timedelta(hours=4)  # ends at NOW, its 180 s tail after it
    with pytest.raises(StartTooLateError, match="after now"):
        pinned_scenario(build, late, tail_s=180.0, now=NOW)
    assert pinned_scenario(build, late - timedelta(seconds=180), tail_s=180.0, now=NOW).start == \
        late - timedelta(seconds=180)
