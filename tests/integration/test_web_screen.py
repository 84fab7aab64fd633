"""The operations screen (ops_center/web/) in a real browser: Debian's Chromium driven by
Playwright, against the API served by uvicorn on a free port (SQLite store seeded by
tests/support/api.py). No browser is ever downloaded: a missing /usr/bin/chromium or
playwright package is a skip here and a failure under CI (tests/servers/_proc.py).

Every wait is Playwright's ``expect`` with a deadline, or a deadline loop on the server's
own counters; none is a sleep."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from contract.catalog import METRICS, SENSOR_KINDS
from ops_center.adapters.records import IncidentRecord, TimelineEvent
from ops_center.api.schemas import IncidentOut
from ops_center.feed import Feed
from ops_center.web import SCREEN_PATH
from tests.servers._proc import missing_server
from tests.support.api import PASSWORD, REG, Env, Server, auth, sqlite_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DEADLINE_MS = 5000  # an event on the feed reaches the screen well within this (SSE: < 1 s)


class ScreenServer(Server):
    def wait_subscribers(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while self.feed.stats.subscribers < n:
            assert time.monotonic() < deadline, f"the screen did not open its stream: {self.feed.stats}"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        missing_server("playwright (the Python package)", str(exc))
    if not CHROMIUM.exists():
        missing_server("Chromium", f"{CHROMIUM} not found (Debian package chromium)")
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Error as exc:
            missing_server("Chromium", f"{CHROMIUM} did not start: {exc}")
        yield b
        b.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path / "screen.db", kpi_interval_s=0.5, stream_keepalive_s=1.0)


@pytest.fixture
def server(env: Env) -> Iterator[Server]:
    with ScreenServer(env) as srv:
        yield srv


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """The screen in a fresh browser context. Every test using it also proves the screen runs
    under the API's Content-Security-Policy: any violation Chromium reports (in the console,
    or as a ``securitypolicyviolation`` event) fails the test at teardown."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    context.add_init_script(
        "window.__cspViolations = [];"
        "document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push("
        "e.violatedDirective + ' ' + e.blockedURI));"
    )
    p = context.new_page()
    violations: list[str] = []
    p.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    p.set_default_timeout(DEADLINE_MS)
    p.goto(f"{server.url}{SCREEN_PATH}/")
    yield p
    if not p.is_closed():
        violations += p.evaluate("window.__cspViolations || []")
    context.close()
    assert not violations, f"the screen broke its Content-Security-Policy: {violations}"


def log_in(page: Page, user: str, password: str = PASSWORD) -> None:
    page.fill("#login-user", user)
    page.fill("#login-password", password)
    page.click("#login-submit")


def incident_row(page: Page, incident_id: str) -> Any:
    return page.locator(f'#incidents li[data-id="{incident_id}"]')


def publish_new_incident(env: Env, feed: Feed, incident_id: str, site: str, title_vi: str) -> None:
    """An incident opened as the ops service opens one: its rows through the repository,
    then the ``incident`` event on the feed with the data ops_center/service/persist.py sends."""
    now = env.seed.now + timedelta(minutes=1)
    rec = IncidentRecord(
        id=incident_id,
        site=site,
        kind="flooding",
        severity="emergency",
        state="open",
        title_vi=title_vi,
        title_en=f"Flooding {site}",
        opened_at=now,
        updated_at=now,
    )
    env.repo.incidents.upsert_incident(rec)
    env.repo.incidents.append_timeline(
        TimelineEvent(incident_id=rec.id, site=site, at=now, actor="rule:water", action="opened", detail=None)
    )
    feed.publish(
        "incident",
        site,
        {
            "action": "opened",
            "by": "rule:water",
            "notify": True,
            "merged_into": None,
            "entry_at": now.isoformat().replace("+00:00", "Z"),
            "alert_id": None,
            "incident": IncidentOut.of(rec).model_dump(mode="json"),
        },
    )


