"""What the operations screen's map draws, as pure functions of the registry and the store's
rows (no I/O): the gateways' states of the contract ("Operations screen"), each site's outline
and the streets the registry names, for the offline base layer.

- A gateway is ``online`` when its status is online and a batch arrived within 3 × its
  shortest sensor interval (at least ``kpi.MIN_FRESH_S``: readings travel in batches),
  ``stale`` when its status is online but it has been silent longer, ``offline`` on an
  offline status or Last Will. A gateway that never sent a status counts as online while its
  batches arrive, offline otherwise.
- A site's outline: the convex hull of the site's, its gateways' and its sensors' registry
  positions, pushed out by ``OUTLINE_MARGIN_DEG`` (the registry has no boundaries; docs/domain-facts.md
  §5.3: the demo positions are estimates).
- A street: the sensors whose ``attrs.street`` name it, in the order of their longitude.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from contract.registry import GatewaySpec, SiteSpec
from ops_center.service.kpi import fresh_s

OUTLINE_MARGIN_DEG: Final = 0.0015  # about 160 m at Nam Định's latitude
MarkerState = Literal["online", "stale", "offline"]
Point = tuple[float, float]  # (lat, lon)


def gateway_interval_s(gw: GatewaySpec) -> int:
    return min((s.interval_s for s in gw.sensors), default=60)


def gateway_state(
    status: str | None, last_batch: datetime | None, interval_s: float, now: datetime
) -> MarkerState:
    recent = last_batch is not None and (now - last_batch).total_seconds() <= fresh_s(interval_s)
    if status is None:
        return "online" if recent else "offline"
    if status != "online":
        return "offline"
    return "online" if recent else "stale"


def site_points(site: SiteSpec) -> list[Point]:
    pts: list[Point] = [(site.location.lat, site.location.lon)]
    for gw in site.gateways:
        if gw.location is not None:
            pts.append((gw.location.lat, gw.location.lon))
        pts.extend((s.location.lat, s.location.lon) for s in gw.sensors if s.location is not None)
    return pts


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def convex_hull(points: Iterable[Point]) -> list[Point]:
    """Andrew's monotone chain; counter-clockwise, without repeating the first point."""
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts
    lower: list[Point] = []
    for p in pts:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[Point] = []
    for p in reversed(pts):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def outline(points: Sequence[Point], margin: float = OUTLINE_MARGIN_DEG, corners: int = 8) -> list[Point]:
    """The hull of ``points`` grown by ``margin`` degrees: each hull point becomes ``corners``
    points on a circle around it, and the hull of those is the outline (rounded corners)."""
    grown = [
        (
            lat + margin * math.sin(2 * math.pi * k / corners),
            lon + margin * math.cos(2 * math.pi * k / corners),
        )
        for lat, lon in convex_hull(points)
        for k in range(corners)
    ]
    return [(round(lat, 6), round(lon, 6)) for lat, lon in convex_hull(grown)]


@dataclass(frozen=True, slots=True)
class Street:
    name: str
    points: tuple[Point, ...]


def streets(site: SiteSpec) -> list[Street]:
    by_name: dict[str, list[Point]] = {}
    for gw in site.gateways:
        for s in gw.sensors:
            name = s.attrs.get("street")
            if isinstance(name, str) and s.location is not None:
                by_name.setdefault(name, []).append((s.location.lat, s.location.lon))
    return [Street(name, tuple(sorted(pts, key=lambda p: p[1]))) for name, pts in sorted(by_name.items())]
