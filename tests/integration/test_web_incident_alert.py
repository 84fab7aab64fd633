"""The screen's alert for a new critical or emergency incident (ops_center/web/static/
incident-alert.js), in Debian's Chromium: a banner and a sound for the users of the incident's
site, nothing for another site's users; "view" opens the incident, "dismiss" removes the line."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from ops_center.adapters.records import TimelineEvent
from tests.integration.test_web_screen import (
    DEADLINE_MS,
    ScreenServer,
    browser,
    env,
    log_in,
    page,
    publish_new_incident,
    server,
)
from tests.support.api import Env

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.integration
__all__ = ["browser", "env", "page", "server"]  # the screen tests' fixtures

# Counts the tones the screen plays (Web Audio has no other observable output headless).
COUNT_TONES = """
window.__tones = 0;
const Real = window.AudioContext;
window.AudioContext = class extends Real {
  createOscillator() { window.__tones += 1; return super.createOscillator(); }
};
"""


def test_a_new_emergency_is_seen_and_heard_by_its_sites_users_only(
    page: Page, env: Env, server: ScreenServer
) -> None:
    from playwright.sync_api import expect

    page.add_init_script(COUNT_TONES)
    page.reload()
    log_in(page, "tn-staff")  # a click: the browser now lets the page make sound
    expect(page.locator("#incidents li")).to_have_count(1)
    server.wait_subscribers(1)
    publish_new_incident(env, server.feed, "inc-qt-flood", "quang-trung", "Ngập Quang Trung")
    publish_new_incident(env, server.feed, "inc-tn-flood", "thong-nhat", "Ngập đường Trần Hưng Đạo")
    banner = page.locator(".incident-alert[role=alert]")
    line = banner.locator('[data-incident-alert="inc-tn-flood"]')
    expect(line).to_contain_text(
        "KHẨN CẤP · Sự cố mới: Ngập đường Trần Hưng Đạo — Phường Thống Nhất", timeout=DEADLINE_MS
    )
    expect(banner.locator('[data-incident-alert="inc-qt-flood"]')).to_have_count(0)
    assert page.evaluate("window.__tones") >= 2  # an emergency: the two-tone signal, three times
    # Who was notified, on which channel, and who acknowledged from the message: on the timeline.
    at = env.seed.now + timedelta(minutes=2)
    env.repo.incidents.append_timeline(
        TimelineEvent(
            incident_id="inc-tn-flood",
            site="thong-nhat",
            at=at,
            actor="notify:sms",
            action="notified",
            detail="tn-truc-ban (opened)",
        )
    )
    env.repo.incidents.append_timeline(
        TimelineEvent(
            incident_id="inc-tn-flood",
            site="thong-nhat",
            at=at + timedelta(minutes=1),
            actor="contact:tn-truc-ban",
            action="acknowledged",
            detail="qua liên kết trong tin nhắn (sms)",
        )
    )
    line.locator(".incident-alert-view").click()
    expect(page.locator("#detail-title")).to_have_text("Ngập đường Trần Hưng Đạo")
    timeline = page.locator("#detail-timeline li")
    expect(timeline).to_contain_text(
        [
            "notify:sms — đã gửi thông báo: tn-truc-ban (opened)",
            "contact:tn-truc-ban — tiếp nhận: qua liên kết trong tin nhắn (sms)",
        ]
    )
    line.locator(".incident-alert-dismiss").click()
    expect(banner).to_have_count(0)
