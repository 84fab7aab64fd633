"""What every sensor model gets (``SensorContext``) and gives (``SensorModel.sample``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from contract.registry import SensorSpec
from simulators.events import ProcessUpset
from simulators.randomness import stream
from simulators.world import World, numeric_attr

_E = TypeVar("_E")

# Where the registry gives no position: the Nam Định reference point (docs/domain-facts.md §5.2).
DEFAULT_LAT = 20.42
DEFAULT_LON = 106.1683


class SensorModel(Protocol):
    def sample(self, t: float) -> dict[str, float]:
        """Values of every metric of the sensor's kind at ``t`` (epoch s).

        Called once per reading, with strictly increasing ``t`` on the sensor's grid; the
        model advances its noise by one step per call.
        """
        ...


@dataclass(frozen=True)
class SensorContext:
    spec: SensorSpec
    site: str
    site_kind: str
    gateway: str
    lat: float
    lon: float
    seed: int
    world: World

    @property
    def id(self) -> str:
        return self.spec.id

    def rng(self) -> random.Random:
        """The sensor's own noise stream: depends on the fleet seed and the sensor id only."""
        return stream("sensor-noise", self.seed, self.spec.id)

    def attr_float(self, key: str, default: float) -> float:
        value = numeric_attr(self.spec.attrs, key)
        return default if value is None else value

    def attr_str(self, key: str, default: str) -> str:
        v = self.spec.attrs.get(key)
        return v if isinstance(v, str) else default

    def events_of(self, kind: type[_E]) -> Iterator[_E]:
        return (e for e in self.world.events if isinstance(e, kind))

    def rain_mm_h(self, t: float) -> float:
        return self.world.rain_mm_h(self.site, t)


class Stepper:
    """Elapsed time since the previous sample, for noise processes (first step: one interval)."""

    __slots__ = ("_interval_s", "_last_t")

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last_t: float | None = None

    def dt(self, t: float) -> float:
        dt = self._interval_s if self._last_t is None else t - self._last_t
        self._last_t = t
        return dt


def upsets_of(ctx: SensorContext) -> list[ProcessUpset]:
    return [e for e in ctx.events_of(ProcessUpset) if e.sensor == ctx.id]


def apply_upsets(values: dict[str, float], upsets: list[ProcessUpset], t: float, rng: random.Random) -> None:
    """Blend each active upset's target values into ``values`` (in place), with 4 % scatter."""
    for u in upsets:
        w = u.weight(t)
        if w > 0.0:
            for metric, target in u.targets:
                if metric in values:
                    scattered = target * (1.0 + 0.04 * rng.gauss(0.0, 1.0))
                    values[metric] = (1.0 - w) * values[metric] + w * scattered
