"""``normal-day``: 24 h of ordinary life in the three sites; no incident expected."""

from __future__ import annotations

from datetime import datetime, timedelta

from contract.registry import Registry
from simulators.scenarios.blocks import calm_air
from simulators.scenarios.scenario import Scenario

NAME = "normal-day"
DESCRIPTION_VI = (
    "Một ngày bình thường ở cả ba địa bàn: không khí mức trung bình, giao thông theo giờ cao điểm, "
    "đèn đường bật tắt theo lịch, nhà máy chạy theo ca. Không có sự cố nào."
)
DESCRIPTION_EN = (
    "An ordinary day in all three sites: moderate air, rush-hour traffic, street lights on their "
    "schedule, factories on shifts. No incident is expected."
)


def build(*, start: datetime, registry: Registry) -> Scenario:
    end = start + timedelta(hours=24)
    return Scenario(NAME, start, 24 * 3600.0, DESCRIPTION_VI, DESCRIPTION_EN,
                    events=calm_air(registry, start, end))
