"""Drainage channel sensor: freeboard (cm from water to bank) and pump state (docs/domain-facts.md §3.4).

Both come from the site's :class:`~simulators.hydrology.Channel`: the channel sits
0.8–0.95 m below the bank with a small tidal ripple, rises with rain, and the pumps start
at 60 cm freeboard (before the 0.5 m alert) and stop near base level. An operator's
``set_pump`` (contract/commands.py) forces the pumps on or off from its time on.
"""

from __future__ import annotations

from simulators.models.base import SensorContext


class DrainageLevelModel:
    def __init__(self, ctx: SensorContext) -> None:
        self._channel = ctx.world.channel(ctx.site)
        self._rng = ctx.rng()

    def override_pump(self, t: float, on: bool | None) -> None:
        """From ``t`` on, the pumps run (True) or stand (False); None: the level switch again."""
        self._channel.override_pump(t, on)

    def sample(self, t: float) -> dict[str, float]:
        freeboard, pump = self._channel.at(t)
        return {
            "drain_freeboard_cm": freeboard + self._rng.gauss(0.0, 0.5),
            "pump_on": 1.0 if pump else 0.0,
        }
