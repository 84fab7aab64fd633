"""Street flood sensor: water depth at a street low point, cm (docs/domain-facts.md §3.3).

The depth is the site water balance of :mod:`simulators.hydrology` (rain in, inlets
out, less when the channel backs up). The ultrasonic sensor adds a few millimetres of
noise, folded at zero: a dry street reads 0–1 cm of "ponding", never a negative depth,
and never more than 2 cm without rain.
"""

from __future__ import annotations

from simulators.models.base import SensorContext


class FloodDepthModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._street = ctx.world.street(ctx.id)
        self._rng = ctx.rng()

    def sample(self, t: float) -> dict[str, float]:
        depth = self._street.depth_at(t)
        noise = self._rng.gauss(0.0, 0.3)
        return {"water_level_cm": min(1.9, abs(noise)) if depth <= 0.0 else max(0.0, depth + noise)}