def test_ward_staff_sees_only_their_ward_in_vietnamese(page: Page, env: Env, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#login h1")).to_have_text("Trung tâm điều hành phường thông minh")
    log_in(page, "tn-staff")
    expect(page.locator("#user-name")).to_have_text("tn-staff")
    expect(page.locator("#user-role")).to_have_text("Cán bộ phường")
    # The site selector offers the user's own ward only.
    expect(page.locator("#site-select option")).to_have_count(1)
    expect(page.locator("#site-select option")).to_have_text(["Phường Thống Nhất"])
    # Only Thống Nhất's incident, in Vietnamese.
    rows = page.locator("#incidents li")
    expect(rows).to_have_count(1)
    row = incident_row(page, env.seed.incidents["thong-nhat"])
    expect(row).to_contain_text("Ô nhiễm thong-nhat")
    expect(row).to_contain_text("Nghiêm trọng")
    expect(row).to_contain_text("Mới mở")
    expect(row).to_contain_text("Phường Thống Nhất")
    assert rows.evaluate_all("els => els.map(e => e.dataset.site)") == ["thong-nhat"]
    # KPI tiles from the site overview: the seed leaves each site's last gateway silent.
    expect(page.locator("#kpi-online")).to_contain_text("%")
    expect(page.locator("#kpi-incidents")).to_have_text("1")
    expect(page.locator("#kpi-incidents-sub")).to_contain_text("Nghiêm trọng: 1")
    expect(page.locator("#kpi-aqi")).not_to_have_text("—")
    # Sensors of the ward only, with their freshness.
    sensors = page.locator("#sensors tbody tr")
    tn_sensors = [
        s.id for g in REG.spec.sites if g.id == "thong-nhat" for gw in g.gateways for s in gw.sensors
    ]
    expect(sensors).to_have_count(len(tn_sensors))
    assert sorted(sensors.evaluate_all("els => els.map(e => e.dataset.id)")) == sorted(tn_sensors)
    expect(page.locator("#sensors td.fresh").first).to_contain_text("mới")
    expect(page.locator("#sensors td.stale").first).to_contain_text("trước")
    # Kinds and metrics by their names from the catalog, not their codes.
    air = page.locator('#sensors tr[data-id="tn-aq-01"]')
    expect(air).to_contain_text(SENSOR_KINDS["air_quality"].name_vi)
    expect(air).to_contain_text(METRICS["pm25"].name_vi)
    expect(air).not_to_contain_text("air_quality")
    # The incident's detail: member alert and timeline.
    row.click()
    expect(page.locator("#detail-title")).to_have_text("Ô nhiễm thong-nhat")
    expect(page.locator("#detail-alerts li")).to_contain_text(["PM2.5 cao thong-nhat"])
    # The actor in words (the rule id stays in the tooltip), one language.
    expect(page.locator("#detail-timeline li")).to_contain_text(
        ["Hệ thống cảnh báo — mở sự cố: opened thong-nhat"]
    )
    expect(page.locator("#detail-timeline li").first).to_have_attribute(
        "title", "rule:pm25: opened thong-nhat"
    )
    page.screenshot(path=str(tmp_path / "screen-vi.png"), full_page=True)
    # English on request, and back.
    page.click("header .lang-toggle")
    expect(page.locator("#user-role")).to_have_text("Ward staff")
    expect(row).to_contain_text("Pollution thong-nhat")
    expect(row).to_contain_text("Critical")
    expect(air).to_contain_text(SENSOR_KINDS["air_quality"].name_en)
    page.click("header .lang-toggle")
    expect(row).to_contain_text("Nghiêm trọng")


def test_incidents_opened_or_acted_on_elsewhere_show_without_reload(
    page: Page, env: Env, server: Server
) -> None:
    from playwright.sync_api import expect

    log_in(page, "tn-staff")
    expect(page.locator("#incidents li")).to_have_count(1)
    page.evaluate("window.__sameDocument = true")
    server.wait_subscribers(1)
    # Another ward's incident first, then this ward's: once the second shows, the first
    # had its chance to (wrongly) arrive.
    publish_new_incident(env, server.feed, "inc-qt-flood", "quang-trung", "Ngập Quang Trung")
    publish_new_incident(env, server.feed, "inc-tn-flood", "thong-nhat", "Ngập đường Trần Hưng Đạo")
    new = incident_row(page, "inc-tn-flood")
    expect(new).to_contain_text("Ngập đường Trần Hưng Đạo", timeout=DEADLINE_MS)
    expect(new).to_contain_text("Khẩn cấp")
    expect(incident_row(page, "inc-qt-flood")).to_have_count(0)
    # Sorted by severity: the emergency is first.
    expect(page.locator("#incidents li").first).to_have_attribute("data-id", "inc-tn-flood")
    # A colleague acknowledges the seeded incident from another client.
    seeded = env.seed.incidents["thong-nhat"]
    with httpx.Client(base_url=server.url, timeout=10) as other:
        r = other.post(
            f"/api/v1/incidents/{seeded}/acknowledge", headers=auth(env.tokens["tn-staff"]), json={}
        )
        assert r.status_code == 200, r.text
    expect(incident_row(page, seeded)).to_have_attribute("data-state", "acknowledged", timeout=DEADLINE_MS)
    expect(incident_row(page, seeded)).to_contain_text("Đã tiếp nhận")
    # ... and resolves it: it leaves the list of open incidents.
    with httpx.Client(base_url=server.url, timeout=10) as other:
        r = other.post(
            f"/api/v1/incidents/{seeded}/resolve", headers=auth(env.tokens["tn-staff"]), json={"note": "xong"}
        )
        assert r.status_code == 200, r.text
    expect(incident_row(page, seeded)).to_have_count(0, timeout=DEADLINE_MS)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened


def test_acknowledge_and_resolve_from_the_screen_are_persisted(page: Page, env: Env, server: Server) -> None:
    from playwright.sync_api import expect

    seeded = env.seed.incidents["thong-nhat"]
    log_in(page, "tn-staff")
    incident_row(page, seeded).click()
    expect(page.locator("#detail")).to_have_attribute("data-id", seeded)
    page.click("#btn-ack")
    expect(page.locator("#detail-state")).to_have_text("Đã tiếp nhận")
    expect(page.locator("#btn-ack")).to_be_hidden()
    expect(incident_row(page, seeded)).to_have_attribute("data-state", "acknowledged")
    with httpx.Client(base_url=server.url, timeout=10) as api:
        body = api.get(f"/api/v1/incidents/{seeded}", headers=auth(env.tokens["tn-staff"])).json()
    assert body["state"] == "acknowledged"
    assert any(e["actor"] == "tn-staff" and e["action"] == "acknowledged" for e in body["timeline"]), body
    # Resolving needs a note: refused on the screen before any request.
    page.click("#btn-resolve")
    expect(page.locator("#action-error")).to_have_text("Cần nhập ghi chú.")
    page.fill("#note", "Đã kiểm tra, chỉ số đã giảm.")
    page.click("#btn-resolve")
    expect(incident_row(page, seeded)).to_have_count(0)
    expect(page.locator("#detail-state")).to_have_text("Đã đóng")
    with httpx.Client(base_url=server.url, timeout=10) as api:
        body = api.get(f"/api/v1/incidents/{seeded}", headers=auth(env.tokens["tn-staff"])).json()
    assert body["state"] == "resolved"
    assert any(e["detail"] == "Đã kiểm tra, chỉ số đã giảm." for e in body["timeline"]), body


def test_city_leader_sees_every_site_and_may_not_acknowledge(page: Page, env: Env) -> None:
    from playwright.sync_api import expect

    log_in(page, "leader")
    expect(page.locator("#user-role")).to_have_text("Lãnh đạo thành phố")
    options = page.locator("#site-select option")
    expect(options).to_have_count(1 + len(REG.spec.sites))
    expect(options.first).to_have_text("Toàn thành phố")
    expect(page.locator("#incidents li")).to_have_count(len(env.seed.incidents))
    expect(page.locator("#kpi-incidents")).to_have_text(str(len(env.seed.incidents)))
    qt = env.seed.incidents["quang-trung"]
    incident_row(page, qt).click()
    expect(page.locator("#detail")).to_have_attribute("data-id", qt)
    expect(page.locator("#btn-note")).to_be_visible()
    expect(page.locator("#btn-ack")).to_be_hidden()
    expect(page.locator("#btn-resolve")).to_be_hidden()
    # Should a button show anyway (a stale page, a changed role), the API's 403 is spelled out.
    page.evaluate("document.getElementById('btn-ack').hidden = false")
    page.click("#btn-ack")
    expect(page.locator("#action-error")).to_have_text(
        "Vai trò của bạn không được phép thực hiện thao tác này. (403)"
    )
    expect(page.locator("#detail-state")).to_have_text("Mới mở")
    # A note is theirs to add.
    page.fill("#note", "Đề nghị phường báo cáo trước 17 giờ.")
    page.click("#btn-note")
    expect(page.locator("#detail-timeline li").last).to_contain_text(
        "leader — ghi chú: Đề nghị phường báo cáo"
    )
    # Narrowing to one site narrows the list.
    page.select_option("#site-select", "an-xa")
    expect(page.locator("#incidents li")).to_have_count(1)
    expect(incident_row(page, env.seed.incidents["an-xa"])).to_be_visible()


def test_the_screen_is_served_under_a_strict_policy(browser: Browser, server: Server) -> None:
    from playwright.sync_api import expect

    r = httpx.get(f"{server.url}{SCREEN_PATH}/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    try:
        page = context.new_page()
        page.set_default_timeout(DEADLINE_MS)
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{server.url}{SCREEN_PATH}/")
        log_in(page, "tn-staff")
        expect(incident_row(page, "inc-tn-1")).to_be_visible()
        assert refused == []  # the screen itself needs nothing the policy refuses
        # The policy is enforced: an inline script, as an injection would add, does not run.
        page.evaluate("""() => { const s = document.createElement('script');
                                s.textContent = 'window.__inlineRan = true';
                                document.body.appendChild(s); }""")
        assert page.evaluate("window.__inlineRan === true") is False
        deadline = time.monotonic() + DEADLINE_MS / 1000
        while not refused:
            assert time.monotonic() < deadline, "no CSP violation reported for an inline script"
            page.wait_for_timeout(20)
        assert "inline script" in refused[0]
    finally:
        context.close()


def test_the_stream_uses_tickets_and_logout_ends_the_session_on_the_server(
    page: Page, server: ScreenServer
) -> None:
    """No token ever travels in a URL (the stream opens with a single-use ticket), and the
    logout button revokes the session: its refresh token no longer works."""
    from playwright.sync_api import expect

    urls: list[str] = []
    page.on("request", lambda req: urls.append(req.url))
    log_in(page, "tn-staff")
    expect(incident_row(page, "inc-tn-1")).to_be_visible()
    server.wait_subscribers(1)
    deadline = time.monotonic() + DEADLINE_MS / 1000
    while not any("/api/v1/stream?ticket=" in u for u in urls):  # request events arrive async
        assert time.monotonic() < deadline, urls
        page.wait_for_timeout(20)
    assert not [u for u in urls if "access_token" in u or "refresh_token" in u], urls
    stored = page.evaluate("JSON.parse(sessionStorage.getItem('smartward.session'))")
    page.click("#logout")
    expect(page.locator("#login-user")).to_be_visible()
    deadline = time.monotonic() + DEADLINE_MS / 1000
    # The logout request goes out as the login form shows. Probed with the access token (a
    # refresh would rotate the session and so end it by itself).
    while httpx.get(f"{server.url}/api/v1/me", headers=auth(stored["access"])).status_code != 401:
        assert time.monotonic() < deadline, "the session outlived the logout"
        page.wait_for_timeout(50)
    r = httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": stored["refresh"]})
    assert r.status_code == 401


def test_bad_password_shows_an_error_and_stays_on_login(page: Page) -> None:
    from playwright.sync_api import expect

    log_in(page, "tn-staff", "not-the-password")
    expect(page.locator("#login-error")).to_have_text("Sai tên đăng nhập hoặc mật khẩu. (401)")
    expect(page.locator("#screen")).to_be_hidden()


def test_lost_connection_shows_a_banner_and_the_stream_comes_back(
    page: Page, env: Env, server: Server
) -> None:
    from playwright.sync_api import expect

    log_in(page, "tn-staff")
    expect(page.locator("#incidents li")).to_have_count(1)
    server.wait_subscribers(1)
    banner = page.locator("#conn-banner")
    expect(banner).to_be_hidden()
    page.context.set_offline(True)
    expect(banner).to_be_visible()
    expect(banner).to_have_text("Mất kết nối tới trung tâm — đang kết nối lại…")
    page.context.set_offline(False)
    expect(banner).to_be_hidden(timeout=15_000)
    server.wait_subscribers(1)
    publish_new_incident(env, server.feed, "inc-tn-after", "thong-nhat", "Sự cố sau khi kết nối lại")
    expect(incident_row(page, "inc-tn-after")).to_be_visible(timeout=DEADLINE_MS)


def test_a_notification_link_opens_its_incident_after_login(page: Page, env: Env, server: Server) -> None:
    """A message's link (docs/notifications.md) is /screen/?incident=ID: after logging in, the
    duty officer lands on that incident, and the address no longer names it."""
    from playwright.sync_api import expect

    seeded = env.seed.incidents["thong-nhat"]
    page.goto(f"{server.url}{SCREEN_PATH}/?incident={seeded}")
    log_in(page, "tn-staff")
    expect(page.locator("#detail")).to_have_attribute("data-id", seeded)
    assert "incident=" not in page.url
