"""Screenshots of the operations screen for docs/screen.md: the test seed (tests/integration/
tests/support/api.py) served by uvicorn, Debian's Chromium through Playwright.

    PYTHONPATH=$PWD python3 scripts/screen_shots.py [OUT_DIR]     # default docs/screenshots
"""

from __future__ import annotations

import math
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright

from ops_center.web import SCREEN_PATH
from tests.integration.test_web_screen import CHROMIUM, CHROMIUM_ARGS, log_in
from tests.support.api import Env, Server, sqlite_env, sqlite_rows

WIDE = {"width": 1920, "height": 1080}
PHONE = {"width": 390, "height": 844}


def day_of_readings(env: Env, db: Path) -> None:
    """24 h of 5-minute rollups for Thống Nhất's PM2.5, rain and flood depth (a rainy evening),
    older than the seed's own last two hours, so the trend charts have a day to draw."""
    now = env.seed.now.replace(second=0, microsecond=0)
    rows: list[list[object]] = []
    for k in range(25, 288):
        t = now - timedelta(minutes=5 * k)
        h = k / 12
        rain = max(0.0, 35 * math.exp(-(((h - 6) / 1.2) ** 2)))
        for sensor, metric, v in (
            ("tn-aq-01", "pm25", 38 + 22 * math.sin(h / 24 * 2 * math.pi) + 6 * math.sin(h)),
            ("tn-rain-01", "rain_mm_h", rain),
            ("tn-flood-01", "water_level_cm", max(0.0, 28 * math.exp(-(((h - 5.2) / 1.6) ** 2)))),
        ):
            rows.append([t, "thong-nhat", sensor, metric, v, v, v, 5, v * 5])
    sqlite_rows(db).insert(
        "readings_1m", ["bucket", "site", "sensor", "metric", "avg", "min", "max", "count", "sum"], rows
    )


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "shots.db"
        for env in sqlite_env(db, kpi_interval_s=1.0):
            day_of_readings(env, db)
            with Server(env) as srv, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                shots = [
                    ("city", "leader", WIDE, "", None),
                    ("ward", "tn-staff", WIDE, "", None),
                    ("incident", "tn-staff", WIDE, "", "inc-tn-1"),
                    ("wall", "leader", WIDE, "?wall=1&every=4", None),
                    ("phone", "tn-staff", PHONE, "", None),
                ]
                for name, user, size, query, incident in shots:
                    ctx = browser.new_context(viewport=size, locale="vi-VN")
                    page = ctx.new_page()
                    page.goto(f"{srv.url}{SCREEN_PATH}/{query}")
                    log_in(page, user)
                    page.wait_for_selector("[data-map] [data-marker]")
                    if incident:
                        page.click(f'#incidents li[data-id="{incident}"]')
                        page.wait_for_selector("#detail:not([hidden])")
                    if name == "wall":
                        page.wait_for_selector('body[data-wall-view="thong-nhat"]', timeout=15_000)
                    else:
                        page.select_option("#trend-sensor", "tn-aq-01")
                    page.wait_for_timeout(1500)  # the map and the charts drawn
                    page.screenshot(path=str(out / f"{name}.png"))
                    ctx.close()
                    print(out / f"{name}.png")
                browser.close()


if __name__ == "__main__":
    main()
