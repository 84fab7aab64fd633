"""``/api/v1/exports/*.csv``: readings and incidents as CSV for spreadsheets, scoped exactly
like the list routes (docs/design.md: isolation holds in exports too).

- ``?site=`` of another site answers 404 (as a scoped resource); no ``site``: the user's
  own sites only. A ``sensor`` of another site is 404 as well.
- UTF-8 with a byte-order mark, so Excel opens Vietnamese text as Vietnamese; the header row
  is bilingual (``Cảm biến / sensor``); times in UTC (RFC 3339) and in Vietnam's local time.
- Bounded (docs/reliability.md S8): ``start`` and ``end`` are required and at most
  ``EXPORT_RANGE_MAX_DAYS`` days apart, at most ``EXPORT_SERIES_MAX`` series per export; past
  either, 422 before any query. Scope comes first: another site is 404 whatever the range.
- Streamed: readings go out page by page through the same query as ``/readings``
  (``raw_readings``), so memory stays flat whatever the export's size.
- Every export is in the audit log (who, what, which sites, which range).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from contract.models import METRIC_PATTERN, SLUG_PATTERN
from ops_center.api.deps import AppState, IncidentsDep, ReadingsDep, ScopeDep, StateDep, require_visible
from ops_center.api.errors import ERROR_RESPONSES, ApiError
from ops_center.api.schemas import QueryTime
from ops_center.security.scope import Scope
from ops_center.service.kpi import unit_of

# The error bodies are JSON, as everywhere: documented as such explicitly, since a ``model``
# here would be filed under the route's own media type (text/csv).
_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {
        "description": spec.get("description", ""),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status, spec in ERROR_RESPONSES.items()
}
router = APIRouter(prefix="/exports", tags=["exports"], responses=_ERRORS)

EXPORT_RANGE_MAX_DAYS: Final = 31
EXPORT_SERIES_MAX: Final = 2000
PAGE_ROWS: Final = 5000
BOM: Final = "\ufeff"
VN_TZ: Final = timezone(timedelta(hours=7), "ICT")  # Asia/Ho_Chi_Minh: UTC+7, no daylight saving

READINGS_HEADER: Final = (
    "Thời điểm (UTC) / time (UTC)",
    "Giờ Việt Nam / local time (UTC+7)",
    "Địa bàn / site",
    "Cổng / gateway",
    "Cảm biến / sensor",
    "Chỉ số / metric",
    "Giá trị / value",
    "Đơn vị / unit",
    "Chất lượng / quality",
)
INCIDENTS_HEADER: Final = (
    "Mã / id",
    "Địa bàn / site",
    "Loại / kind",
    "Mức độ / severity",
    "Trạng thái / state",
    "Tiêu đề / title (vi)",
    "Tiêu đề / title (en)",
    "Mở lúc (UTC) / opened (UTC)",
    "Mở lúc (giờ VN) / opened (UTC+7)",
    "Xác nhận lúc / acknowledged (UTC)",
    "Giải quyết lúc / resolved (UTC)",
    "Người phụ trách / assignee",
)

# Checked before the answer starts: once streaming, an error can only cut the body short.
Start = Annotated[QueryTime, Query(description="RFC 3339 with offset")]
End = Annotated[QueryTime, Query(description=f"RFC 3339 with offset; at most {EXPORT_RANGE_MAX_DAYS} days "
                                             "after start (at or before it: no rows)")]
Site = Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)]


CSV_RESPONSE: Final[dict[int | str, dict[str, object]]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV, UTF-8 with BOM"},
}


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


def _range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The range ``[start, end)``; an empty one (end at or before start) exports no rows."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ApiError(422, "validation", names="start/end: an offset is required (RFC 3339)")
    if end - start > timedelta(days=EXPORT_RANGE_MAX_DAYS):
        raise ApiError(422, "range_too_long", max_days=EXPORT_RANGE_MAX_DAYS)
    return start, end


def _sites(request: Request, state: AppState, scope: Scope, site: str | None) -> tuple[str, ...]:
    """The sites an export covers: ``site`` when visible (else 404), or all the user's."""
    if site is not None:
        known = site in state.registry.sites
        require_visible(request, state, scope, site, target=f"site:{site}", exists=known)
        return (site,)
    return tuple(s for s in state.registry.sites if scope.can_see(s))


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.isoformat().replace("+00:00", "Z")


def _local(t: datetime) -> str:
    return t.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M:%S")


