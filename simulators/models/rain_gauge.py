"""Rain gauge: rain rate (mm/h) of the site's rain field (docs/domain-facts.md §3.1).

The rain itself comes from the scenario's :class:`~simulators.events.RainEvent`s through
the :class:`~simulators.world.World`, so the gauge, the streets and the channel of a site
see the same storm. Without rain the gauge reads exactly 0, as a tipping bucket does.
"""

from __future__ import annotations

from simulators.models.base import SensorContext


class RainGaugeModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        self._rng = ctx.rng()

    def sample(self, t: float) -> dict[str, float]:
        rain = self._ctx.rain_mm_h(t)
        # Catch and counting error of a tipping bucket: ~10 % [EST]; the draw is taken even
        # when dry so that the noise stream does not depend on the weather.
        error = 1.0 + 0.1 * self._rng.gauss(0.0, 1.0)
        return {"rain_mm_h": max(0.0, rain * error) if rain > 0.05 else 0.0}
