"""Named scenarios with ground truth: what happens, and which incidents the platform should open.

Each scenario starts at a caller-given ``start`` (aware datetime) and places its events
relative to it, at sensible local hours. ``get_scenario(name, start=..., registry=...)``
builds one; ``describe()`` lists them for a CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final

from contract.registry import Registry
from simulators.errors import UnknownScenarioError
from simulators.scenarios import flood_evening, gas_leak, mixed_week, network_outage, normal_day
from simulators.scenarios.scenario import INCIDENT_KINDS, ExpectedIncident, Scenario

_MODULES = (normal_day, flood_evening, gas_leak, network_outage, mixed_week)

SCENARIOS: Final[Mapping[str, Callable[..., Scenario]]] = MappingProxyType(
    {m.NAME: m.build for m in _MODULES}
)


def get_scenario(name: str, *, start: datetime, registry: Registry) -> Scenario:
    """Build scenario ``name`` starting at ``start``; unknown names raise :class:`UnknownScenarioError`."""
    try:
        factory = SCENARIOS[name]
    except KeyError:
        raise UnknownScenarioError(name, tuple(SCENARIOS)) from None
    return factory(start=start, registry=registry)


def describe() -> list[tuple[str, str, str]]:
    """(name, Vietnamese description, English description) of every scenario."""
    return [(m.NAME, m.DESCRIPTION_VI, m.DESCRIPTION_EN) for m in _MODULES]


__all__ = [
    "INCIDENT_KINDS",
    "SCENARIOS",
    "ExpectedIncident",
    "Scenario",
    "UnknownScenarioError",
    "describe",
    "get_scenario",
]
