"""``GET /api/v1/catalog``: the names (Vietnamese first) and units of sensor kinds and metrics,
so a screen shows "Bụi PM2.5 (µg/m³)", not ``pm25``. The same for every user: it is the
platform's vocabulary, not site data."""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter

from contract.catalog import METRICS, SENSOR_KINDS
from ops_center.api.deps import PrincipalDep
from ops_center.api.errors import ERROR_RESPONSES, Localized
from ops_center.api.schemas import CatalogOut, KindOut, MetricOut

router = APIRouter(tags=["catalog"], responses=ERROR_RESPONSES)


@cache
def _catalog() -> CatalogOut:
    return CatalogOut(
        kinds=[KindOut(code=k.code, name=Localized(vi=k.name_vi, en=k.name_en), metrics=list(k.metrics))
               for k in SENSOR_KINDS.values()],
        metrics=[MetricOut(code=m.code, name=Localized(vi=m.name_vi, en=m.name_en), unit=m.unit,
                           boolean=m.boolean)
                 for m in METRICS.values()],
    )


@router.get("/catalog", summary="Danh mục loại cảm biến và chỉ số / sensor kinds and metrics")
def catalog(_principal: PrincipalDep) -> CatalogOut:
    return _catalog()
