"""``flood-evening``: a convective storm floods the streets of Thống Nhất in the evening.

70 mm in 2 h (peak ~75 mm/h, docs/domain-facts.md §3.1 "very heavy"), starting at the first 18:30 local
at least an hour after ``start`` (or ``storm_at``): the rain gauge reads torrential rain,
the street low points pass 20 cm and rise > 5 cm in 10 min, the channel comes within 20 cm
of its bank (§3.3, §3.4). Quang Trung and An Xá get a light shower from the cell's edge.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contract.registry import Registry
from simulators.scenarios.blocks import calm_air, storm
from simulators.scenarios.scenario import Scenario
from simulators.timebase import next_local_time, require_aware

NAME = "flood-evening"
SITE = "thong-nhat"
DESCRIPTION_VI = (
    "Mưa giông buổi tối ở Thống Nhất: 70 mm trong 2 giờ, nước ngập đường Trần Đăng Ninh và Văn Cao "
    "quá 20 cm, kênh thoát nước gần tràn bờ, trạm bơm chạy. Dự kiến một sự cố ngập úng."
)
DESCRIPTION_EN = (
    "An evening thunderstorm over Thong Nhat: 70 mm in 2 h floods the streets beyond 20 cm, the "
    "drainage channel nearly tops its bank, pumps run. One flooding incident is expected."
)


def build(*, start: datetime, registry: Registry, storm_at: datetime | None = None) -> Scenario:
    at = next_local_time(start + timedelta(hours=1), 18, 30) if storm_at is None else require_aware(storm_at)
    if at < start:
        raise ValueError("storm_at must not be before start")
    duration = (at - start).total_seconds() + 8 * 3600.0
    end = start + timedelta(seconds=duration)
    events, incident = storm(registry, SITE, at)
    return Scenario(NAME, start, duration, DESCRIPTION_VI, DESCRIPTION_EN,
                    events=(*calm_air(registry, start, end), *events), expected=(incident,))
