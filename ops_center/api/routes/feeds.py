"""``/api/v1/feeds/tt10?site=``: the TT 10/2021 feed's uploads for a site (the cluster
manager's regulatory report, docs/design.md roles): cycles sent, pending, failed, per station, the
last error, and the files newest first. The feed process (``smartward feeds tt10 run``)
writes the log; this only reads it. Scoped like every resource: a site the user does not see
answers 404."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from pydantic.dataclasses import dataclass as pydantic_dataclass

from contract.models import SLUG_PATTERN
from ops_center.adapters.ports import Tt10State, Tt10Upload
from ops_center.adapters.records import Page
from ops_center.api.deps import ScopeDep, StateDep, Tt10Dep, require_visible
from ops_center.api.errors import ERROR_RESPONSES
from ops_center.api.pages import Limit, Offset

router = APIRouter(prefix="/feeds", tags=["feeds"], responses=ERROR_RESPONSES)


# A file of the log as the API answers it: the port's ``Tt10Upload`` itself (its fields, one list
# to keep) as a pydantic dataclass. A comment, not a docstring: that would enter the schema.
@pydantic_dataclass(frozen=True)
class Tt10UploadOut(Tt10Upload):
    @classmethod
    def of(cls, u: Tt10Upload) -> Tt10UploadOut:
        return cls(**asdict(u))


class Tt10StationOut(BaseModel):
    station: str
    sensor: str
    sent: int
    pending: int
    failed: int
    last_sent_cycle: datetime | None
    oldest_unsent_cycle: datetime | None


class Tt10FeedOut(BaseModel):
    site: str
    sent: int
    pending: int
    failed: int
    last_error: str | None
    last_error_at: datetime | None
    stations: list[Tt10StationOut]
    items: list[Tt10UploadOut]
    total: int
    limit: int
    offset: int


@router.get("/tt10", summary="Truyền dữ liệu quan trắc tự động TT 10/2021 / TT 10/2021 feed uploads")
async def tt10_feed(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    log: Tt10Dep,
    site: Annotated[str, Query(pattern=SLUG_PATTERN, max_length=63)],
    upload_state: Annotated[Tt10State | None, Query(alias="state")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Tt10FeedOut:
    def answer() -> Tt10FeedOut:
        require_visible(request, state, scope, site, target=f"feeds:tt10:{site}",
                        exists=site in state.registry.sites)
        stations = [
            Tt10StationOut(station=s.station, sensor=s.sensor, sent=s.counts["sent"],
                           pending=s.counts["pending"], failed=s.counts["failed"],
                           last_sent_cycle=s.last_sent_cycle,
                           oldest_unsent_cycle=s.oldest_unsent_cycle)
            for s in (log.stations(site) if log else [])
        ]
        page = log.uploads(site, upload_state, limit, offset) if log else Page[Tt10Upload]([], 0)
        err = log.last_error(site) if log else None
        return Tt10FeedOut(
            site=site,
            sent=sum(s.sent for s in stations),
            pending=sum(s.pending for s in stations),
            failed=sum(s.failed for s in stations),
            last_error=err[1] if err else None,
            last_error_at=err[0] if err else None,
            stations=stations,
            items=[Tt10UploadOut.of(u) for u in page.items],
            total=page.total,
            limit=limit,
            offset=offset,
        )

    return await state.offload(answer)
