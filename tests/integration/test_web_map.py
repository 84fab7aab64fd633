"""The operations screen's map in a real browser (Debian's Chromium, Playwright), against the
API served by uvicorn on the store seeded by tests/support/api.py: the DOM contract of
docs/contract.md "Operations screen" — one marker per visible gateway in its state, a change of
state within 30 s, an incident pin live in and out, global roles on the city-wide view, and no
request leaving 127.0.0.1. Waits are Playwright's ``expect`` with deadlines, never sleeps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from ops_center.adapters.records import GatewayStatusRecord
from ops_center.feed import Feed
from ops_center.web import SCREEN_PATH
from tests.integration.test_web_screen import (  # noqa: F401 (fixtures)
    DEADLINE_MS,
    ScreenServer,
    browser,
    log_in,
    publish_new_incident,
)
from tests.support.api import REG, Env, Server, auth, sqlite_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.integration

CHANGE_DEADLINE_MS = 30_000  # the contract's bound for a marker's state change


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path / "map.db", kpi_interval_s=0.5, stream_keepalive_s=1.0)


@pytest.fixture
def server(env: Env) -> Iterator[Server]:
    with ScreenServer(env) as srv:
        yield srv


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    p = context.new_page()
    p.set_default_timeout(DEADLINE_MS)
    foreign: list[str] = []
    p.on("request", lambda r: None if r.url.startswith((server.url, "data:")) else foreign.append(r.url))
    p.on("pageerror", lambda e: print("pageerror:", e))
    p.goto(f"{server.url}{SCREEN_PATH}/")
    yield p
    context.close()
    assert not foreign, f"the screen fetched from elsewhere: {foreign}"


def set_status(env: Env, feed: Feed, gateway: str, site: str, state: str) -> None:
    """A gateway's status as the ops service records it: the row, then the ``gateway`` event."""
    at = env.seed.now + timedelta(seconds=5)
    env.repo.gateways.upsert_gateway_status(
        GatewayStatusRecord(gateway=gateway, site=site, state=state, last_seen=at))
    feed.publish(
        "gateway",
        site,
        {"gateway": {"id": gateway, "site": site, "state": state, "last_seen": at.isoformat()}},
    )


def marker(page: Page, gateway: str) -> Locator:
    return page.locator(f'[data-map] [data-marker][data-gateway="{gateway}"]')


def test_city_leader_lands_on_the_city_map_with_every_gateway_in_its_state(page: Page, env: Env) -> None:
    from playwright.sync_api import expect

    log_in(page, "leader")
    expect(page.locator("#site-select")).to_have_value("")
    markers = page.locator("[data-map] [data-marker]")
    expect(markers).to_have_count(sum(len(s.gateways) for s in REG.spec.sites))
    states = dict(markers.evaluate_all("els => els.map(e => [e.dataset.gateway, e.dataset.state])"))
    # The seed: tn-gw-01 and qt-gw-01 online with a batch a minute ago; ax-gw-01 online but
    # without batches; every other gateway never reported.
    expected = {gw.id: "offline" for s in REG.spec.sites for gw in s.gateways}
    expected |= {"tn-gw-01": "online", "qt-gw-01": "online", "ax-gw-01": "stale"}
    assert states == expected
    # A pin per unresolved incident, and the site outlines of the offline base layer.
    pins = page.locator("[data-map] [data-incident-marker]")
    expect(pins).to_have_count(len(env.seed.incidents))
    expect(page.locator("[data-map] .site-label")).to_have_count(len(REG.spec.sites))
    expect(page.locator("[data-map] .site-label").first).to_contain_text("Phường Nam Định")
    # The 2025 administrative unit beside the name people know.
    page.select_option("#site-select", "thong-nhat")
    expect(page.locator("#site-parent")).to_have_text("Phường Nam Định, tỉnh Ninh Bình")


def test_ward_staff_sees_their_gateways_change_state_live(page: Page, env: Env, server: ScreenServer) -> None:
    from playwright.sync_api import expect

    log_in(page, "tn-staff")
    tn = [gw.id for s in REG.spec.sites if s.id == "thong-nhat" for gw in s.gateways]
    expect(page.locator("[data-map] [data-marker]")).to_have_count(len(tn))
    expect(marker(page, "tn-gw-01")).to_have_attribute("data-state", "online")
    expect(marker(page, "qt-gw-01")).to_have_count(0)
    server.wait_subscribers(1)
    # A gateway that says it is online but sends nothing is stale; a Last Will makes it offline.
    set_status(env, server.feed, "tn-gw-02", "thong-nhat", "online")
    expect(marker(page, "tn-gw-02")).to_have_attribute("data-state", "stale", timeout=CHANGE_DEADLINE_MS)
    set_status(env, server.feed, "tn-gw-01", "thong-nhat", "offline")
    expect(marker(page, "tn-gw-01")).to_have_attribute("data-state", "offline", timeout=CHANGE_DEADLINE_MS)


