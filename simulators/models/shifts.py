"""Production load of a factory, 0..1, following shifts (docs/domain-facts.md §4.4).

§4.4: flows and emissions "follow shifts: low at night, high 07–17 h". Vietnamese mills
commonly work Monday to Saturday; Sunday runs only utilities and a skeleton crew [EST].
Wastewater, stack and power models all scale with this one curve, so a breach report can
be read against the factory's activity.
"""

from __future__ import annotations

from simulators.timebase import interp_hourly, local_hour, local_weekday

_WEEKDAY_LOAD = (
    0.25, 0.25, 0.25, 0.25, 0.25, 0.3, 0.6, 0.95, 1.0, 1.0, 1.0, 1.0,
    0.9, 1.0, 1.0, 1.0, 1.0, 0.85, 0.6, 0.55, 0.5, 0.45, 0.35, 0.28,
)
_SUNDAY = 6


def load(t: float) -> float:
    weekday = interp_hourly(_WEEKDAY_LOAD, local_hour(t))
    if local_weekday(t) == _SUNDAY:
        return 0.2 + 0.25 * weekday
    return weekday
