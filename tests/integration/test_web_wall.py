"""Wall mode (/screen/?wall=1) and the phone layout in a real browser (Debian's Chromium,
Playwright) against the API on the seeded store: the wall has no buttons and rotates between
the city and each site, an emergency takes it over; on a 390×844 phone the incidents come
first and acknowledging is one tap. Waits are Playwright's ``expect`` with deadlines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

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
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.integration

ROTATE_S = 2


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path / "wall.db", kpi_interval_s=0.5, stream_keepalive_s=1.0)


@pytest.fixture
def server(env: Env) -> Iterator[Server]:
    with ScreenServer(env) as srv:
        yield srv


def open_page(
    browser: Browser,  # noqa: F811
    server: Server,
    query: str,
    size: dict[str, int],
    *,
    touch: bool = False,
) -> Page:
    context = browser.new_context(viewport=size, locale="vi-VN", has_touch=touch, is_mobile=touch)  # type: ignore[arg-type]
    p = context.new_page()
    p.set_default_timeout(DEADLINE_MS)
    p.goto(f"{server.url}{SCREEN_PATH}/{query}")
    return p


def test_the_wall_rotates_through_the_city_and_each_site_without_buttons(
    browser: Browser,  # noqa: F811
    server: ScreenServer,
    env: Env,
) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, server, f"?wall=1&every={ROTATE_S}", {"width": 1920, "height": 1080})
    log_in(page, "leader")
    body = page.locator("body")
    expect(body).to_have_attribute("data-wall-view", "city")
    expect(page.locator("#screen button:visible")).to_have_count(0)
    seen = ["city"]
    for site in REG.spec.sites:  # in the registry's order, one every ROTATE_S seconds
        expect(body).to_have_attribute("data-wall-view", site.id, timeout=ROTATE_S * 1000 + DEADLINE_MS)
        expect(page.locator("#site-select")).to_have_value(site.id)
        expect(page.locator("#incidents li")).to_have_count(1)
        seen.append(site.id)
    expect(body).to_have_attribute("data-wall-view", "city", timeout=ROTATE_S * 1000 + DEADLINE_MS)
    assert seen == ["city", *[s.id for s in REG.spec.sites]]
    # The site's 24 h charts of PM2.5, rain and street-flood depth.
    expect(body).to_have_attribute("data-wall-view", "thong-nhat", timeout=ROTATE_S * 1000 + DEADLINE_MS)
    expect(page.locator("#wall-charts [data-chart]")).to_have_count(3)
    page.context.close()


def test_an_emergency_takes_the_wall_over_until_acknowledged(
    browser: Browser,  # noqa: F811
    server: ScreenServer,
    env: Env,
) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, server, f"?wall=1&every={ROTATE_S}", {"width": 1920, "height": 1080})
    log_in(page, "leader")
    overlay = page.locator("#wall-emergency")
    expect(overlay).to_be_hidden()
    publish_new_incident(env, server.feed, "inc-qt-emerg", "quang-trung", "Ngập sâu phố Hàng Sắt")
    expect(overlay).to_be_visible(timeout=10_000)
    expect(overlay).to_have_attribute("data-incident", "inc-qt-emerg")
    expect(page.locator("#wall-emergency-title")).to_have_text("Ngập sâu phố Hàng Sắt")
    expect(page.locator("body")).to_have_attribute("data-wall-view", "quang-trung")
    with httpx.Client(base_url=server.url, timeout=10) as api:
        r = api.post("/api/v1/incidents/inc-qt-emerg/acknowledge", headers=auth(env.tokens["admin"]), json={})
        assert r.status_code == 200, r.text
    expect(overlay).to_be_hidden(timeout=10_000)
    page.context.close()


def test_on_a_phone_incidents_come_first_and_acknowledging_is_one_tap(
    browser: Browser,  # noqa: F811
    server: ScreenServer,
    env: Env,
) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, server, "", {"width": 390, "height": 844}, touch=True)
    log_in(page, "tn-staff")
    seeded = env.seed.incidents["thong-nhat"]
    row = page.locator(f'#incidents li[data-id="{seeded}"]')
    expect(row).to_be_in_viewport()
    incidents_top = page.locator(".incidents-card").bounding_box()
    map_top = page.locator("[data-map]").bounding_box()
    assert incidents_top is not None and map_top is not None
    assert incidents_top["y"] < map_top["y"], (incidents_top, map_top)
    row.tap()
    ack = page.locator("#btn-ack")
    expect(ack).to_be_in_viewport()
    box = ack.bounding_box()
    assert box is not None and box["height"] >= 44 and box["width"] >= 300, box  # a thumb's target
    ack.tap()
    expect(page.locator("#detail-state")).to_have_text("Đã tiếp nhận")
    expect(row).to_have_attribute("data-state", "acknowledged")
    page.context.close()


def test_pages_for_maintenance_exports_and_admin_lists(
    browser: Browser,  # noqa: F811
    server: ScreenServer,
    env: Env,
) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, server, "", {"width": 1440, "height": 1000})
    log_in(page, "tn-staff")
    tabs = page.locator("#ops-pages [data-tab]")
    expect(tabs).to_have_text(["Bảo trì", "Lệnh thiết bị", "Xuất CSV"])  # no admin tabs for ward staff
    # A maintenance window on a sensor, listed, then ended.
    page.select_option("#mw-scope", "sensor")
    page.fill("#mw-target", "tn-aq-01")
    page.fill("#mw-reason", "Hiệu chuẩn trạm")
    page.click("#mw-set")
    row = page.locator('#ops-pages [data-tab-body="maintenance"] tbody tr', has_text="Hiệu chuẩn trạm")
    expect(row).to_contain_text("đang áp dụng")
    row.locator("[data-end]").click()
    expect(row).not_to_contain_text("đang áp dụng")
    # A CSV export of the ward's readings, downloaded with the session's token.
    page.click('#ops-pages [data-tab="exports"]')
    with page.expect_download() as dl:
        page.click("#csv-readings")
    path = dl.value.path()
    lines = Path(str(path)).read_text("utf-8-sig").splitlines()
    assert lines[0].startswith("Thời điểm (UTC)") and len(lines) > 1, lines[:3]
    page.context.close()
    # An admin also sees the dead letters.
    page = open_page(browser, server, "", {"width": 1440, "height": 1000})
    log_in(page, "admin")
    page.click('#ops-pages [data-tab="dead"]')
    expect(page.locator('#ops-pages [data-tab-body="dead"] tbody tr')).to_have_count(3)
    page.context.close()
