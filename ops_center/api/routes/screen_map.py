"""``GET /api/v1/map?site=``: what the operations screen's map draws (ops_center/web/static/map.js);
``GET /api/v1/limits?sensor=``: the lines its charts draw (ops_center/api/rule_limits.py).

Sites with their outline and named streets (the offline base layer), gateways with the
contract's marker state, sensors with their freshness, the open and acknowledged incidents
at the position of their first active alert's sensor (else their site), each air-quality
station's VN_AQI this hour, and the tile URL the city set (``SMARTWARD_MAP_TILES``; none: the
screen draws the registry only and fetches nothing from elsewhere)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request

from contract.models import SLUG_PATTERN
from ops_center.api.deps import ScopeDep, StateDep, list_filter, require_visible
from ops_center.api.errors import ERROR_RESPONSES, Localized
from ops_center.api.mapview import (
    MarkerState,
    gateway_interval_s,
    gateway_state,
    outline,
    site_points,
    streets,
)
from ops_center.api.rule_limits import LimitOut, limits_of, rules_for
from ops_center.api.schemas import AqiOut, LocationOut, Severity
from ops_center.api.schemas.common import OutModel as _Out
from ops_center.domain.aqi_station import VN_TZ
from ops_center.service.kpi import fresh_s, is_fresh
from ops_center.service.kpi_model import AqiView

router = APIRouter(tags=["map"], responses=ERROR_RESPONSES)


class TilesOut(_Out):
    url: str
    attribution: str


class StreetOut(_Out):
    name: str
    points: list[tuple[float, float]]


class MapSiteOut(_Out):
    id: str
    name: Localized
    kind: str
    parent: str | None
    legacy_name: str | None
    location: LocationOut
    outline: list[tuple[float, float]]
    streets: list[StreetOut]


class MapGatewayOut(_Out):
    id: str
    site: str
    name: Localized | None
    location: LocationOut | None
    state: MarkerState
    status: str | None
    last_seen: datetime | None
    last_batch: datetime | None
    interval_s: int


class MapSensorOut(_Out):
    id: str
    site: str
    gateway: str
    kind: str
    name: Localized | None
    location: LocationOut | None
    online: bool
    zone: str | None
    street: str | None
    aqi: AqiOut | None


class MapIncidentOut(_Out):
    id: str
    site: str
    severity: Severity
    state: str
    title: Localized
    location: LocationOut


class MapOut(_Out):
    generated_at: datetime
    tiles: TilesOut | None
    sites: list[MapSiteOut]
    gateways: list[MapGatewayOut]
    sensors: list[MapSensorOut]
    incidents: list[MapIncidentOut]


@router.get("/map", summary="Bản đồ điều hành / what the screen's map draws")
def get_map(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    site: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)] = None,
) -> MapOut:
    narrowed = list_filter(request, state, scope, site)
    visible = [
        s for s in state.registry.spec.sites if scope.can_see(s.id) and (narrowed is None or s.id in narrowed)
    ]
    now = state.kpis.clock()  # the data clock (create_app)
    ids = tuple(s.id for s in visible)
    status = {g.gateway: g for g in state.repo.gateways.list_gateway_status(ids)} if ids else {}
    horizon = max((fresh_s(gateway_interval_s(gw)) for s in visible for gw in s.gateways), default=180)
    gw_ids = [gw.id for s in visible for gw in s.gateways]
    batches = {
        b.gateway: b.last_received
        for b in state.repo.gateways.batch_stats(gw_ids, now - timedelta(seconds=horizon))
    }
    refs = [(s.id, gw.id, sensor) for s in visible for gw in s.gateways for sensor in gw.sensors]
    s_horizon = max((fresh_s(r[2].interval_s) for r in refs), default=180)
    newest: dict[str, datetime] = {}
    for v in state.repo.readings.latest_values(
        [(r[2].id, m) for r in refs for m in r[2].metrics], now - timedelta(seconds=s_horizon)
    ):
        if v.sensor not in newest or v.time > newest[v.sensor]:
            newest[v.sensor] = v.time
    aqi = state.kpis.station_aqi([r[2] for r in refs], now) if refs else {}
    where = {r[2].id: r[2].location for r in refs if r[2].location is not None}
    located: dict[str, LocationOut] = {}
    for a in state.repo.incidents.active_alerts():
        loc = where.get(a.sensor or "")
        if a.incident_id and a.incident_id not in located and loc is not None:
            located[a.incident_id] = LocationOut(lat=loc.lat, lon=loc.lon)
    site_loc = {s.id: LocationOut(lat=s.location.lat, lon=s.location.lon) for s in visible}
    incidents = [
        i for i in state.repo.incidents.open_incidents()
        if i.site in site_loc and i.state in ("open", "acknowledged")
    ]
    tiles = state.settings.map_tiles
    return MapOut(
        generated_at=now,
        tiles=TilesOut(url=tiles, attribution=state.settings.map_tiles_attribution) if tiles else None,
        sites=[
            MapSiteOut(
                id=s.id,
                name=Localized(vi=s.name.vi, en=s.name.en),
                kind=s.kind,
                parent=s.parent,
                legacy_name=s.legacy_name,
                location=site_loc[s.id],
                outline=outline(site_points(s)),
                streets=[StreetOut(name=st.name, points=list(st.points)) for st in streets(s)],
            )
            for s in visible
        ],
        gateways=[
            MapGatewayOut(
                id=gw.id,
                site=s.id,
                name=Localized(vi=gw.name.vi, en=gw.name.en) if gw.name else None,
                location=LocationOut(lat=gw.location.lat, lon=gw.location.lon) if gw.location else None,
                state=gateway_state(
                    status[gw.id].state if gw.id in status else None,
                    batches.get(gw.id),
                    gateway_interval_s(gw),
                    now,
                ),
                status=status[gw.id].state if gw.id in status else None,
                last_seen=status[gw.id].last_seen if gw.id in status else None,
                last_batch=batches.get(gw.id),
                interval_s=gateway_interval_s(gw),
            )
            for s in visible
            for gw in s.gateways
        ],
        sensors=[
            MapSensorOut(
                id=sensor.id,
                site=site_id,
                gateway=gw_id,
                kind=sensor.kind,
                name=Localized(vi=sensor.name.vi, en=sensor.name.en) if sensor.name else None,
                location=LocationOut(lat=sensor.location.lat, lon=sensor.location.lon)
                if sensor.location
                else None,
                online=sensor.id in newest and is_fresh(sensor, newest[sensor.id], now),
                zone=_text(sensor.attrs.get("zone")),
                street=_text(sensor.attrs.get("street")),
                aqi=_aqi_out(aqi.get(sensor.id)),
            )
            for site_id, gw_id, sensor in refs
        ],
        incidents=[
            MapIncidentOut(
                id=i.id,
                site=i.site,
                severity=i.severity,
                state=i.state,
                title=Localized(vi=i.title_vi, en=i.title_en),
                location=located.get(i.id, site_loc[i.site]),
            )
            for i in incidents
        ],
    )


@router.get("/limits", summary="Ngưỡng của cảm biến / the limits a sensor is judged against")
def get_limits(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    sensor: Annotated[str, Query(pattern=SLUG_PATTERN, max_length=63)],
) -> list[LimitOut]:
    ref = state.registry.sensors.get(sensor)
    require_visible(
        request, state, scope, ref.site if ref else None, target=f"sensor:{sensor}", exists=ref is not None
    )
    assert ref is not None
    return limits_of(rules_for(state.registry), ref, state.kpis.clock().astimezone(VN_TZ).date())


def _aqi_out(view: AqiView | None) -> AqiOut | None:
    return None if view is None else AqiOut.model_validate(view, from_attributes=True)


def _text(v: object) -> str | None:
    return v if isinstance(v, str) else None
