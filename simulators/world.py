"""The shared physical state of a simulation: scenario events, rain fields, water balances.

One ``World`` per gateway simulator (and one per scenario when it computes its ground
truth). Everything in it is deterministic, so two worlds built from the same registry and
events agree: the rain gauge of one gateway and the flood sensors of another see the same
storm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

from contract.registry import Registry
from simulators.events import Event, RainEvent
from simulators.hydrology import Channel, ChannelParams, StreetFlood, StreetParams
from simulators.timebase import epoch

# Water balances start this long before the simulation or the site's first rain, dry. Any
# earlier rain has drained away by then (≥ 5 cm/h from a few tens of cm), so the state does
# not depend on where a run starts: a gateway restarted mid-scenario sees the same water.
_WARMUP_S = 6 * 3600.0


def numeric_attr(attrs: Mapping[str, str | int | float | bool], key: str) -> float | None:
    """A number from a sensor's registry ``attrs`` (booleans are not numbers here)."""
    value = attrs.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class World:
    def __init__(self, registry: Registry, events: Sequence[Event], *, start: float) -> None:
        self.registry = registry
        self.events: tuple[Event, ...] = tuple(events)
        self.start = start
        self._rain: dict[str, tuple[RainEvent, ...]] = {}
        for e in self.events:
            if isinstance(e, RainEvent):
                self._rain[e.site] = (*self._rain.get(e.site, ()), e)
        self._channels: dict[str, Channel] = {}
        self._streets: dict[str, StreetFlood] = {}

    def rain_mm_h(self, site: str, t: float) -> float:
        events = self._rain.get(site)
        if not events:
            return 0.0
        return sum(e.rate_mm_h(t) for e in events)

    def _origin(self, site: str) -> float:
        first = min((epoch(e.start) for e in self._rain.get(site, ())), default=self.start)
        return min(self.start, first) - _WARMUP_S

    def channel(self, site: str) -> Channel:
        ch = self._channels.get(site)
        if ch is None:
            # A drainage sensor may state its channel's base freeboard (attr base_freeboard_cm).
            drains = (r for r in self.registry.sensors.values()
                      if r.site == site and r.spec.kind == "drainage_level")
            base = next((numeric_attr(r.spec.attrs, "base_freeboard_cm") for r in drains), None)
            params = ChannelParams.for_site(site, base)
            ch = Channel(partial(self.rain_mm_h, site), params, self._origin(site))
            self._channels[site] = ch
        return ch

    def street(self, sensor: str) -> StreetFlood:
        st = self._streets.get(sensor)
        if st is None:
            ref = self.registry.sensors[sensor]
            attrs = ref.spec.attrs
            params = StreetParams.for_sensor(sensor, gain=numeric_attr(attrs, "runoff_gain"),
                                             drain_cm_h=numeric_attr(attrs, "drain_cm_h"))
            st = StreetFlood(partial(self.rain_mm_h, ref.site), self.channel(ref.site), params)
            self._streets[sensor] = st
        return st
