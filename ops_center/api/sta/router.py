"""OGC SensorThings API 1.1, read-only, at ``/sta/v1.1/`` (docs/interfaces.md).

The same bearer token and scope as ``/api/v1``: a user sees the Things, Locations, Sensors,
Datastreams and Observations of the sites they may see; another site's entity answers 404
(audited like every scope denial); ObservedProperties (the metric catalog) are public to
every user. Observations are the stored readings, read through ``ObservationStore``.

Not in the OpenAPI document of ``/api/v1`` (its own standard describes it); every request
outside the supported grammar (``ops_center/api/sta/query.py``) answers 400 with a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from contract.registry import Registry
from ops_center.adapters.observations import (
    ObservationQuery,
    ObservationRow,
    ObservationStore,
)
from ops_center.adapters.sql_observations import SqlObservationStore
from ops_center.api.deps import AppState, ScopeDep, StateDep, require_visible
from ops_center.api.errors import ApiError
from ops_center.api.sta.entities import (
    Ent,
    StaCatalog,
    catalog_for,
    datastream_id,
    observation_id,
    split_datastream_id,
    split_observation_id,
    time_text,
)
from ops_center.api.sta.query import (
    COLLECTIONS,
    NAVIGATION,
    Expand,
    Options,
    Path,
    StaQueryError,
    parse_options,
    parse_path,
)
from ops_center.security.scope import Scope

STA_PREFIX: Final = "/sta/v1.1"
CONFORMANCE: Final = (
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
)

router = APIRouter(tags=["sensorthings"], include_in_schema=False)

Item = Ent | ObservationRow


@router.get(STA_PREFIX)
@router.get(STA_PREFIX + "/")
def service_root(request: Request, scope: ScopeDep) -> JSONResponse:
    base = _base(request)
    return JSONResponse({
        "value": [{"name": c, "url": f"{base}/{c}"} for c in COLLECTIONS],
        "serverSettings": {"conformance": list(CONFORMANCE)},
    })


@router.get(STA_PREFIX + "/{path:path}")
def resource(request: Request, state: StateDep, scope: ScopeDep, path: str) -> JSONResponse:
    try:
        parsed = parse_path(path)
        params = {k: request.query_params.getlist(k) for k in request.query_params}
        opts = parse_options(params, parsed.target)
        if parsed.to_many is False and (opts.filter or opts.orderby or opts.count or "$top" in params
                                        or "$skip" in params):
            raise StaQueryError("Một thực thể chỉ nhận $expand.", "A single entity takes $expand only.")
        resolver = Resolver(request, state, scope, catalog_for(state.registry), _store(state), _base(request))
        return JSONResponse(resolver.answer(parsed, opts))
    except StaQueryError as exc:
        return JSONResponse({"error": "sta_bad_request", "detail": {"vi": exc.vi, "en": exc.en},
                             "code": 400, "type": "error", "message": exc.en}, status_code=400)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + STA_PREFIX


def _store(state: AppState) -> ObservationStore:
    try:
        return SqlObservationStore(state.repo)
    except TypeError as exc:  # a repository without SQL (unit-test fakes): no observations
        raise ApiError(503, "store_unavailable") from exc


def _key(ident: str) -> str:
    return quote("'" + ident.replace("'", "''") + "'", safe="'():")


@dataclass
class Resolver:
    request: Request
    state: AppState
    scope: Scope
    cat: StaCatalog
    store: ObservationStore
    base: str

    @property
    def registry(self) -> Registry:
        return self.state.registry

    # --- one request ---------------------------------------------------------------------

    def answer(self, p: Path, opts: Options) -> dict[str, Any]:
        if p.id is None:
            return self.collection(p.collection, None, opts, None)
        item = self.entity(p.collection, p.id)
        if p.navigation is None:
            return self.render(p.collection, item, opts.expand)
        target, many = NAVIGATION[p.collection][p.navigation]
        if many:
            return self.collection(target, (p.collection, item), opts, None)
        return self.render(target, self.one_related(p.collection, item, p.navigation), opts.expand)

    def entity(self, collection: str, ident: str) -> Item:
        """The entity, or 404 (audited when it belongs to a site the user may not see)."""
        target = f"sta:{collection}({ident[:200]})"
        if collection == "Observations":
            key = split_observation_id(ident)
            ref = self.registry.sensors.get(key[0]) if key else None
            require_visible(self.request, self.state, self.scope, ref.site if ref else None,
                            target=target, exists=ref is not None)
            row = self.store.observation(*key) if key else None
            if row is None:
                raise ApiError(404, "not_found")
            return row
        e = self.cat.get(collection, ident)
        if e is not None and e.site is None:
            return e
        require_visible(self.request, self.state, self.scope, e.site if e else None, target=target,
                        exists=e is not None)
        assert e is not None
        return e

    def one_related(self, collection: str, item: Item, nav: str) -> Item:
        if isinstance(item, ObservationRow):
            ds = self.cat.get("Datastreams", datastream_id(item.sensor, item.metric))
            if ds is None:  # a reading of a series the registry no longer has
                raise ApiError(404, "not_found")
            return ds
        [ident] = self.cat.related(collection, item.id, nav)
        e = self.cat.get(NAVIGATION[collection][nav][0], ident)
        assert e is not None
        return e

    # --- collections ---------------------------------------------------------------------

    def collection(self, target: str, parent: tuple[str, Item] | None, opts: Options,
                   nested: tuple[str, Expand] | None) -> dict[str, Any]:
        items, count, more = self.page(target, parent, opts)
        out: dict[str, Any] = {}
        if count is not None:
            out["@iot.count"] = count
        out["value"] = [self.render(target, it, opts.expand) for it in items]
        if more:
            out["@iot.nextLink"] = self.next_link(opts, nested)
        return out

    def next_link(self, opts: Options, nested: tuple[str, Expand] | None) -> str:
        skip = {"$top": str(opts.top), "$skip": str(opts.skip + opts.top)}
        if nested is None:
            return str(self.request.url.include_query_params(**skip))
        link, ex = nested
        params = [(k, v) for k, v in ex.raw if k not in skip] + list(skip.items())
        return f"{link}?{urlencode(params, quote_via=quote)}"

    def page(self, target: str, parent: tuple[str, Item] | None,
             opts: Options) -> tuple[list[Item], int | None, bool]:
        if target == "Observations":
            return self.observations(parent, opts)
        if parent is None:
            ents = list(self.cat.entities[target].values())
        else:
            collection, item = parent
            assert isinstance(item, Ent)
            nav = next(n for n, (t, _) in NAVIGATION[collection].items() if t == target)
            found = (self.cat.get(target, i) for i in self.cat.related(collection, item.id, nav))
            ents = [e for e in found if e is not None]
        ents = [e for e in ents if e.site is None or self.scope.can_see(e.site)]
        ents.sort(key=lambda e: e.id)
        for o in reversed(opts.orderby):  # stable sorts, last key first
            by_name = o.key == "name"
            ents.sort(key=lambda e: e.name if by_name else e.id, reverse=o.descending)
        end = opts.skip + opts.top
        page: list[Item] = list(ents[opts.skip:end])
        return page, (len(ents) if opts.count else None), end < len(ents)

    def observations(self, parent: tuple[str, Item] | None,
                     opts: Options) -> tuple[list[Item], int | None, bool]:
        series = None
        sites = self.scope.site_filter()
        if parent is not None:
            _, ds = parent
            assert isinstance(ds, Ent)
            series = split_datastream_id(ds.id)
            sites = None  # the Datastream itself was checked against the scope
        q = ObservationQuery(sites, series, opts.filter, opts.orderby, opts.top + 1, opts.skip)
        rows: list[Item] = list(self.store.observations(q)) if opts.top > 0 else []
        count = self.store.count(q) if opts.count else None
        return rows[:opts.top], count, len(rows) > opts.top

    # --- entities ------------------------------------------------------------------------

    def render(self, collection: str, item: Item, expand: tuple[Expand, ...]) -> dict[str, Any]:
        if isinstance(item, ObservationRow):
            ident = observation_id(item.sensor, item.metric, item.time)
            t = time_text(item.time)
            body: dict[str, Any] = {"phenomenonTime": t, "resultTime": t, "result": item.value,
                                    "resultQuality": item.quality}
        else:
            ident, body = item.id, dict(item.body)
        self_link = f"{self.base}/{collection}({_key(ident)})"
        out: dict[str, Any] = {"@iot.id": ident, "@iot.selfLink": self_link, **body}
        for nav in NAVIGATION[collection]:
            out[f"{nav}@iot.navigationLink"] = f"{self_link}/{nav}"
        for ex in expand:
            target, many = NAVIGATION[collection][ex.name]
            if many:
                sub = self.collection(target, (collection, item), ex.options,
                                      (f"{self_link}/{ex.name}", ex))
                out[ex.name] = sub["value"]
                if "@iot.count" in sub:
                    out[f"{ex.name}@iot.count"] = sub["@iot.count"]
                if "@iot.nextLink" in sub:
                    out[f"{ex.name}@iot.nextLink"] = sub["@iot.nextLink"]
            else:
                out[ex.name] = self.render(target, self.one_related(collection, item, ex.name), ())
        return out
