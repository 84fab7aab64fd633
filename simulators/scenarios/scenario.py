"""A scenario: events as data, plus the incidents the platform should open (ground truth)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from simulators.events import Event
from simulators.faults import LinkOutage
from simulators.timebase import require_aware

# The incident kinds of the ops center (same strings on both sides).
INCIDENT_KINDS: Final = (
    "flooding",  # ngập úng
    "fire_risk",  # khí cháy + báo cháy trong một nhà máy
    "gas_leak",  # rò rỉ khí cháy (không có cháy)
    "discharge_breach",  # nước thải vượt QCVN 40
    "emission_breach",  # khí thải vượt QCVN 19
    "air_quality",  # PM 24 h / AQI
    "noise",  # tiếng ồn vượt QCVN 26
    "gateway_offline",  # một gateway mất kết nối
    "area_outage",  # nhiều gateway của một địa bàn mất kết nối
    "lighting_fault",  # sự cố chiếu sáng
    "sensor_fault",  # dữ liệu bất thường: kẹt, trôi, ngoài ngưỡng vật lý
    "bin_full",  # thùng rác đầy
)


@dataclass(frozen=True)
class ExpectedIncident:
    """One incident the platform should open.

    ``onset`` is when the physical condition starts (e.g. the first minute a street is at
    20 cm), not when a rule could first notice it: a rule that needs a duration or an
    hourly mean fires later, and scoring should allow for that. ``end`` is when the
    condition clears (None: still present at the end of the scenario). ``sensors`` are
    those whose alerts belong to the incident; empty for gateway-level incidents.
    """

    site: str
    kind: str
    onset: datetime
    end: datetime | None
    sensors: frozenset[str]
    gateways: frozenset[str]
    note: str

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            raise ValueError(f"unknown incident kind {self.kind!r} (known: {', '.join(INCIDENT_KINDS)})")
        require_aware(self.onset, "onset")
        if self.end is not None and require_aware(self.end, "end") < self.onset:
            raise ValueError("end before onset")


@dataclass(frozen=True)
class Scenario:
    name: str
    start: datetime
    duration_s: float
    description_vi: str
    description_en: str
    events: tuple[Event, ...] = ()
    expected: tuple[ExpectedIncident, ...] = ()

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ so every time in a scenario is UTC.
        object.__setattr__(self, "start", require_aware(self.start, "start"))
        if self.duration_s <= 0:
            raise ValueError("duration_s must be > 0")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)

    def link_up(self, gateway: str, t: datetime) -> bool:
        """False while a :class:`LinkOutage` of this scenario covers ``gateway`` at ``t``."""
        return not any(isinstance(e, LinkOutage) and e.covers(gateway, t) for e in self.events)
