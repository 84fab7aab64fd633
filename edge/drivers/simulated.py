"""The simulated driver: sensors and signal of one gateway from the ``simulators`` package.

``simulators`` is an optional extra (``sim``), imported only here and only when a simulated
driver is built, so a real gateway never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from contract.catalog import SENSOR_KINDS
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


def simulable(registry: Registry) -> Registry:
    """``registry`` with each sensor's metrics cut to its kind's: the simulators model a kind's
    metrics, not the radio link or battery a real device also reports (``lora_rssi_dbm``...)."""
    sites = []
    changed = False
    for site in registry.spec.sites:
        gateways = []
        for gw in site.gateways:
            sensors = []
            for s in gw.sensors:
                kind = SENSOR_KINDS[s.kind].metrics
                keep = tuple(m for m in s.metrics if m in kind)
                changed |= keep != s.metrics
                sensors.append(s.model_copy(update={"metrics": keep}) if keep != s.metrics else s)
            gateways.append(gw.model_copy(update={"sensors": tuple(sensors)}))
        sites.append(site.model_copy(update={"gateways": tuple(gateways)}))
    return Registry(registry.spec.model_copy(update={"sites": tuple(sites)})) if changed else registry


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
        registry = simulable(registry)
        scen = get_scenario(scenario, start=t0, registry=registry) if scenario else None
        sim = GatewaySimulator(registry, gateway, seed=seed, scenario=scen, start=t0)
    except (SimulatorError, ValueError) as exc:
        raise DriverError(str(exc)) from exc
    return Simulation(clock=clock, driver=SimulatedDriver(sim))
