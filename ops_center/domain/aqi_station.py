"""VN_AQI of one air-quality station from its hourly means (the store's ``readings_1h``)
through QĐ 1459's functions (ops_center/domain/aqi.py). Pure: the caller reads the means and
passes the time.

- Hourly (AQIʰ): the current hour, NowCast over 12 hours for PM (:func:`station_hourly`).
- Daily (AQIᵈ), for yesterday and today, Vietnam days: the 24 hourly means of the day (buckets
  starting 00:00 … 23:00 local, the decision's 01:00 … 24:00 labels), the 8-hour O₃ means
  taking the previous day's last 7 hours in front (QĐ 1459 §2.2.2). Yesterday needs 18 of its
  24 hours (``daily_inputs``' 75 % default); today is provisional (``partial``): the hours
  so far, with the same share of the hours elapsed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Final

from ops_center.domain.aqi import GASES, PM, AqiResult, daily_aqi, daily_inputs, hourly_aqi

VN_TZ: Final = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
HOUR: Final = timedelta(hours=1)
AQI_METRICS: Final = (*PM, *GASES)
Series = Mapping[str, Sequence[tuple[datetime, float]]]  # metric -> (bucket, mean), oldest first


@dataclass(frozen=True, slots=True)
class StationDay:
    """The AQIᵈ of one Vietnam day; ``partial`` for today (the hours so far)."""

    day: date
    result: AqiResult
    partial: bool

    @property
    def value(self) -> int:
        return self.result.value


def start_of_vn_day(t: datetime) -> datetime:
    local = t.astimezone(VN_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def station_hourly(series: Series, hour: datetime) -> AqiResult | None:
    """AQIʰ of one station at ``hour`` (start of the current hour) from its hourly means;
    None without PM data."""
    by_hour = {m: {b: v for b, v in points} for m, points in series.items()}
    pm: dict[str, list[float | None]] = {}
    for p in PM:
        if p in by_hour:
            pm[p] = [by_hour[p].get(hour - i * HOUR) for i in range(12)]
    gases: dict[str, float | None] = {}
    for g in GASES:
        if g in by_hour:
            gases[g] = by_hour[g].get(hour)
            if gases[g] is None:  # early in the hour: the last complete hour
                gases[g] = by_hour[g].get(hour - HOUR)
    return hourly_aqi(pm, gases)


def daily_of_station(series: Series, day_start: datetime, hours: int) -> AqiResult | None:
    """AQIᵈ of the Vietnam day starting at ``day_start`` from its first ``hours`` hourly means."""
    by_hour = {m: {b: v for b, v in pts} for m, pts in series.items()}
    hourly: dict[str, list[float | None]] = {}
    for m in AQI_METRICS:
        if m not in by_hour:
            continue
        first = -7 if m == "o3" else 0
        hourly[m] = [by_hour[m].get(day_start + k * HOUR) for k in range(first, hours)]
    need = max(1, math.ceil(0.75 * hours))
    pm_24h, max_1h, o3_8h = daily_inputs(hourly, min_hours_24h=need, min_hours_8h=6)
    o3 = hourly.get("o3")
    if o3 is not None:  # the day's max 1 h O₃: its own hours only (not the 7 in front)
        present = [v for v in o3[7:] if v is not None]
        max_1h["o3"] = max(present) if present else None
    return daily_aqi(pm_24h, max_1h, o3_8h)


def station_daily(series: Series, now: datetime) -> list[StationDay]:
    """Yesterday's and today's AQIᵈ of one station (those it has data for)."""
    today = start_of_vn_day(now)
    elapsed = int((now - today).total_seconds() // 3600)  # complete hours of today so far
    out: list[StationDay] = []
    for day_start, hours, partial in ((today - 24 * HOUR, 24, False), (today, elapsed, True)):
        if hours <= 0:
            continue
        result = daily_of_station(series, day_start, hours)
        if result is not None:
            out.append(StationDay(day_start.date(), result, partial))
    return out
