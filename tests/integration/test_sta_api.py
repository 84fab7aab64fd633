"""OGC SensorThings API 1.1 (read-only) through an independent client: FROST's Python client
(frost-sta-client, as a provincial system would use it) against a real uvicorn server, on
SQLite and on TimescaleDB with the seeded readings (tests/support/api.py:
tn-aq-01/no2 has one value a minute for 2 h, 0 … 119, newest first). Ward scoping, paging by
``@iot.nextLink``, ``$filter``/``$orderby``/``$expand``/``$count``, and 400 (never 500) for
anything outside the supported grammar."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import frost_sta_client as fsc
import pytest
import requests
from frost_sta_client.service.auth_handler import AuthHandler

from contract.models import Reading
from simulators.fleet import GatewaySimulator
from tests.servers.timescale import TimescaleServer
from tests.support.api import REG, Env, Server, pg_env, pg_rows, sqlite_env, sqlite_rows

pytestmark = pytest.mark.integration

STA = "/sta/v1.1"


class BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


class Bearer(AuthHandler):  # type: ignore[misc]
    """The client's auth hook speaks HTTP Basic; the platform takes its bearer token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def add_auth_header(self) -> BearerAuth:
        return BearerAuth(self.token)


SIM_GW, SIM_END = "tn-gw-02", datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # a rainy-season hour


@pytest.fixture(params=["sqlite", "timescaledb"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Env, Server]]:
    if request.param == "sqlite":
        envs, rows = sqlite_env(tmp_path / "sta.db"), sqlite_rows(tmp_path / "sta.db")
    else:
        ts: TimescaleServer = request.getfixturevalue("timescale")
        ts.ensure_running()
        url = ts.fresh_db()
        envs, rows = pg_env(url), pg_rows(url)
    for env in envs:
        # An hour of the simulated drainage gateway of Thống Nhất, beside the seed.
        rows.insert("readings", ["time", "site", "gateway", "sensor", "metric", "value", "quality"],
                    [[r.ts, "thong-nhat", SIM_GW, r.sensor, r.metric, r.value, r.quality]
                     for r in simulated()])
        with Server(env) as srv:
            yield env, srv


def simulated() -> list[Reading]:
    sim = GatewaySimulator(REG, SIM_GW, seed=3, start=SIM_END - timedelta(hours=1))
    return sim.advance(SIM_END)


def service(env: Env, srv: Server, user: str) -> Any:
    return fsc.SensorThingsService(srv.url + STA, auth_handler=Bearer(env.tokens[user]))


