"""Air-quality station: PM2.5, PM10, NO₂, CO, O₃, SO₂ (µg/m³), temperature, humidity.

docs/domain-facts.md §4.1 (Hanoi-like, Nam Định scaled ×0.7–0.9):
* PM2.5 daily mean by season: winter 45–90 µg/m³, summer 15–30, about 3× apart; the
  monthly climatology below is Hanoi's ×0.8 and each day gets a lognormal factor.
* PM2.5 daily shape: the §4.1 multipliers (highest 02–08 h, 1.3 at 06–08, minimum at
  14–15 h), normalised to mean 1 so the daily mean is what the climatology says.
* PM10 ≈ 1.4–1.8 × PM2.5. NO₂ 20–80 with rush-hour peaks to 120; CO 600–2500;
  SO₂ 5–30, higher in the industrial cluster; O₃ 20–60 at night, peak 13–15 h.
Rain washes PM out; an :class:`~simulators.events.AirEpisode` replaces the daily mean.
"""

from __future__ import annotations

import math

from simulators.events import AirEpisode
from simulators.models import climate
from simulators.models.base import SensorContext, Stepper
from simulators.models.shifts import load as shift_load
from simulators.randomness import Ar1
from simulators.timebase import interp_hourly, interp_monthly, local_hour

# µg/m³, mid-month; Hanoi suburban/urban ×0.8 [EST from §4.1].
PM25_MONTHLY = (62.0, 56.0, 42.0, 33.0, 24.0, 20.0, 19.0, 20.0, 24.0, 36.0, 50.0, 60.0)
_PM25_DIURNAL_RAW = (
    1.10, 1.10, 1.12, 1.18, 1.22, 1.25, 1.30, 1.32, 1.25, 1.05, 0.95, 0.88,
    0.78, 0.72, 0.66, 0.66, 0.72, 0.90, 1.05, 1.12, 1.12, 1.10, 1.10, 1.10,
)
PM25_DIURNAL = tuple(m * 24.0 / sum(_PM25_DIURNAL_RAW) for m in _PM25_DIURNAL_RAW)
# Motorbike traffic, relative: rush hours 07–09 and 17–19 (drives NO₂, CO) [EST].
TRAFFIC = (
    0.35, 0.25, 0.2, 0.2, 0.25, 0.45, 0.8, 1.25, 1.3, 1.0, 0.9, 0.9,
    0.85, 0.8, 0.85, 0.95, 1.1, 1.3, 1.35, 1.1, 0.9, 0.75, 0.6, 0.45,
)
# Photochemical O₃ amplitude by month, µg/m³: more sun, more ozone.
O3_AMPLITUDE = (55.0, 60.0, 68.0, 76.0, 86.0, 90.0, 88.0, 84.0, 80.0, 72.0, 64.0, 56.0)
# Day-to-day spread of the daily PM2.5 mean: σ=0.22 in log space keeps a 60 µg/m³ winter
# month mostly inside §4.1's 45–90 band.
_DAILY_SIGMA = 0.22


class AirQualityModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        rng = ctx.rng()
        self._step = Stepper(ctx.spec.interval_s)
        self._rng = rng
        self._pm = Ar1(rng, 0.15, 3 * 3600.0)  # log-space: synoptic ups and downs within a day
        self._ratio = Ar1(rng, 0.08, 6 * 3600.0)
        self._no2 = Ar1(rng, 0.15, 1800.0)
        self._co = Ar1(rng, 0.12, 1800.0)
        self._o3 = Ar1(rng, 0.12, 3600.0)
        self._so2 = Ar1(rng, 0.2, 3600.0)
        self._temp = Ar1(rng, 0.3, 1800.0)
        self._industrial = ctx.site_kind == "industrial_cluster"
        self._episodes = [e for e in ctx.events_of(AirEpisode) if ctx.site in e.sites]

    def daily_pm25(self, t: float) -> float:
        """Daily-mean PM2.5 at ``t``: the episode's if one covers ``t``, else climatology × day factor."""
        for e in self._episodes:
            s, end = e.span
            if s <= t < end:
                return e.pm25_daily_mean
        z = climate.day_anomaly(self._ctx.seed, f"pm-day:{self._ctx.site}", t)
        level = interp_monthly(PM25_MONTHLY, t) * math.exp(_DAILY_SIGMA * z - _DAILY_SIGMA**2 / 2)
        return level * (1.1 if self._industrial else 1.0)

    def sample(self, t: float) -> dict[str, float]:
        dt = self._step.dt(t)
        g = self._rng.gauss
        hour = local_hour(t)
        rain = self._ctx.rain_mm_h(t)
        washout = 1.0 / (1.0 + 0.08 * rain)
        season = interp_monthly(PM25_MONTHLY, t) / 40.0  # ~1.5 in winter, ~0.5 in summer
        traffic = interp_hourly(TRAFFIC, hour)

        # exp(x − σ²/2) keeps the multiplicative noise mean-one, so daily means stay on target.
        pm_noise = math.exp(self._pm.step(dt) - 0.15**2 / 2)
        pm25 = self.daily_pm25(t) * interp_hourly(PM25_DIURNAL, hour) * pm_noise * washout
        pm25 *= 1.0 + 0.03 * g(0.0, 1.0)
        ratio = min(1.8, max(1.4, 1.6 + self._ratio.step(dt)))
        pm10 = pm25 * ratio * (1.0 + 0.03 * g(0.0, 1.0))

        gas_season = 0.85 + 0.25 * min(1.0, season)
        no2 = (18.0 + 45.0 * traffic) * gas_season * math.exp(self._no2.step(dt))
        co = (600.0 + 1300.0 * traffic) * gas_season * math.exp(self._co.step(dt))
        # In the cluster SO₂ comes from the boilers (§4.1), in the wards from traffic.
        so2 = 14.0 + 12.0 * shift_load(t) if self._industrial else 7.0 + 6.0 * traffic
        so2 *= math.exp(self._so2.step(dt))
        cloud = 0.4 if rain > 0.5 else 1.0
        sun = math.exp(-(((hour - 14.0) / 3.0) ** 2))
        o3 = (30.0 + interp_monthly(O3_AMPLITUDE, t) * sun * cloud) * math.exp(self._o3.step(dt))

        temp = climate.air_temp_c(t, self._ctx.seed, rain) + self._temp.step(dt)
        rh = climate.humidity_pct(t, self._ctx.seed, rain) + 1.0 * g(0.0, 1.0)
        return {
            "pm25": max(0.5, pm25),
            "pm10": max(1.0, pm10),
            "no2": no2,
            "co": co,
            "o3": o3,
            "so2": so2,
            "air_temp_c": temp,
            "humidity_pct": min(100.0, max(0.0, rh)),
        }
