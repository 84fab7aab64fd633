"""``GET /api/v1/readings?sensor=&metric=&start=&end=&bucket=``: one series, bounded."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from contract.models import SLUG_PATTERN
from ops_center.adapters.repository import Resolution
from ops_center.api.deps import ReadingsDep, ScopeDep, StateDep, require_visible
from ops_center.api.errors import ERROR_RESPONSES, ApiError
from ops_center.api.schemas import PointOut, QueryTime, ReadingsOut
from ops_center.api.series import aggregate, plan
from ops_center.service.kpi import unit_of

router = APIRouter(tags=["readings"], responses=ERROR_RESPONSES)


@router.get("/readings", summary="Chuỗi số liệu / a time series (raw within a capped range, else rollups)")
def get_readings(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    readings: ReadingsDep,
    sensor: Annotated[str, Query(pattern=SLUG_PATTERN, max_length=63)],
    metric: Annotated[str, Query(pattern=r"^[a-z][a-z0-9_]{0,62}$")],
    start: Annotated[QueryTime | None, Query(description="RFC 3339 with offset; required")] = None,
    end: Annotated[QueryTime | None, Query(description="RFC 3339 with offset; required")] = None,
    bucket: Annotated[
        str | None, Query(max_length=8, description="1m 5m 10m 15m 30m 1h 2h 3h 6h 12h 1d")
    ] = None,
) -> ReadingsOut:
    ref = state.registry.sensors.get(sensor)
    require_visible(
        request, state, scope, ref.site if ref else None, target=f"sensor:{sensor}", exists=ref is not None
    )
    assert ref is not None
    if metric not in ref.spec.metrics:
        raise ApiError(422, "unknown_metric", sensor=sensor, metric=metric)
    p = plan(start, end, bucket, state.settings)
    assert start is not None and end is not None
    limit = state.settings.readings_points_max
    truncated, next_start = False, None
    if p.source == "readings":
        raw = readings.raw_readings(sensor, metric, start, end, limit + 1)
        if len(raw) > limit:
            truncated, next_start = True, raw[limit].time
            raw = raw[:limit]
        points = [PointOut(time=r.time, value=r.value, quality=r.quality) for r in raw]
    else:
        res: Resolution = "1m" if p.source == "readings_1m" else "1h"
        # Source rows within [start, end): an edge bucket holds only what is in the range.
        points = aggregate(readings.rollup_readings(res, sensor, metric, start, end), p.width_s)
    return ReadingsOut(
        sensor=sensor,
        metric=metric,
        unit=unit_of(metric),
        start=start,
        end=end,
        bucket=p.bucket,
        source=p.source,
        points=points,
        truncated=truncated,
        next_start=next_start,
    )