def get(env: Env, srv: Server, user: str | None, path: str, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {env.tokens[user]}"} if user else {}
    return requests.get(srv.url + STA + path, params=params, headers=headers, timeout=30)


def test_a_ward_reads_its_things_datastreams_and_observations_with_an_sta_client(
    server: tuple[Env, Server],
) -> None:
    env, srv = server
    sta = service(env, srv, "tn-staff")
    # Paging: two Things a page, the client follows @iot.nextLink.
    things = sta.things().query().top(2).count().list()
    assert things.count == 3 and things.next_link
    assert sorted(t.id for t in things) == ["tn-gw-01", "tn-gw-02", "tn-gw-03"]
    # A Thing with its Location and Datastreams, one level of $expand.
    [gw] = list(sta.things().query().filter(None).expand("Locations,Datastreams").list())[:1]
    assert gw.id == "tn-gw-01"
    [loc] = list(gw.locations)
    assert loc.location["type"] == "Point" and loc.encoding_type == "application/geo+json"
    tn_gw_01 = REG.gateways["tn-gw-01"]
    assert sorted(d.id for d in gw.datastreams) == sorted(
        f"{s.id}:{m}" for s in tn_gw_01.sensors for m in s.metrics)
    # The unit of measurement comes from the catalog.
    ds = sta.datastreams().find("tn-aq-01:no2")
    assert ds.unit_of_measurement.symbol == "µg/m³" and ds.name == "tn-aq-01 no2"
    # Observations of the series: $filter on result, $orderby, paged 7 at a time.
    obs = ds.get_observations().query().filter("result ge 100 and result lt 120") \
        .orderby("phenomenonTime", "asc").top(7).list()
    values = [o.result for o in obs]  # iterating follows every nextLink
    assert values == [float(v) for v in range(119, 99, -1)]  # the older, the larger (seed)
    times = [o.phenomenon_time for o in obs]
    assert times == sorted(times)
    # $filter on time, $count, and the first Observation read back by its own id.
    first = obs.get(0)
    later = ds.get_observations().query().filter(f"phenomenonTime gt {first.phenomenon_time}") \
        .count().top(1).list()
    assert later.count == 120  # the 119 younger of the minute series and the seed's 30-s-old reading
    again = sta.observations().find(first.id)
    assert (again.result, again.phenomenon_time) == (first.result, first.phenomenon_time)
    # Sensors and ObservedProperties of the catalog (Vietnamese first).
    assert sta.sensors().find("tn-aq-01").description.startswith("Trạm quan trắc không khí")
    assert sta.observed_properties().find("pm25").name == "Bụi PM2.5"


def test_simulated_readings_read_back_through_the_client(server: tuple[Env, Server]) -> None:
    env, srv = server
    sta = service(env, srv, "tn-staff")
    readings = simulated()
    for sensor, metric in {(r.sensor, r.metric) for r in readings}:
        want = sorted((r.ts, r.value) for r in readings if (r.sensor, r.metric) == (sensor, metric))
        ds = sta.datastreams().find(f"{sensor}:{metric}")
        got = ds.get_observations().query().filter(f"phenomenonTime le {SIM_END.isoformat()}") \
            .orderby("phenomenonTime", "asc").top(25).count().list()  # the seed's own reading is later
        assert got.count == len(want)
        assert [(datetime.fromisoformat(o.phenomenon_time), o.result) for o in got] == want
    # A time window on one series, as a provincial system polls it.
    lo, hi = SIM_END - timedelta(minutes=20), SIM_END - timedelta(minutes=10)
    flood = [r for r in readings if (r.sensor, r.metric) == ("tn-flood-01", "water_level_cm")
             and lo <= r.ts < hi]
    window = sta.datastreams().find("tn-flood-01:water_level_cm").get_observations().query() \
        .filter(f"phenomenonTime ge {lo.isoformat()} and phenomenonTime lt {hi.isoformat()}").list()
    assert [o.result for o in window] == [r.value for r in flood] and flood


def test_another_wards_entities_are_absent_or_404(server: tuple[Env, Server]) -> None:
    env, srv = server
    sta = service(env, srv, "tn-staff")
    for dao, ident in ((sta.things(), "qt-gw-01"), (sta.datastreams(), "qt-aq-01:pm25"),
                       (sta.sensors(), "ax-aq-01"), (sta.locations(), "qt-gw-01")):
        with pytest.raises(requests.HTTPError) as err:
            dao.find(ident)
        assert err.value.response.status_code == 404
    everything = get(env, srv, "tn-staff", "/Observations", **{"$top": "1000", "$count": "true"}).json()
    assert everything["value"] and all(o["@iot.id"].startswith("tn-") for o in everything["value"])
    leader = get(env, srv, "leader", "/Observations", **{"$top": "1", "$count": "true"}).json()
    assert leader["@iot.count"] > everything["@iot.count"]
    qt = get(env, srv, "tn-staff", "/Observations", **{"$top": "1"}).json()["value"][0]["@iot.id"]
    assert get(env, srv, "qt-staff", f"/Observations('{qt}')").status_code == 404
    pm = get(env, srv, "tn-staff", "/ObservedProperties('pm25')/Datastreams").json()["value"]
    assert pm and all(d["properties"]["site"] == "thong-nhat" for d in pm)
    assert get(env, srv, None, "/Things").status_code == 401
    assert get(env, srv, "qt-staff", "/Things('tn-gw-01')/Datastreams").status_code == 404


BAD: list[tuple[str, dict[str, str]]] = [
    ("/Nope", {}),
    ("/Things('tn-gw-01')/Nope", {}),
    ("/Things/Datastreams", {}),
    ("/Things", {"$select": "name"}),
    ("/Things", {"$top": "-1"}),
    ("/Things", {"$skip": "x"}),
    ("/Things", {"$count": "yes"}),
    ("/Things", {"$orderby": "properties/site"}),
    ("/Things", {"$filter": "name eq 'x'"}),
    ("/Things", {"$expand": "Datastreams/Observations"}),
    ("/Things", {"$expand": "Datastreams($expand=Observations)"}),
    ("/Things", {"$expand": "Sensors"}),
    ("/Things", {"$expand": "Datastreams($top=1"}),
    ("/Observations", {"$filter": "result gt 1 or result lt 2"}),
    ("/Observations", {"$filter": "not result gt 1"}),
    ("/Observations", {"$filter": "(result gt 1)"}),
    ("/Observations", {"$filter": "result gt 'abc'"}),
    ("/Observations", {"$filter": "result gt 1e999"}),
    ("/Observations", {"$filter": "phenomenonTime gt 2026-13-45T99:00:00Z"}),
    ("/Observations", {"$filter": "phenomenonTime gt 42"}),
    ("/Observations", {"$filter": "substringof('a', name)"}),
    ("/Observations", {"$filter": "result gt"}),
    ("/Observations", {"$filter": "'"}),
    ("/Observations", {"$orderby": "phenomenonTime sideways"}),
    ("/Observations('tn-aq-01:no2:2026')", {"$top": "3"}),
]


def test_what_the_subset_does_not_cover_is_a_400_with_a_message(server: tuple[Env, Server]) -> None:
    env, srv = server
    for path, params in BAD:
        r = get(env, srv, "tn-staff", path, **params)
        assert r.status_code == 400, (path, params, r.text)
        body = r.json()
        assert body["error"] == "sta_bad_request" and body["detail"]["vi"] and body["detail"]["en"]
    with pytest.raises(requests.HTTPError) as err:  # through the client, as its user sees it
        service(env, srv, "tn-staff").observations().query().filter("result gt 1 or result lt 2").list()
    assert err.value.response.status_code == 400
