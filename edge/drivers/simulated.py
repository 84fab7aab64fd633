"""The simulated driver: sensors and signal of one gateway from the ``simulators`` package.

``simulators`` is an optional extra (``sim``), imported only here and only when a simulated
driver is built, so a real gateway never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from contract.models import Reading
from contract.registry import Registry
from edge.clock import Clock
from edge.errors import DriverError

if TYPE_CHECKING:
    from simulators.fleet import GatewaySimulator


class SimulatedDriver:
    """Wraps ``simulators.fleet.GatewaySimulator``: ``poll`` advances it, ``link_up`` asks it,
    ``command`` hands an operator command to it (a :class:`~edge.drivers.base.CommandTarget`)."""

    def __init__(self, simulator: GatewaySimulator) -> None:
        self._sim = simulator

    def poll(self, now: datetime) -> list[Reading]:
        return self._sim.advance(now)

    def link_up(self, now: datetime) -> bool:
        return self._sim.link_up(now)

    def command(self, name: str, sensor: str, args: Mapping[str, Any], *, at: datetime) -> tuple[bool, str]:
        return self._sim.command(name, sensor, args, at=at)


@dataclass(frozen=True, slots=True)
class Simulation:
    clock: Clock
    driver: SimulatedDriver


def open_simulation(
    registry: Registry,
    gateway: str,
    *,
    speed: float = 1.0,
    seed: int = 0,
    scenario: str | None = None,
    start: datetime | None = None,
) -> Simulation:
    """The simulator's clock and a driver for ``gateway`` (same start, so they agree)."""
    try:
        from simulators.clock import SimClock
        from simulators.errors import SimulatorError
        from simulators.fleet import GatewaySimulator
        from simulators.scenarios import get_scenario
    except ImportError as exc:
        raise DriverError(
            f"cannot load the simulators ({exc}); install the 'sim' extra: pip install 'smartward[sim]'"
        ) from exc
    try:
        clock = SimClock(speed=speed, start=start)
        t0 = clock.start
        scen = get_scenario(scenario, start=t0, registry=registry) if scenario else None
        sim = GatewaySimulator(registry, gateway, seed=seed, scenario=scen, start=t0)
    except (SimulatorError, ValueError) as exc:
        raise DriverError(str(exc)) from exc
    return Simulation(clock=clock, driver=SimulatedDriver(sim))
