"""Noise sensor: 1-minute LAeq and LAmax, dB(A), by hour and zone (docs/domain-facts.md §4.2).

Shape from §4.2: peaks 07–09 h and 17–19 h, a dip at 12–13 h, lowest 01–04 h; horns add
LAmax spikes of 85–95 dB. Levels by where the sensor is (attr ``road``):

* ``kerbside``: §4.2 main road at the kerb, 70–78 by day, 58–66 at night;
* ``alley``: §4.2 residential alley, 55–65 by day, 45–55 at night;
* unset: the demo sensors, mounted on a school gate, a hospital fence or a square set
  back from the carriageway. Their levels are [EST] and chosen to stay inside QCVN
  26:2010 (§2.2) for the sensor's ``noise_zone`` (special 55/45, normal 70/55), with a
  2–3 dB margin on the hourly energetic mean, so a normal day raises no noise alert and
  every noise incident in a scenario is one the scenario put there (:class:`NoiseEvent`).
"""

from __future__ import annotations

from simulators.events import NoiseEvent
from simulators.models.base import SensorContext, Stepper
from simulators.randomness import Ar1
from simulators.timebase import interp_hourly, local_hour

KERBSIDE = (
    62, 60, 59, 59, 60, 63, 68, 75, 77, 74, 73, 73, 71, 72, 73, 74, 76, 77, 76, 74, 72, 69, 66, 64,
)
ALLEY = (
    50, 48, 47, 47, 48, 50, 55, 60, 62, 60, 59, 59, 57, 58, 59, 60, 61, 63, 63, 61, 59, 55, 53, 51,
)
# Set back from a main street, normal zone (limits 70 day / 55 night, 21–06 h is night).
SETBACK_NORMAL = (
    48, 47, 46, 46, 47, 49, 57, 63, 65, 63, 62, 62, 60, 61, 62, 63, 64, 65, 65, 63, 60, 50, 49, 48,
)
# School gate, hospital fence: special zone (limits 55 day / 45 night).
SETBACK_SPECIAL = (
    39, 38, 37, 37, 38, 40, 45, 50, 51, 49, 48, 48, 46, 47, 48, 49, 50, 51, 50, 48, 45, 40, 39, 39,
)
_PROFILES = {"kerbside": KERBSIDE, "alley": ALLEY}


class NoiseModel:
    def __init__(self, ctx: SensorContext) -> None:
        rng = ctx.rng()
        self._rng = rng
        self._step = Stepper(ctx.spec.interval_s)
        zone = ctx.attr_str("noise_zone", "normal")
        road = ctx.attr_str("road", "")
        default = SETBACK_SPECIAL if zone == "special" else SETBACK_NORMAL
        self._profile: tuple[int, ...] = _PROFILES.get(road, default)
        self._loud = road == "kerbside" or (not road and zone == "normal")
        self._drift = Ar1(rng, 1.5, 600.0)
        self._events = [e for e in ctx.events_of(NoiseEvent) if ctx.id in e.sensors]

    def sample(self, t: float) -> dict[str, float]:
        dt = self._step.dt(t)
        r = self._rng
        hour = local_hour(t)
        laeq = interp_hourly(self._profile, hour) + self._drift.step(dt) + r.gauss(0.0, 1.0)
        for e in self._events:
            s, end = e.span
            if s <= t < end:
                laeq += e.add_db
        lamax = laeq + 7.0 + 5.0 * r.random()
        # Horns (§4.2): LAmax spikes, frequent by day, rare at night; softer behind a fence.
        day = 6.0 <= hour < 22.0
        if r.random() < (0.25 if day else 0.05) * (1.0 if self._loud else 0.4):
            horn = (85.0 if self._loud else 75.0) + 10.0 * r.random()
            lamax = max(lamax, horn)
        return {"noise_laeq": laeq, "noise_lamax": lamax}
