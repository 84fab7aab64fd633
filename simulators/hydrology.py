"""Rain → drainage channel → street flooding, one deterministic water balance per site.

docs/domain-facts.md §3.3–§3.4 [EST]: the inner-city channel sits 0.6–1.2 m below its bank, rises
0.3–1.0 m in heavy rain and falls at 5–20 cm/h once the pumps run; street low points flood
when the inlets cannot take the runoff, worse when the channel is high and backs up.

The water balance has no noise: it is the physical state, a function of the rain events
only. Instruments add their own noise on top (see the model modules). That is what lets a
scenario compute its ground truth (the minute the street reaches 20 cm) without running a
fleet, and what keeps two gateways of one site consistent with each other.

Time step: 60 s on an epoch-aligned grid, explicit Euler. Rates are at most ~50 cm/h, so a
step moves the water < 1 cm: explicit Euler is accurate enough and stays positive by
clipping at zero.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from simulators.randomness import hash_unit

STEP_S = 60
_STEP_H = STEP_S / 3600.0
# Inner channels of Nam Định connect to the rivers through sluices; the rivers are tidal
# outside floods (docs/domain-facts.md §3.4), so the channel carries a small semi-diurnal ripple [EST].
_TIDE_CM = 3.0
_TIDE_PERIOD_S = 12.42 * 3600.0

RainFn = Callable[[float], float]


@dataclass(frozen=True)
class ChannelParams:
    base_freeboard_cm: float
    gain: float = 14.0  # cm of channel rise per cm of rain: the channel drains a wide catchment
    gravity_cm_h: float = 3.0  # outflow through the sluice when above base level
    pump_cm_h: float = 18.0  # docs/domain-facts.md §3.4: pumps lower the channel 5–20 cm/h
    pump_on_cm: float = 60.0  # pumps start before the 0.5 m freeboard alert
    pump_off_margin_cm: float = 6.0  # ... and stop near base level (hysteresis)

    @classmethod
    def for_site(cls, site: str, base_freeboard_cm: float | None = None) -> ChannelParams:
        if base_freeboard_cm is None:
            base_freeboard_cm = 80.0 + 15.0 * hash_unit("channel", site)
        return cls(base_freeboard_cm=base_freeboard_cm)


@dataclass(frozen=True)
class StreetParams:
    gain: float  # cm of depth per cm of rain at the low point (runoff concentration)
    drain_cm_h: float  # what the inlets take away when the channel is low

    @classmethod
    def for_sensor(
        cls, sensor: str, *, gain: float | None = None, drain_cm_h: float | None = None
    ) -> StreetParams:
        # Derived from the sensor id, not the fleet seed: the street is the same whatever the seed.
        return cls(
            gain=5.5 + 1.5 * hash_unit("street-gain", sensor) if gain is None else gain,
            drain_cm_h=8.0 + 4.0 * hash_unit("street-drain", sensor) if drain_cm_h is None else drain_cm_h,
        )


def tide_cm(t: float) -> float:
    return _TIDE_CM * math.sin(2.0 * math.pi * t / _TIDE_PERIOD_S)


class Channel:
    """Drainage channel of one site: freeboard (cm below the bank) and pump state per minute."""

    def __init__(self, rain: RainFn, params: ChannelParams, origin: float) -> None:
        self._rain = rain
        self.params = params
        self.origin = math.floor(origin / STEP_S) * STEP_S
        # The whole history is kept, because sensors of a gateway ask for it in any order
        # within a window; packed arrays keep that to 9 bytes a minute (~5 MB a year).
        self._excess = array("d", [0.0])  # water above base level, cm
        self._pump = bytearray(1)
        self._forced: list[tuple[float, bool | None]] = []  # operator overrides (set_pump)

    def override_pump(self, t: float, on: bool | None) -> None:
        """From ``t`` on, the pumps run (True) or stand (False) whatever the level; None gives
        them back to the level switch. Minutes already computed keep their history."""
        self._forced.append((t, on))

    def _forced_at(self, t: float) -> bool | None:
        state: bool | None = None
        for since, on in self._forced:
            if since <= t:
                state = on
        return state

    def _dry(self, t: float) -> tuple[float, bool]:
        fb = self.params.base_freeboard_cm - tide_cm(t)
        return fb, fb <= self.params.pump_on_cm

    def _extend(self, index: int) -> None:
        p = self.params
        excess, pump = self._excess, self._pump
        while len(excess) <= index:
            i = len(excess) - 1
            t = self.origin + i * STEP_S
            e = excess[i]
            inflow = p.gain * self._rain(t + STEP_S / 2) / 10.0  # mm/h of rain → cm/h
            outflow = p.gravity_cm_h * min(1.0, e / 10.0) + (p.pump_cm_h if pump[i] else 0.0)
            e = max(0.0, e + _STEP_H * (inflow - outflow))
            fb = p.base_freeboard_cm - tide_cm(t + STEP_S) - e
            if pump[i]:
                on = fb < p.base_freeboard_cm - p.pump_off_margin_cm and e > 0.0
            else:
                on = fb <= p.pump_on_cm
            if self._forced:
                forced = self._forced_at(t + STEP_S)
                on = on if forced is None else forced
            excess.append(e)
            pump.append(on)

    def at(self, t: float) -> tuple[float, bool]:
        """(true freeboard cm, pump running) at the last grid minute ≤ ``t``."""
        index = int((t - self.origin) // STEP_S)
        if index < 0:
            return self._dry(t)
        self._extend(index)
        grid_t = self.origin + index * STEP_S
        return self.params.base_freeboard_cm - tide_cm(grid_t) - self._excess[index], bool(self._pump[index])


class StreetFlood:
    """Water depth (cm) at one street low point; the inlets take less when the channel is high."""

    def __init__(self, rain: RainFn, channel: Channel, params: StreetParams) -> None:
        self._rain = rain
        self._channel = channel
        self.params = params
        self.origin = channel.origin
        self._depth = array("d", [0.0])

    def _capacity(self, t: float) -> float:
        freeboard, _ = self._channel.at(t)
        # Backwater: with < 50 cm freeboard the outfalls are partly submerged and take up to
        # half less [EST].
        return self.params.drain_cm_h * min(1.0, max(0.5, (freeboard - 10.0) / 40.0))

    def depth_at(self, t: float) -> float:
        index = int((t - self.origin) // STEP_S)
        if index < 0:
            return 0.0
        depth = self._depth
        while len(depth) <= index:
            i = len(depth) - 1
            ti = self.origin + i * STEP_S
            inflow = self.params.gain * self._rain(ti + STEP_S / 2) / 10.0
            depth.append(max(0.0, depth[i] + _STEP_H * (inflow - self._capacity(ti))))
        return depth[index]
