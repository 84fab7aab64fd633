"""``GET /api/v1/sensors?site=&gateway=``: sensors with their latest values and freshness."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request

from contract.models import SLUG_PATTERN
from ops_center.api.deps import ReadingsDep, ScopeDep, StateDep, list_filter
from ops_center.api.errors import ERROR_RESPONSES, Localized
from ops_center.api.schemas import LatestOut, SensorOut
from ops_center.service.kpi import is_fresh, unit_of

router = APIRouter(tags=["sensors"], responses=ERROR_RESPONSES)

Slug = Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)]


@router.get("/sensors", summary="Cảm biến và giá trị mới nhất / sensors with latest values")
def list_sensors(
    request: Request, state: StateDep, scope: ScopeDep, readings: ReadingsDep, site: Slug = None,
    gateway: Slug = None,
) -> list[SensorOut]:
    sites = list_filter(request, state, scope, site)
    if sites is not None and not sites:
        return []
    refs = [
        r
        for r in state.registry.sensors.values()
        if scope.can_see(r.site)
        and (sites is None or r.site in sites)
        and (gateway is None or r.gateway == gateway)
    ]
    now = state.kpis.clock()  # the data clock (create_app)
    pairs = [(r.id, m) for r in refs for m in r.spec.metrics]
    latest = readings.latest_values(pairs, now - timedelta(seconds=state.settings.latest_lookback_s))
    by_sensor: dict[str, list[LatestOut]] = {}
    for v in latest:
        spec = state.registry.sensors[v.sensor].spec
        by_sensor.setdefault(v.sensor, []).append(
            LatestOut(
                metric=v.metric,
                unit=unit_of(v.metric),
                value=v.value,
                time=v.time,
                quality=v.quality,
                age_s=round((now - v.time).total_seconds(), 3),
                fresh=is_fresh(spec, v.time, now),
            )
        )
    out = []
    for r in refs:
        values = sorted(by_sensor.get(r.id, []), key=lambda x: r.spec.metrics.index(x.metric))
        last = max((x.time for x in values), default=None)
        out.append(
            SensorOut(
                id=r.id,
                site=r.site,
                gateway=r.gateway,
                kind=r.spec.kind,
                name=Localized(vi=r.spec.name.vi, en=r.spec.name.en) if r.spec.name else None,
                interval_s=r.spec.interval_s,
                online=last is not None and is_fresh(r.spec, last, now),
                last_seen=last,
                values=values,
            )
        )
    return out
