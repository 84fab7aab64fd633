"""Time arithmetic for the models: epoch seconds in, local (UTC+7) hour, day and month out.

The models work on plain epoch seconds (a float or an int on the sensor's grid) because a
simulated week of one gateway is ~10⁵ steps and ``datetime`` arithmetic per step would be
the slowest part. Daily shapes follow local time (docs/contract.md: shown in Asia/Ho_Chi_Minh);
Việt Nam has kept UTC+7 without daylight saving since 1975, so a fixed offset is exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache

LOCAL_OFFSET_S = 7 * 3600
LOCAL_TZ = timezone(timedelta(seconds=LOCAL_OFFSET_S), "ICT")
DAY_S = 86_400
HOUR_S = 3600
_EPOCH_DATE = date(1970, 1, 1)


def require_aware(t: datetime, what: str = "time") -> datetime:
    """Return ``t`` in UTC; refuse naive datetimes (docs/contract.md: times carry an offset)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {t.isoformat()})")
    return t.astimezone(UTC)


def epoch(t: datetime) -> float:
    return require_aware(t).timestamp()


def to_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def local_hour(t: float) -> float:
    """Hour of the local day, 0 ≤ h < 24, fractional."""
    return ((t + LOCAL_OFFSET_S) % DAY_S) / HOUR_S


def local_day(t: float) -> int:
    """Local calendar day as days since 1970-01-01 (local)."""
    return int((t + LOCAL_OFFSET_S) // DAY_S)


def local_day_start(day: int) -> float:
    """Epoch seconds of local midnight starting ``day`` (see :func:`local_day`)."""
    return day * DAY_S - LOCAL_OFFSET_S


def local_weekday(t: float) -> int:
    """Monday = 0 … Sunday = 6; 1970-01-01 was a Thursday."""
    return (local_day(t) + 3) % 7


@lru_cache(maxsize=4096)
def _date_of(day: int) -> date:
    return _EPOCH_DATE + timedelta(days=day)


def day_of_year(t: float) -> int:
    return _date_of(local_day(t)).timetuple().tm_yday


def month_position(t: float) -> float:
    """Position in the year in months at the local day of ``t``: 0.5 = mid-January.

    Day resolution: climatologies change by well under 1 % a day, and caching per day
    keeps this off the per-reading cost.
    """
    return _month_position_of_day(local_day(t))


@lru_cache(maxsize=4096)
def _month_position_of_day(day: int) -> float:
    d = _date_of(day)
    days_in_month = (date(d.year + (d.month == 12), d.month % 12 + 1, 1) - date(d.year, d.month, 1)).days
    return d.month - 1 + (d.day - 0.5) / days_in_month


def interp_hourly(table: Sequence[float], hour: float) -> float:
    """Linear interpolation of a 24-value table whose entries hold at the middle of each hour.

    Smooth shapes rather than steps: a step at a full hour would show up as a jump that a
    rate-of-change rule could mistake for an event.
    """
    x = hour - 0.5
    i = math.floor(x)
    f = x - i
    return table[i % 24] * (1.0 - f) + table[(i + 1) % 24] * f


def interp_monthly(table: Sequence[float], t: float) -> float:
    """Linear interpolation of a 12-value climatology (values at mid-month), wrapping the year."""
    x = month_position(t) - 0.5
    i = math.floor(x)
    f = x - i
    return table[i % 12] * (1.0 - f) + table[(i + 1) % 12] * f


def next_local_time(after: datetime, hour: int, minute: int = 0) -> datetime:
    """The first local ``hour:minute`` at or after ``after`` (returned in UTC)."""
    a = epoch(after)
    day = local_day(a)
    t = local_day_start(day) + hour * HOUR_S + minute * 60
    if t < a:
        t += DAY_S
    return to_datetime(t)


def local_midnight(t: datetime) -> datetime:
    """Local midnight that starts the local day of ``t`` (returned in UTC)."""
    return to_datetime(local_day_start(local_day(epoch(t))))
