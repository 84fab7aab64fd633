"""A deterministic synthetic driver: every sensor of a gateway reports each of its metrics
every ``interval_s`` seconds (aligned to the epoch), with a value computed from the sensor,
the metric and the time.

It needs nothing but the registry, so the agent can run (tests, benchmarks, a demo without
the ``sim`` extra) and so a test knows exactly which readings must arrive: the readings of
``(start, end]`` are ``SyntheticDriver(sensors, start=start).poll(end)``. Physically
plausible values and scenarios are the simulators' job (:mod:`edge.drivers.simulated`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from contract.catalog import METRICS
from contract.models import Reading
from contract.registry import SensorSpec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_s(t: datetime) -> float:
    return (t - _EPOCH).total_seconds()


class SyntheticDriver:
    def __init__(
        self,
        sensors: Sequence[SensorSpec],
        *,
        start: datetime,
        end: datetime | None = None,
    ) -> None:
        self._series = [
            (s.id, m, s.interval_s, zlib.crc32(f"{s.id}/{m}".encode()))
            for s in sensors
            for m in s.metrics
        ]
        self._last = start
        self._end = end

    @property
    def rate_per_s(self) -> float:
        """Readings per second of clock time."""
        return sum(1 / interval for _, _, interval, _ in self._series)

    def poll(self, now: datetime) -> list[Reading]:
        until = now if self._end is None else min(now, self._end)
        if until <= self._last:
            return []
        lo, hi = _epoch_s(self._last), _epoch_s(until)
        self._last = until
        out: list[Reading] = []
        for sensor, metric, interval, salt in self._series:
            # Readings at k * interval for k in (lo, hi]: half-open, so consecutive polls
            # never repeat nor skip a reading.
            for k in range(math.floor(lo / interval) + 1, math.floor(hi / interval) + 1):
                out.append(Reading(sensor, metric, _EPOCH + timedelta(seconds=k * interval),
                                   _value(metric, k, salt)))
        out.sort(key=lambda r: r.ts)
        return out


def _value(metric: str, k: int, salt: int) -> float:
    spec = METRICS[metric]
    if spec.boolean:
        return float((k + salt) % 2)
    frac = ((k * 7919 + salt) % 1000) / 1000
    return round(spec.min + (spec.max - spec.min) * frac, 3)


class ScheduledLink:
    """A :class:`~edge.drivers.base.LinkProbe` with the link down during given intervals."""

    def __init__(self, outages: Iterable[tuple[datetime, datetime]] = ()) -> None:
        self.outages = tuple(outages)

    def link_up(self, now: datetime) -> bool:
        return not any(start <= now < end for start, end in self.outages)
