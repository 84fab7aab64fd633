"""Planning a ``/readings`` query: raw points within a capped range, longer ranges from the
rollups, never unbounded (docs/reliability.md S8: 422 instead of a scan of the whole hypertable).

Buckets are aligned on Asia/Ho_Chi_Minh midnight (UTC+7, no daylight saving), so ``1d``
means a Vietnamese calendar day; every smaller allowed width divides an hour, so the
alignment is also the UTC-hour alignment for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from ops_center.adapters.records import RollupPoint
from ops_center.api.errors import ApiError
from ops_center.api.schemas import PointOut
from ops_center.settings import OpsSettings

BUCKETS: Final[dict[str, int]] = {
    "1m": 60,
    "5m": 300,
    "10m": 600,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "3h": 10_800,
    "6h": 21_600,
    "12h": 43_200,
    "1d": 86_400,
}
_ORIGIN: Final = datetime(1970, 1, 1, tzinfo=UTC) - timedelta(hours=7)  # 00:00 in UTC+7


@dataclass(frozen=True, slots=True)
class Plan:
    source: Literal["readings", "readings_1m", "readings_1h"]
    bucket: str  # "raw" or a key of BUCKETS
    width_s: int


def plan(start: datetime | None, end: datetime | None, bucket: str | None, s: OpsSettings) -> Plan:
    if start is None or end is None:
        raise ApiError(422, "range_required")
    if start.tzinfo is None or end.tzinfo is None:
        raise ApiError(422, "validation", names="start/end: an offset is required (RFC 3339)")
    span = (end - start).total_seconds()
    if span <= 0:
        raise ApiError(422, "range_invalid")
    if span > s.readings_range_max_s:
        raise ApiError(422, "range_too_long", max_days=s.readings_range_max_s // 86_400)
    if bucket is None:
        if span <= s.raw_range_max_s:
            return Plan("readings", "raw", 0)
        # The smallest allowed width that keeps the point count within the cap.
        for name, width in BUCKETS.items():
            if span / width <= s.readings_points_max and (width >= 3600 or span <= s.rollup_1m_range_max_s):
                return Plan("readings_1m" if width < 3600 else "readings_1h", name, width)
        raise ApiError(422, "too_many_points", points=math.ceil(span / BUCKETS["1d"]))
    if bucket not in BUCKETS:
        raise ApiError(422, "bucket_invalid", bucket=bucket[:16], allowed=", ".join(BUCKETS))
    width = BUCKETS[bucket]
    points = math.ceil(span / width)
    if points > s.readings_points_max or (width < 3600 and span > s.rollup_1m_range_max_s):
        raise ApiError(422, "too_many_points", points=points)
    return Plan("readings_1m" if width < 3600 else "readings_1h", bucket, width)


def align(t: datetime, width_s: int) -> datetime:
    offset = (t - _ORIGIN).total_seconds()
    return _ORIGIN + timedelta(seconds=math.floor(offset / width_s) * width_s)


def aggregate(rows: list[RollupPoint], width_s: int) -> list[PointOut]:
    """Finer rollup rows -> buckets of ``width_s``: exact means from sums and counts."""
    out: list[PointOut] = []
    cur: datetime | None = None
    lo = hi = total = 0.0
    n = 0
    for r in rows:
        b = align(r.bucket, width_s)
        if b != cur:
            if cur is not None and n:
                out.append(PointOut(time=cur, value=total / n, min=lo, max=hi, count=n))
            cur, lo, hi, total, n = b, r.min, r.max, 0.0, 0
        lo, hi = min(lo, r.min), max(hi, r.max)
        total += r.sum
        n += r.count
    if cur is not None and n:
        out.append(PointOut(time=cur, value=total / n, min=lo, max=hi, count=n))
    return out
