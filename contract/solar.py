"""Sunrise and sunset: NOAA's "General Solar Position Calculations", pure arithmetic.

Shared through the contract because two components need the same sun: the simulators switch
street lamps on at dusk, and the ops center's lamp rules judge a lamp only while it must be
lit (docs/domain-facts.md §4.3). Components never import each other; the contract is the one shared code.

The fractional-year series for the equation of time and the declination, evaluated at local
solar noon, with the zenith at 90.833° (refraction and the solar disc). Accurate to a
minute or two at 20°N, far better than a photocell's switching scatter. Times are epoch
seconds; the local day is the calendar day at a fixed UTC offset (Việt Nam: UTC+7 without
daylight saving since 1975, so a fixed offset is exact).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from functools import lru_cache

DAY_S = 86_400
VN_UTC_OFFSET_H = 7.0
_ZENITH_RAD = math.radians(90.833)
_EPOCH_DATE = date(1970, 1, 1)


def local_day(t: float, utc_offset_h: float = VN_UTC_OFFSET_H) -> int:
    """The local calendar day containing ``t``, as days since 1970-01-01 (local)."""
    return int((t + utc_offset_h * 3600.0) // DAY_S)


def local_day_start(day: int, utc_offset_h: float = VN_UTC_OFFSET_H) -> float:
    """Epoch seconds of local midnight starting ``day`` (see :func:`local_day`)."""
    return day * DAY_S - utc_offset_h * 3600.0


@lru_cache(maxsize=8192)
def sun_times(day: int, lat_deg: float, lon_deg: float,
              utc_offset_h: float = VN_UTC_OFFSET_H) -> tuple[float, float]:
    """Epoch seconds of sunrise and sunset on local day ``day`` (see :func:`local_day`).

    Near the poles, where the sun does not rise or set, the hour angle is clamped (the
    times collapse to solar noon or span the whole day); the cities here are at ~20°N.
    """
    # The series is evaluated at local solar noon of the local calendar day.
    noon = local_day_start(day, utc_offset_h) + DAY_S / 2
    utc_day = int(noon // DAY_S)
    tm = (_EPOCH_DATE + timedelta(days=day)).timetuple().tm_yday
    gamma = 2.0 * math.pi / 365.0 * (tm - 1)
    eqtime_min = 229.18 * (
        0.000075 + 0.001868 * math.cos(gamma) - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma) - 0.040849 * math.sin(2 * gamma)
    )
    decl = (
        0.006918 - 0.399912 * math.cos(gamma) + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma) + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma) + 0.00148 * math.sin(3 * gamma)
    )
    lat = math.radians(lat_deg)
    cos_ha = math.cos(_ZENITH_RAD) / (math.cos(lat) * math.cos(decl)) - math.tan(lat) * math.tan(decl)
    ha_deg = math.degrees(math.acos(max(-1.0, min(1.0, cos_ha))))
    # Minutes after 00:00 UTC of the UTC date of local noon.
    utc_midnight = float(utc_day * DAY_S)
    rise = utc_midnight + 60.0 * (720.0 - 4.0 * (lon_deg + ha_deg) - eqtime_min)
    sset = utc_midnight + 60.0 * (720.0 - 4.0 * (lon_deg - ha_deg) - eqtime_min)
    return rise, sset


def sunrise_sunset(t: float, lat_deg: float, lon_deg: float,
                   utc_offset_h: float = VN_UTC_OFFSET_H) -> tuple[float, float]:
    """Epoch seconds of sunrise and sunset on the local day that contains ``t``.

    Coordinates are rounded to 0.01° (about 1 km, a few seconds of sun time) so a cache
    of a few thousand days and places serves a whole fleet.
    """
    return sun_times(local_day(t, utc_offset_h), round(lat_deg, 2), round(lon_deg, 2), utc_offset_h)


class DarkHours:
    """When a street lamp must be lit at one place: from sunset + ``after_sunset_s`` to the
    next sunrise − ``before_sunrise_s``. ``dark(t)`` caches the current local day, so a
    series judged reading by reading costs two comparisons per reading."""

    __slots__ = ("_after", "_before", "_day_end", "_day_start", "_lat", "_lit_from", "_lit_to",
                 "_offset_h")

    def __init__(self, lat_deg: float, lon_deg: float, *, after_sunset_s: float = 0.0,
                 before_sunrise_s: float = 0.0, utc_offset_h: float = VN_UTC_OFFSET_H) -> None:
        self._lat = (lat_deg, lon_deg)
        self._after = after_sunset_s
        self._before = before_sunrise_s
        self._offset_h = utc_offset_h
        self._day_start = math.inf
        self._day_end = -math.inf
        self._lit_to = -math.inf    # this local day's sunrise − margin
        self._lit_from = math.inf   # this local day's sunset + margin

    def _load(self, t: float) -> None:
        day = local_day(t, self._offset_h)
        lat, lon = self._lat
        rise, sset = sun_times(day, round(lat, 2), round(lon, 2), self._offset_h)
        self._day_start = local_day_start(day, self._offset_h)
        self._day_end = self._day_start + DAY_S
        self._lit_to = rise - self._before
        self._lit_from = sset + self._after

    def dark(self, t: float) -> bool:
        """True when a lamp at this place must be lit at ``t``."""
        if not (self._day_start <= t < self._day_end):
            self._load(t)
        return t < self._lit_to or t >= self._lit_from
