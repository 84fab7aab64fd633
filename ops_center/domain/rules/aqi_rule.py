"""VN_AQI sub-index of PM (NowCast, QĐ 1459) against category thresholds.

Per (sensor, pm25|pm10): hourly means by local clock hour; the NowCast uses the current
(partial) hour as c1 so the index follows an episode within the hour, as published hourly
indices do between updates. Levels are AQI values (151 = Xấu, 201 = Rất xấu, 301 = Nguy hại).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ops_center.domain import aqi
from ops_center.domain.rules.base import Level, LeveledRule, LocalTime, Signal, Target, ranks
from ops_center.domain.rules.levels import LevelMap, Machine, run_levels


class NowcastAqiRule(LeveledRule):
    kind: Literal["nowcast_aqi"]
    levels: tuple[Level, ...] = Field(min_length=1)


class NowcastAqiEvaluator:
    __slots__ = ("_clock", "_hours", "_pollutant", "lmap", "machine", "rule")

    def __init__(self, rule: NowcastAqiRule, pollutant: str, clock: LocalTime) -> None:
        self.rule = rule
        self.lmap = LevelMap(ranks(rule.levels), [], rule.hysteresis, strict=rule.strict)
        self.machine = Machine()
        self._pollutant = pollutant
        self._clock = clock
        self._hours: dict[int, list[float]] = {}  # local hour bucket -> [sum, count]

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        hours = self._hours
        hour_of = self._clock.hour_bucket
        indices: list[float] = []
        current: int | None = None
        previous: list[float | None] = []
        for t, v in zip(ts, vals, strict=True):
            b = hour_of(t)
            acc = hours.get(b)
            if acc is None:
                hours[b] = acc = [0.0, 0.0]
                for old in [k for k in hours if k <= b - 12]:
                    del hours[old]
            acc[0] += v
            acc[1] += 1.0
            if b != current:
                current = b
                previous = []
                for k in range(b - 1, b - 12, -1):
                    a = hours.get(k)
                    previous.append(a[0] / a[1] if a is not None else None)
            nc = aqi.nowcast([acc[0] / acc[1], *previous])
            indices.append(float(aqi.round_half_up(aqi.sub_index(self._pollutant, nc))) if nc is not None
                           else -1.0)
        hold = [x < 0 for x in indices]
        r = self.rule
        return run_levels(self.machine, self.lmap, ts, indices, r.raise_after_s, r.clear_after_s,
                          hold=hold if any(hold) else None)

    def state(self) -> Any:
        return {"m": self.machine.state(), "h": [[k, s, n] for k, (s, n) in self._hours.items()]}

    def load(self, state: Any) -> None:
        self.machine.load(state["m"])
        self._hours = {int(k): [float(s), float(n)] for k, s, n in state["h"]}


def build(rule: NowcastAqiRule, target: Target) -> NowcastAqiEvaluator | None:
    if target.metric not in aqi.PM:
        return None
    return NowcastAqiEvaluator(rule, target.metric, LocalTime(target.settings.utc_offset_h))
