"""Simulated gateways: every sensor of a gateway from the registry, each at its interval.

``GatewaySimulator.advance(until)`` returns the readings of the window (previous until,
until], on each sensor's epoch-aligned grid (``ts = k × interval_s``), in time order. The
models are stepped once per reading, so one call over an hour and six calls over ten
minutes give the same readings; the edge agent can call it at any pace.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contract import commands
from contract.catalog import METRICS
from contract.models import Quality, Reading
from contract.registry import Registry, SensorSpec
from simulators.errors import SimulatorError
from simulators.faults import ClockSkew, FaultLayer, SensorFault
from simulators.models import build_model
from simulators.models.base import DEFAULT_LAT, DEFAULT_LON, SensorContext, SensorModel
from simulators.models.drainage_level import DrainageLevelModel
from simulators.models.street_light import StreetLightModel
from simulators.models.wastewater import WastewaterModel
from simulators.scenarios.scenario import Scenario
from simulators.timebase import epoch, require_aware, to_datetime
from simulators.world import World

logger = logging.getLogger(__name__)

_DECIMALS = 2


@dataclass
class _Runner:
    spec: SensorSpec
    model: SensorModel
    limits: tuple[tuple[str, float, float], ...]  # (metric, min, max) in the registry's order
    faults: FaultLayer | None


class GatewaySimulator:
    """All sensors of one gateway from the registry, each emitting at its interval_s."""

    def __init__(
        self,
        registry: Registry,
        gateway: str,
        *,
        seed: int = 0,
        scenario: Scenario | None = None,
        start: datetime,
    ) -> None:
        if gateway not in registry.gateways:
            raise SimulatorError(
                f"Gateway {gateway!r} không có trong sổ đăng ký / gateway {gateway!r} is not in the registry"
            )
        self.gateway = gateway
        self.site = registry.gateway_site[gateway]
        self.scenario = scenario
        self.seed = seed
        self._cursor = epoch(start)
        events = scenario.events if scenario is not None else ()
        world = World(registry, events, start=self._cursor)
        site = registry.sites[self.site]
        gw = registry.gateways[gateway]
        sensor_faults = [e for e in events if isinstance(e, SensorFault)]
        self._skews = [
            (epoch(e.start), math.inf if e.end is None else epoch(e.end), e.offset_s)
            for e in events
            if isinstance(e, ClockSkew) and e.gateway == gateway
        ]
        self._runners: list[_Runner] = []
        for spec in gw.sensors:
            loc = spec.location or gw.location or site.location
            ctx = SensorContext(
                spec=spec, site=self.site, site_kind=site.kind, gateway=gateway,
                lat=loc.lat if loc else DEFAULT_LAT, lon=loc.lon if loc else DEFAULT_LON,
                seed=seed, world=world,
            )
            mine = [f for f in sensor_faults if f.sensor == spec.id]
            self._runners.append(_Runner(
                spec=spec,
                model=build_model(ctx),
                limits=tuple((m, METRICS[m].min, METRICS[m].max) for m in spec.metrics),
                faults=FaultLayer(spec.id, spec.interval_s, mine) if mine else None,
            ))
        self._maxima = {m: hi for r in self._runners for m, _, hi in r.limits}
        logger.debug("simulator for %s: %d sensors, %d events", gateway, len(self._runners), len(events))

    @property
    def cursor(self) -> datetime:
        """End of the last window returned by :meth:`advance` (``start`` before the first call)."""
        return to_datetime(self._cursor)

    def advance(self, until: datetime) -> list[Reading]:
        """Every reading with ts in (previous until, until], in time order.

        ``until`` at or before the previous one returns nothing. Only a :class:`ClockSkew`
        fault puts a reading's ``ts`` outside the window (it is what the gateway's clock says).
        """
        u = epoch(until)
        if u <= self._cursor:
            return []
        buckets: dict[float, list[Reading]] = {}
        stamps: dict[float, datetime] = {}
        skews = self._skews
        for r in self._runners:
            iv = r.spec.interval_s
            sensor = r.spec.id
            sample = r.model.sample
            limits = r.limits
            for k in range(math.floor(self._cursor / iv) + 1, math.floor(u / iv) + 1):
                t = float(k * iv)
                raw = sample(t)
                # Clamp to the catalog's physical bounds before faults: a spike fault is
                # meant to report an impossible value.
                values = {m: lo if raw[m] < lo else hi if raw[m] > hi else raw[m] for m, lo, hi in limits}
                quality: Quality = "good"
                if r.faults is not None:
                    quality, dropped = r.faults.apply(t, values, self._maxima)
                    if dropped:
                        continue
                ts = t + sum(off for s, e, off in skews if s <= t < e) if skews else t
                stamp = stamps.get(ts)
                if stamp is None:
                    stamp = stamps[ts] = to_datetime(ts)
                bucket = buckets.setdefault(ts, [])
                for m, v in values.items():
                    bucket.append(Reading(sensor, m, stamp, round(v, _DECIMALS), quality))
        self._cursor = u
        return [reading for ts in sorted(buckets) for reading in buckets[ts]]

    def link_up(self, t: datetime) -> bool:
        """False while the scenario says this gateway has no signal."""
        require_aware(t, "t")
        return True if self.scenario is None else self.scenario.link_up(self.gateway, t)

    def command(self, name: str, sensor: str, args: Mapping[str, Any], *, at: datetime) -> tuple[bool, str]:
        """Apply an operator command (docs/contract.md ``cmd``) from ``at`` on; returns (ok, detail).

        The kinds and arguments are the contract's (contract/commands.py): ``set_lamp``
        overrides a street light's schedule, ``set_pump`` runs or stops the drainage pumps of
        the site's channel, ``set_valve`` opens or closes a wastewater outlet's bypass valve;
        ``{"auto": true}`` gives a lamp or the pumps back to their own control.
        """
        runner = next((r for r in self._runners if r.spec.id == sensor), None)
        if runner is None:
            return False, "unknown_sensor"
        verdict = commands.judge(runner.spec.kind, name, args)
        if verdict != "ok":
            return False, "unsupported_command" if verdict == "unsupported" else "bad_args"
        t, model, auto = epoch(at), runner.model, args.get("auto") is True
        if isinstance(model, StreetLightModel):
            model.override(t, None if auto else (args.get("dim_pct", 100) / 100.0 if args["on"] else 0.0))
        elif isinstance(model, DrainageLevelModel):
            model.override_pump(t, None if auto else bool(args["on"]))
        elif isinstance(model, WastewaterModel):
            model.set_bypass(t, bool(args["open"]))
        else:  # pragma: no cover - a kind of the contract's table without a simulated device
            return False, "unsupported_command"
        return True, "applied"


def fleet(
    registry: Registry, *, seed: int = 0, scenario: Scenario | None = None, start: datetime
) -> dict[str, GatewaySimulator]:
    """One simulator per gateway of the registry, keyed by gateway id."""
    return {
        gw.id: GatewaySimulator(registry, gw.id, seed=seed, scenario=scenario, start=start)
        for _, gw in registry.iter_gateways()
    }


__all__ = ["GatewaySimulator", "fleet"]
