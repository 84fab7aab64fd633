"""Hourly LAeq against the QCVN 26 limit of the sensor's zone.

LAeq,1h is the energetic mean of the hour's readings, L = 10·log10(mean(10^(Lᵢ/10)))
(docs/domain-facts.md §4.2), per local clock hour. An hour is judged when the first reading of a later
hour arrives, against the limit of the period the hour starts in (day 06–21 local, night
otherwise; QCVN 26:2010 Bảng 1, configurable until QCVN 26:2025 is checked). The zone comes
from a sensor attribute (``noise_zone``: special / normal). Levels are dB above the limit;
exceeding means strictly above ("không vượt quá" the limit is compliant).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from ops_center.domain.rules.base import (
    Hours,
    Level,
    LocalTime,
    RuleBase,
    Signal,
    Strict,
    Target,
    in_window,
    ranks,
)
from ops_center.domain.rules.levels import LevelMap, Machine, run_levels


class DayNight(Strict):
    day: float
    night: float


class LaeqHourlyRule(RuleBase):
    kind: Literal["laeq_hourly"]
    zone_attr: str = "noise_zone"
    default_zone: str | None = None   # for sensors without the attribute; None = rule off
    limits: dict[str, DayNight] = Field(min_length=1)
    day: Hours
    levels: tuple[Level, ...] = Field(min_length=1)  # dB above the limit
    hysteresis: float = Field(default=0.0, ge=0)
    min_coverage: float = Field(default=0.5, gt=0, le=1)


class LaeqEvaluator:
    __slots__ = ("_bucket", "_clock", "_count", "_day", "_energy", "_limits", "_need",
                 "lmap", "machine", "rule")

    def __init__(self, rule: LaeqHourlyRule, limits: DayNight, clock: LocalTime, need: float) -> None:
        self.rule = rule
        self.lmap = LevelMap(ranks(rule.levels), [], rule.hysteresis, strict=True)
        self.machine = Machine()
        self._limits = limits
        self._clock = clock
        self._day = rule.day.minutes()
        self._need = need
        self._bucket: int | None = None
        self._energy = 0.0
        self._count = 0

    def _limit_of(self, bucket: int) -> float:
        start = self._clock.bucket_start(bucket)
        day = in_window(self._clock.minute_of_day(start), self._day)
        return self._limits.day if day else self._limits.night

    def feed(self, ts: list[float], vals: list[float], sent_s: float) -> list[Signal]:
        hour_of = self._clock.hour_bucket
        s_ts: list[float] = []
        s_over: list[float] = []
        s_idx: list[int] = []
        s_laeq: list[float] = []
        s_limit: list[float] = []
        for i, (t, v) in enumerate(zip(ts, vals, strict=True)):
            b = hour_of(t)
            if b != self._bucket:
                if self._bucket is not None and self._count >= self._need:
                    laeq = 10.0 * math.log10(self._energy / self._count)
                    limit = self._limit_of(self._bucket)
                    s_ts.append(self._clock.bucket_start(self._bucket + 1))
                    s_over.append(laeq - limit)
                    s_idx.append(i)
                    s_laeq.append(laeq)
                    s_limit.append(limit)
                self._bucket, self._energy, self._count = b, 0.0, 0
            self._energy += 10.0 ** (v / 10.0)
            self._count += 1
        if not s_ts:
            return []
        signals = run_levels(self.machine, self.lmap, s_ts, s_over, 0.0, 0.0)
        return [Signal(s_idx[sig.index], sig.level, s_laeq[sig.index], s_limit[sig.index]) for sig in signals]

    def state(self) -> Any:
        return {"m": self.machine.state(), "b": self._bucket, "e": self._energy, "n": self._count}

    def load(self, state: Any) -> None:
        self.machine.load(state["m"])
        self._bucket, self._energy, self._count = state["b"], float(state["e"]), int(state["n"])


def build(rule: LaeqHourlyRule, target: Target) -> LaeqEvaluator | None:
    zone = target.attr(rule.zone_attr)
    zone_name = str(zone) if zone is not None else rule.default_zone
    if zone_name is None or zone_name not in rule.limits:
        return None
    need = rule.min_coverage * 3600.0 / target.ref.spec.interval_s
    return LaeqEvaluator(rule, rule.limits[zone_name], LocalTime(target.settings.utc_offset_h), need)
