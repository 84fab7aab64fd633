"""The screen's users page (issue #14) in a real browser (Debian's Chromium, Playwright) against
the API on the seeded store: an admin adds a ward-staff user, who logs in and sees their ward;
the admin disables them and they are sent back to the login, which refuses them. The page
fixture fails on any Content-Security-Policy violation. Waits are ``expect`` with deadlines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ops_center.web import SCREEN_PATH
from tests.integration.test_web_screen import (  # noqa: F401 (fixtures)
    DEADLINE_MS,
    ScreenServer,
    browser,
    env,
    log_in,
    page,
    server,
)
from tests.support.api import Env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.integration

NEW = "tn-tuan-tra"
SECRET = "tuần-tra-đêm-2026"


def test_admin_adds_a_ward_staff_who_logs_in_then_disables_them(
    page: Page,  # noqa: F811
    browser: Browser,  # noqa: F811
    server: ScreenServer,  # noqa: F811
    env: Env,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    log_in(page, "admin")
    page.click('#ops-pages [data-tab="users"]')
    body = page.locator('#ops-pages [data-tab-body="users"]')
    expect(body.locator("tbody tr[data-user]")).to_have_count(5)  # the seeded users
    expect(body.locator('tr[data-user="tn-staff"]')).to_contain_text("Cán bộ phường")
    # A password too short: the API's own message, in Vietnamese; nobody is added.
    page.fill("#user-name-new", NEW)
    page.select_option("#user-role-new", "ward_staff")
    page.select_option("#user-sites-new", ["thong-nhat"])
    page.fill("#user-password-new", "ngắn")
    page.click("#user-add")
    expect(body.locator(".error")).to_contain_text("không hợp lệ")
    assert env.repo.users.get_user(NEW) is None
    # Then right.
    page.fill("#user-name-new", NEW)
    page.select_option("#user-role-new", "ward_staff")
    page.select_option("#user-sites-new", ["thong-nhat"])
    page.fill("#user-password-new", SECRET)
    page.click("#user-add")
    row = body.locator(f'tr[data-user="{NEW}"]')
    expect(row).to_contain_text("Cán bộ phường")
    expect(row).to_contain_text("Phường Thống Nhất")  # the site's name, not its id
    expect(row.locator(f'[data-user-state="{NEW}"]')).to_have_text("hoạt động")
    body.screenshot(path=str(tmp_path / "users-page.png"))
    user = env.repo.users.get_user(NEW)
    assert user is not None and user.role == "ward_staff" and user.sites == ("thong-nhat",)

    # The new user logs in, in a browser of their own, and sees their ward only.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    try:
        staff = context.new_page()
        staff.set_default_timeout(DEADLINE_MS)
        staff.goto(f"{server.url}{SCREEN_PATH}/")
        log_in(staff, NEW, SECRET)
        expect(staff.locator("#user-name")).to_have_text(NEW)
        expect(staff.locator("#site-select option")).to_have_count(1)
        expect(staff.locator('#ops-pages [data-tab="users"]')).to_have_count(0)  # no admin pages

        # The admin disables them: the row says so, and the audit log has it.
        row.locator(f'[data-user-toggle="{NEW}"]').click()
        expect(body.locator(f'[data-user-state="{NEW}"]')).to_have_text("đã khóa")
        expect(body.locator(f'[data-user-toggle="{NEW}"]')).to_have_text("Mở khóa")
        assert [(a.actor, a.outcome) for a in env.repo.users.audit_entries(100, 0).items
                if a.action == "user.disable" and a.target == f"user:{NEW}"] == [("admin", "ok")]

        # Their session ends at their next request (a reload asks the API again) and the login
        # refuses them.
        staff.reload()
        expect(staff.locator("#login")).to_be_visible()
        log_in(staff, NEW, SECRET)
        expect(staff.locator("#login-error")).to_be_visible()
        expect(staff.locator("#screen")).to_be_hidden()
    finally:
        context.close()