def test_an_incident_pin_appears_live_opens_the_incident_and_leaves_when_resolved(
    page: Page, env: Env, server: ScreenServer
) -> None:
    from playwright.sync_api import expect

    log_in(page, "tn-staff")
    pins = page.locator("[data-map] [data-incident-marker]")
    expect(pins).to_have_count(1)
    page.evaluate("window.__sameDocument = true")
    server.wait_subscribers(1)
    publish_new_incident(env, server.feed, "inc-tn-map", "thong-nhat", "Ngập đường Trần Đăng Ninh")
    pin = page.locator('[data-map] [data-incident-marker][data-incident="inc-tn-map"]')
    expect(pin).to_have_count(1)
    expect(pin).to_have_attribute("data-severity", "emergency")
    pin.click()
    expect(page.locator("#detail")).to_have_attribute("data-id", "inc-tn-map")
    with httpx.Client(base_url=server.url, timeout=10) as api:
        r = api.post(
            "/api/v1/incidents/inc-tn-map/resolve",
            headers=auth(env.tokens["tn-staff"]),
            json={"note": "đã rút"},
        )
        assert r.status_code == 200, r.text
    expect(pin).to_have_count(0)
    expect(pins).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True


def test_the_map_endpoint_is_scoped_and_names_no_tiles_by_default(env: Env) -> None:
    r = env.client.get("/api/v1/map", headers=auth(env.tokens["tn-staff"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tiles"] is None
    assert [s["id"] for s in body["sites"]] == ["thong-nhat"]
    assert {g["site"] for g in body["gateways"]} == {"thong-nhat"}
    assert len(body["sites"][0]["outline"]) >= 3
    assert {st["name"] for st in body["sites"][0]["streets"]} >= {"Trần Đăng Ninh"}
    aq = next(s for s in body["sensors"] if s["id"] == "tn-aq-01")
    assert aq["aqi"] is not None and aq["aqi"]["value"] > 0
    assert env.client.get("/api/v1/map").status_code == 401
    r = env.client.get("/api/v1/map?site=quang-trung", headers=auth(env.tokens["tn-staff"]))
    assert r.status_code == 200 and r.json()["sites"] == []


def test_the_screens_vn_aqi_is_the_domain_functions_for_the_same_data(page: Page, env: Env) -> None:
    from playwright.sync_api import expect

    from ops_center.domain.aqi import category, hourly_aqi

    # The seed's hourly means of tn-aq-01 (tests/support/api.py): PM2.5 40 and PM10 60 for 12 h.
    expected = hourly_aqi({"pm25": [40.0] * 12, "pm10": [60.0] * 12}, {})
    assert expected is not None
    log_in(page, "tn-staff")
    expect(page.locator("#kpi-aqi")).to_have_text(str(expected.value))
    expect(page.locator("#kpi-aqi-sub")).to_contain_text(category(expected.value).label_vi)
    badge = page.locator('[data-map] [data-aqi-station="tn-aq-01"]')
    expect(badge).to_have_attribute("data-aqi", str(expected.value))


def test_the_timeline_speaks_one_language_and_values_carry_no_float_noise(page: Page, env: Env) -> None:
    from playwright.sync_api import expect

    from ops_center.adapters.records import AlertRecord, TimelineEvent

    now = env.seed.now
    env.repo.incidents.upsert_alert(
        AlertRecord(
            id="al-tn-noise",
            rule="ww-tss",
            site="thong-nhat",
            severity="warning",
            state="active",
            opened_at=now,
            updated_at=now,
            gateway="tn-gw-01",
            sensor="tn-aq-01",
            metric="pm25",
            incident_id="inc-tn-1",
            value=0.22999999999999865,
            category="air",
            message_vi="",
            message_en="",
        )
    )
    env.repo.incidents.append_timeline(
        TimelineEvent(
            incident_id="inc-tn-1",
            site="thong-nhat",
            at=now,
            actor="rule:ww-tss",
            action="alert_added",
            detail="Thêm cảnh báo / Alert added [alert al-tn-noise]",
        )
    )
    log_in(page, "tn-staff")
    page.locator('#incidents li[data-id="inc-tn-1"]').click()
    alert = page.locator('#detail-alerts li[data-id="al-tn-noise"]')
    expect(alert).to_contain_text("ww-tss = 0,23")
    expect(alert).not_to_contain_text("0.2299")
    added = page.locator('#detail-timeline li[data-action="alert_added"]')
    expect(added).to_have_text(re.compile(r"Hệ thống cảnh báo — thêm cảnh báo: Thêm cảnh báo$"))
    page.click("header .lang-toggle")
    expect(added).to_have_text(re.compile(r"Alerting — .*: Alert added$"))


def test_a_chart_draws_real_readings_with_the_qcvn_limit(page: Page, env: Env) -> None:
    from playwright.sync_api import expect

    log_in(page, "tn-staff")
    page.select_option("#trend-sensor", "tn-aq-01")
    page.select_option("#trend-metric", "pm25")
    chart = page.locator('#trend-chart[data-chart][data-sensor="tn-aq-01"][data-metric="pm25"]')
    # The seed's PM2.5 rollups (1-minute buckets for 2 h): a 24 h range → 15-minute buckets.
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    expect(chart.locator("canvas")).to_have_count(1)
    expect(chart.locator(".u-legend")).to_contain_text("QCVN 05:2023")
    # The incident's readings: its alert's sensor and metric.
    page.locator('#incidents li[data-id="inc-tn-1"]').click()
    opening = page.locator('#detail-charts [data-chart][data-sensor="tn-aq-01"][data-metric="pm25"]')
    expect(opening).to_have_attribute("data-points", re.compile(r"^\d+$"))
    expect(page.locator("#detail-charts-title")).to_have_text("Số liệu dẫn tới sự cố")


def test_with_smartward_map_tiles_the_tiles_come_from_there_only(browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    tiles = "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png"  # the city's own tile server (here: nobody)
    envs = sqlite_env(tmp_path / "tiles.db", map_tiles=tiles, map_tiles_attribution="© Sở TN&MT")
    tenv = next(envs)
    asked: list[str] = []
    try:
        with ScreenServer(tenv) as srv:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
            p = context.new_page()
            p.set_default_timeout(DEADLINE_MS)
            p.on("request", lambda r: None if r.url.startswith(srv.url) else asked.append(r.url))
            p.goto(f"{srv.url}{SCREEN_PATH}/")
            log_in(p, "leader")
            markers = p.locator("[data-map] [data-marker]")
            expect(markers).to_have_count(sum(len(s.gateways) for s in REG.spec.sites))
            expect(p.locator("[data-map] .leaflet-tile")).not_to_have_count(0)
            expect(p.locator("[data-map] .leaflet-control-attribution")).to_contain_text("© Sở TN&MT")
            context.close()
    finally:
        next(envs, None)  # the generator's cleanup (its repository closes)
    assert asked and all(u.startswith("http://127.0.0.1:9/tiles/") for u in asked), asked


def test_assign_and_escalate_from_the_screen_are_persisted(
    page: Page, env: Env, server: ScreenServer
) -> None:
    from playwright.sync_api import expect

    seeded = env.seed.incidents["thong-nhat"]
    log_in(page, "tn-staff")
    page.locator(f'#incidents li[data-id="{seeded}"]').click()
    expect(page.locator("#detail")).to_have_attribute("data-id", seeded)
    page.click("#btn-assign")
    expect(page.locator("#action-error")).to_have_text("Cần nhập người được giao.")
    page.fill("#assignee", "tn-staff")
    page.click("#btn-assign")
    expect(page.locator("#detail-assignee")).to_have_text("· Giao cho: tn-staff")
    page.click("#btn-escalate")
    expect(page.locator("#detail-escalated")).to_contain_text("đã báo cáo lên cấp trên lúc")
    expect(page.locator("#btn-escalate")).to_be_hidden()
    with httpx.Client(base_url=server.url, timeout=10) as api:
        body = api.get(f"/api/v1/incidents/{seeded}", headers=auth(env.tokens["tn-staff"])).json()
    assert body["assignee"] == "tn-staff" and body["escalated_at"] is not None, body
    assert {"assigned", "escalated"} <= {e["action"] for e in body["timeline"]}, body["timeline"]
