"""Sunrise and sunset for the street-lighting schedule (FACTS.md §4.3).

NOAA's "General Solar Position Calculations" (fractional-year series for the equation of
time and the declination, zenith 90.833° for refraction and the solar disc). Accurate to a
minute or two at 20°N, far better than a photocell's switching scatter.
"""

from __future__ import annotations

import math
from functools import lru_cache

from simulators.timebase import DAY_S, day_of_year, local_day, local_day_start

_ZENITH_RAD = math.radians(90.833)


@lru_cache(maxsize=8192)
def _sun_times(day: int, lat_deg: float, lon_deg: float) -> tuple[float, float]:
    # ``day`` is the local calendar day; the series is evaluated at local solar noon.
    noon = local_day_start(day) + DAY_S / 2
    tm = day_of_year(noon)
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
    # Minutes after 00:00 UTC of the UTC date of local noon (same date at UTC+7).
    utc_midnight = noon - (noon % DAY_S)
    rise = utc_midnight + 60.0 * (720.0 - 4.0 * (lon_deg + ha_deg) - eqtime_min)
    sset = utc_midnight + 60.0 * (720.0 - 4.0 * (lon_deg - ha_deg) - eqtime_min)
    return rise, sset


def sunrise_sunset(t: float, lat_deg: float, lon_deg: float) -> tuple[float, float]:
    """Epoch seconds of sunrise and sunset on the local day that contains ``t``."""
    return _sun_times(local_day(t), round(lat_deg, 2), round(lon_deg, 2))