# A cell a spreadsheet would read as a formula (CSV injection, OWASP): registry names reach
# incident titles, and a title "=HYPERLINK(...)" must open as text. The leading apostrophe
# makes Excel and LibreOffice show the text as it is; numbers ("-3.5") stay numbers.
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_NUMBER: Final = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def neutralise(cell: object) -> object:
    """``cell`` as a spreadsheet shows it literally (see FORMULA_START)."""
    if isinstance(cell, str) and cell.startswith(FORMULA_START) and not _NUMBER.match(cell):
        return "'" + cell
    return cell


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """BOM + header, then the rows in chunks of a few hundred (one write per chunk), every
    text cell neutralised."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    buf.write(BOM)
    out.writerow(header)
    for n, row in enumerate(rows, 1):
        out.writerow([neutralise(c) for c in row])
        if n % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _filename(kind: str, sites: Sequence[str], start: datetime) -> str:
    scope = sites[0] if len(sites) == 1 else "all"
    return f'attachment; filename="{kind}-{scope}-{start.strftime("%Y%m%d")}.csv"'


@router.get(
    "/readings.csv",
    summary="Xuất số liệu (CSV) / export readings (CSV)",
    response_class=CsvResponse,
    responses=CSV_RESPONSE,
)
async def export_readings(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    readings: ReadingsDep,
    start: Start,
    end: End,
    site: Site = None,
    sensor: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)] = None,
    metric: Annotated[str | None, Query(pattern=METRIC_PATTERN, max_length=63)] = None,
) -> CsvResponse:
    def prepare() -> tuple[list[tuple[str, str, str, str]], tuple[str, ...], datetime, datetime]:
        sites = _sites(request, state, scope, site)
        reg = state.registry
        if sensor is not None:
            ref = reg.sensors.get(sensor)
            require_visible(request, state, scope, ref.site if ref else None, target=f"sensor:{sensor}",
                            exists=ref is not None)
            assert ref is not None
            if ref.site not in sites:
                raise ApiError(404, "not_found")
            if metric is not None and metric not in ref.spec.metrics:
                raise ApiError(422, "unknown_metric", sensor=sensor, metric=metric)
            refs = [ref]
        else:
            refs = [r for r in reg.sensors.values() if r.site in sites]
        t0, t1 = _range(start, end)
        series = [(r.site, r.gateway, r.id, m) for r in refs for m in r.spec.metrics if metric in (None, m)]
        if len(series) > EXPORT_SERIES_MAX:
            raise ApiError(422, "export_too_large", max_series=EXPORT_SERIES_MAX)
        state.audit(request, actor=scope.user, action="export.readings", outcome="ok",
                    target=request.url.path, site=sites[0] if len(sites) == 1 else None,
                    detail=f"sites={','.join(sites)} sensor={sensor or '*'} metric={metric or '*'} "
                           f"{_iso(t0)}..{_iso(t1)}: {len(series)} series")
        return series, sites, t0, t1

    series, sites, t0, t1 = await state.offload(prepare)

    def rows() -> Iterator[Sequence[object]]:
        for site_id, gateway, sensor_id, m in series:
            unit = unit_of(m)
            cursor = t0
            while True:
                page = readings.raw_readings(sensor_id, m, cursor, t1, PAGE_ROWS)
                for p in page:
                    yield (_iso(p.time), _local(p.time), site_id, gateway, sensor_id, m, str(p.value), unit,
                           p.quality)
                if len(page) < PAGE_ROWS:
                    break
                # (sensor, metric, time) is unique: the next page starts just after this one.
                cursor = page[-1].time + timedelta(microseconds=1)

    return CsvResponse(_csv(READINGS_HEADER, rows()),
                       headers={"Content-Disposition": _filename("readings", sites, t0)})


@router.get(
    "/incidents.csv",
    summary="Xuất sự cố (CSV) / export incidents (CSV)",
    response_class=CsvResponse,
    responses=CSV_RESPONSE,
)
async def export_incidents(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    incidents: IncidentsDep,
    start: Start,
    end: End,
    site: Site = None,
) -> CsvResponse:
    def prepare() -> tuple[tuple[str, ...], datetime, datetime]:
        sites = _sites(request, state, scope, site)
        t0, t1 = _range(start, end)
        state.audit(request, actor=scope.user, action="export.incidents", outcome="ok",
                    target=request.url.path, site=sites[0] if len(sites) == 1 else None,
                    detail=f"sites={','.join(sites)} {_iso(t0)}..{_iso(t1)}")
        return sites, t0, t1

    sites, t0, t1 = await state.offload(prepare)

    def rows() -> Iterator[Sequence[object]]:
        if not sites:
            return
        offset = 0
        # The incidents list, newest first (the same query as GET /incidents): pages until
        # the first incident opened before the range.
        while True:
            page = incidents.list_incidents(sites, None, 200, offset).items
            for i in page:
                if i.opened_at < t0:
                    return
                if i.opened_at < t1:
                    yield (i.id, i.site, i.kind, i.severity, i.state, i.title_vi, i.title_en,
                           _iso(i.opened_at), _local(i.opened_at), _iso(i.acknowledged_at),
                           _iso(i.resolved_at), i.assignee or "")
            if len(page) < 200:
                return
            offset += len(page)

    return CsvResponse(_csv(INCIDENTS_HEADER, rows()),
                       headers={"Content-Disposition": _filename("incidents", sites, t0)})
