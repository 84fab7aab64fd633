"""``network-outage``: two Quang Trung gateways lose signal for two hours.

docs/design.md: "telecom signal in the wards is unstable". The gateways keep measuring and
stamping readings; the edge stores them and sends them late (docs/reliability.md R4). Two
gateways of one site down together are one ``area_outage`` incident, not two.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contract.registry import Registry
from simulators.scenarios.blocks import calm_air, outage
from simulators.scenarios.scenario import Scenario
from simulators.timebase import require_aware

NAME = "network-outage"
GATEWAYS = ("qt-gw-01", "qt-gw-02")
DESCRIPTION_VI = (
    "Mất sóng viễn thông ở Quang Trung: hai gateway mất kết nối 2 giờ, vẫn đo và lưu dữ liệu, "
    "gửi bù khi có sóng lại. Dự kiến một sự cố mất kết nối khu vực."
)
DESCRIPTION_EN = (
    "Lost telecom signal in Quang Trung: two gateways are offline for 2 h, keep measuring and "
    "storing, and send late when the signal returns. One area-outage incident is expected."
)


def build(*, start: datetime, registry: Registry, outage_at: datetime | None = None,
          outage_s: float = 7200.0) -> Scenario:
    at = start + timedelta(hours=1) if outage_at is None else require_aware(outage_at)
    if at < start:
        raise ValueError("outage_at must not be before start")
    duration = (at - start).total_seconds() + outage_s + 3600.0
    end = start + timedelta(seconds=duration)
    events, incident = outage(registry, GATEWAYS, at, outage_s)
    return Scenario(NAME, start, duration, DESCRIPTION_VI, DESCRIPTION_EN,
                    events=(*calm_air(registry, start, end), *events), expected=(incident,))
