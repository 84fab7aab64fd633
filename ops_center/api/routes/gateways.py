"""``GET /api/v1/gateways?site=``: registry gateways with their last status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from contract.models import SLUG_PATTERN
from ops_center.api.deps import GatewaysDep, ScopeDep, StateDep, list_filter
from ops_center.api.errors import ERROR_RESPONSES, Localized
from ops_center.api.schemas import GatewayOut

router = APIRouter(tags=["gateways"], responses=ERROR_RESPONSES)


@router.get("/gateways", summary="Cổng và trạng thái / gateways with status and outbox depth")
def list_gateways(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    gateways: GatewaysDep,
    site: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)] = None,
) -> list[GatewayOut]:
    sites = list_filter(request, state, scope, site)
    if sites is not None and not sites:
        return []
    status = {g.gateway: g for g in gateways.list_gateway_status(sites)}
    out = []
    for s, gw in state.registry.iter_gateways():
        if not scope.can_see(s.id) or (sites is not None and s.id not in sites):
            continue
        st = status.get(gw.id)
        state_name = "unknown" if st is None else ("online" if st.state == "online" else "offline")
        out.append(
            GatewayOut(
                id=gw.id,
                site=s.id,
                name=Localized(vi=gw.name.vi, en=gw.name.en) if gw.name else None,
                state=state_name,
                last_seen=st.last_seen if st else None,
                outbox_batches=st.outbox_batches if st else None,
                outbox_oldest=st.outbox_oldest if st else None,
                dropped_batches=st.dropped_batches if st else None,
                last_seq=st.last_seq if st else None,
                agent=st.agent if st else None,
                sensors=len(gw.sensors),
            )
        )
    return out
