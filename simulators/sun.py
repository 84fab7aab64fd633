"""Sunrise and sunset for the street-lighting schedule (docs/domain-facts.md §4.3).

The computation (NOAA's "General Solar Position Calculations") lives in ``contract.solar``,
so the ops center's lamp rules and the simulated lamps see the same dusk and dawn.
"""

from __future__ import annotations

from contract.solar import sunrise_sunset as _sunrise_sunset
from simulators.timebase import LOCAL_OFFSET_S


def sunrise_sunset(t: float, lat_deg: float, lon_deg: float) -> tuple[float, float]:
    """Epoch seconds of sunrise and sunset on the local day that contains ``t``."""
    return _sunrise_sunset(t, lat_deg, lon_deg, LOCAL_OFFSET_S / 3600)
