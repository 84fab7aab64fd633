"""``mixed-week``: seven days with one incident of a different kind on most days.

Days are counted from local midnight of ``start``'s day (D0), so each event falls at a
sensible local hour whatever the start: D1 evening storm in Thống Nhất, D2 treatment upset
at the An Xá outlet, D3 morning signal loss in Quang Trung, D4 evening a street lamp fails
(repaired D5 morning), D5 a small gas leak in the machine shop (no fire), D5 evening a
missed waste collection (the bin is full on D6), D6 an air station's PM2.5 freezes, and
in the night of D4 a bypass valve at the An Xá outlet sends more water out than comes in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contract.registry import Registry
from simulators.events import Event
from simulators.scenarios import blocks
from simulators.scenarios.scenario import ExpectedIncident, Scenario
from simulators.timebase import local_midnight

NAME = "mixed-week"
DESCRIPTION_VI = (
    "Một tuần tổng hợp: mưa ngập ở Thống Nhất, nước thải vượt QCVN 40 ở An Xá, mất sóng ở Quang "
    "Trung, hỏng đèn đường, rò rỉ khí ở xưởng cơ khí, thùng rác đầy do lỡ thu gom, cảm biến bụi bị "
    "kẹt, xả tắt nước thải ban đêm ở An Xá. Dự kiến tám sự cố."
)
DESCRIPTION_EN = (
    "A mixed week: street flooding in Thong Nhat, wastewater over QCVN 40 in An Xa, lost signal in "
    "Quang Trung, a failed street lamp, a gas leak in the machine shop, a full bin after a missed "
    "collection, a stuck dust sensor, a night-time wastewater bypass in An Xa. Eight incidents "
    "are expected."
)


def build(*, start: datetime, registry: Registry) -> Scenario:
    d0 = local_midnight(start)

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return d0 + timedelta(days=day, hours=hour, minutes=minute)

    blocks_: list[tuple[tuple[Event, ...], ExpectedIncident]] = [
        blocks.storm(registry, "thong-nhat", at(1, 18, 30)),
        blocks.discharge_breach(registry, "ax-ww-01", at(2, 9), 6 * 3600.0),
        blocks.outage(registry, ("qt-gw-01", "qt-gw-02"), at(3, 8), 2 * 3600.0),
        blocks.lamp_out(registry, "tn-lamp-07", at(4, 16), at(5, 10)),
        blocks.gas_leak(registry, "an-xa", "co-khi-2", at(5, 10), peaks_lel=(30.0,), leak_s=2400.0,
                        fire_after_s=None),
        blocks.missed_collection(registry, "qt-bin-03", at(5, 12)),
        blocks.stuck_sensor(registry, "tn-aq-02", "pm25", at(6, 0), at(6, 12)),
        blocks.bypass(registry, "ax-ww-01", at(4, 2), 1.5 * 3600.0),
    ]
    duration = 7 * 86400.0
    events: list[Event] = list(blocks.calm_air(registry, start, start + timedelta(seconds=duration)))
    for evs, _ in blocks_:
        events.extend(evs)
    expected = tuple(sorted((inc for _, inc in blocks_), key=lambda i: i.onset))
    return Scenario(NAME, start, duration, DESCRIPTION_VI, DESCRIPTION_EN,
                    events=tuple(events), expected=expected)
