"""``gas-leak``: a gas leak at dyeing mill det-nhuom-1 in An Xá ignites.

An hour after ``start`` (or at ``leak_at``) the two gas detectors of the mill rise to 55
and 35 %LEL; 15 min later fire detector ax-fire-01 heats up and sees smoke. Gas plus fire
in one factory is one ``fire_risk`` incident.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contract.registry import Registry
from simulators.scenarios.blocks import calm_air, gas_leak
from simulators.scenarios.scenario import Scenario
from simulators.timebase import require_aware

NAME = "gas-leak"
SITE = "an-xa"
FACTORY = "det-nhuom-1"
DESCRIPTION_VI = (
    "Rò rỉ khí cháy ở nhà máy dệt nhuộm số 1 (An Xá): hai đầu dò lên 35–55 %LEL, 15 phút sau đầu "
    "báo cháy nóng lên và có khói. Dự kiến một sự cố nguy cơ cháy nổ."
)
DESCRIPTION_EN = (
    "A gas leak at dyeing mill no. 1 (An Xa): two detectors rise to 35–55 %LEL, 15 min later a fire "
    "detector heats up and sees smoke. One fire-risk incident is expected."
)


def build(*, start: datetime, registry: Registry, leak_at: datetime | None = None) -> Scenario:
    at = start + timedelta(hours=1) if leak_at is None else require_aware(leak_at)
    if at < start:
        raise ValueError("leak_at must not be before start")
    duration = (at - start).total_seconds() + 3 * 3600.0
    end = start + timedelta(seconds=duration)
    events, incident = gas_leak(registry, SITE, FACTORY, at)
    return Scenario(NAME, start, duration, DESCRIPTION_VI, DESCRIPTION_EN,
                    events=(*calm_air(registry, start, end), *events), expected=(incident,))
