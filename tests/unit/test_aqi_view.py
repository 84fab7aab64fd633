"""The screen's daily VN_AQI (ops_center/domain/aqi_station.py) is QĐ 1459's daily rule
(ops_center/domain/aqi.py) over the Vietnam day's hourly means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ops_center.domain.aqi import daily_aqi, daily_inputs
from ops_center.domain.aqi_station import VN_TZ, daily_of_station, start_of_vn_day, station_daily

H = timedelta(hours=1)


def series(
    day_start: datetime, pm25: list[float], o3: list[float]
) -> dict[str, list[tuple[datetime, float]]]:
    return {
        "pm25": [(day_start + k * H, v) for k, v in enumerate(pm25)],
        # O₃ from 7 hours before the day: its 8-hour means start there.
        "o3": [(day_start + (k - 7) * H, v) for k, v in enumerate(o3)],
    }


def test_yesterdays_index_is_the_daily_rule_over_the_vietnam_day() -> None:
    now = datetime(2026, 12, 7, 3, 30, tzinfo=UTC)  # 10:30 in Vietnam
    today = start_of_vn_day(now)
    assert today == datetime(2026, 12, 7, 0, 0, tzinfo=VN_TZ)
    yesterday = today - 24 * H
    pm25 = [30.0 + k for k in range(24)]
    o3 = [100.0 + 5 * k for k in range(31)]
    s = series(yesterday, pm25, o3)
    result = daily_of_station(s, yesterday, 24)
    pm_24h, max_1h, o3_8h = daily_inputs({"pm25": pm25, "o3": o3})
    max_1h["o3"] = max(o3[7:])
    assert result == daily_aqi(pm_24h, max_1h, o3_8h)
    days = station_daily(s, now)
    assert [(d.day.isoformat(), d.partial) for d in days] == [("2026-12-06", False)]
    assert days[0].value == result.value


def test_today_is_provisional_from_the_hours_so_far() -> None:
    now = datetime(2026, 12, 7, 3, 30, tzinfo=UTC)  # 10 complete hours of the Vietnam day
    today = start_of_vn_day(now)
    s = series(today, [60.0] * 10, [])
    days = station_daily(s, now)
    assert [(d.day.isoformat(), d.partial, d.value) for d in days] == [
        ("2026-12-07", True, 117)
    ]  # PM2.5 60: 100 + 50·10/30


def test_a_day_with_too_few_hours_has_no_index() -> None:
    now = datetime(2026, 12, 7, 3, 30, tzinfo=UTC)
    yesterday = start_of_vn_day(now) - 24 * H
    s = series(yesterday, [40.0] * 10, [])  # 10 of 24 hours: under 75 %
    assert daily_of_station(s, yesterday, 24) is None


def test_chart_limits_follow_the_rules_and_their_schedule() -> None:
    from datetime import date

    from contract.registry import load_registry
    from ops_center.api.rule_limits import limits_of, rules_for

    reg = load_registry()
    rules = rules_for(reg)

    def pm25(day: date) -> float:
        return next(
            lim.value for lim in limits_of(rules, reg.sensors["tn-aq-01"], day) if lim.metric == "pm25"
        )

    assert pm25(date(2025, 12, 31)) == 50.0
    assert pm25(date(2026, 1, 1)) == 45.0  # QCVN 05:2023 tightens PM2.5 on 01/01/2026
    noise = {(lim.when, lim.value) for lim in limits_of(rules, reg.sensors["tn-noise-01"], date(2026, 6, 1))}
    assert noise == {("day", 55.0), ("night", 45.0)}  # a school: the special zone's limits
