"""``GET /api/v1/sites``, ``/sites/{site}/overview`` and ``/city/overview``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from contract.models import SLUG_PATTERN
from ops_center.api.deps import CityScopeDep, ScopeDep, StateDep, app_state, require_visible
from ops_center.api.errors import ERROR_RESPONSES, Localized
from ops_center.api.schemas import CityOverviewOut, LocationOut, OverviewOut, SiteOut
from ops_center.service.kpi_model import SiteOverview

router = APIRouter(tags=["sites"], responses=ERROR_RESPONSES)

SitePath = Annotated[str, Path(pattern=SLUG_PATTERN, max_length=63)]


@router.get("/sites", summary="Các địa bàn được xem / sites this user may see")
def list_sites(state: StateDep, scope: ScopeDep) -> list[SiteOut]:
    out = []
    for site in state.registry.spec.sites:
        if not scope.can_see(site.id):
            continue
        out.append(
            SiteOut(
                id=site.id,
                name=Localized(vi=site.name.vi, en=site.name.en),
                kind=site.kind,
                parent=site.parent,
                location=LocationOut(lat=site.location.lat, lon=site.location.lon),
                gateways=len(site.gateways),
                sensors=sum(len(gw.sensors) for gw in site.gateways),
            )
        )
    return out


@router.get(
    "/sites/{site}/overview", summary="Chỉ số vận hành của địa bàn / site KPIs", response_model=OverviewOut
)
async def site_overview(request: Request, scope: ScopeDep, site: SitePath) -> Response:
    # The hot route of every open operations screen: a fresh cached overview is answered on
    # the event loop as the bytes the cache keeps (KpiService); the store, the audit of a
    # denial and a computation run in the thread pool.
    state = app_state(request)
    exists = site in state.registry.sites
    if not (exists and scope.can_see(site)):
        await state.offload(
            require_visible, request, state, scope, site, target=f"site:{site}", exists=exists
        )
    body = state.kpis.cached_json(site)
    if body is None:
        body = await state.offload(state.kpis.site_overview_json, site)
    return Response(body, media_type="application/json")


@router.get("/city/overview", summary="Chỉ số toàn thành phố / city KPIs (city_leader, admin)")
def city_overview(state: StateDep, scope: CityScopeDep) -> CityOverviewOut:
    view = state.kpis.city_overview([s.id for s in state.registry.spec.sites if scope.can_see(s.id)])
    return CityOverviewOut.model_validate(view, from_attributes=True)


def overview_json(view: SiteOverview) -> bytes:
    """A site overview as ``GET /sites/{site}/overview`` answers it (the KPI service caches
    these bytes)."""
    return OverviewOut.model_validate(view, from_attributes=True).model_dump_json().encode()
