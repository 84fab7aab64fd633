"""Screenshots of the operations screen for docs/screen.md: the test seed (tests/integration/
test_api_support.py) served by uvicorn, Debian's Chromium through Playwright.

    PYTHONPATH=$PWD python3 scripts/screen_shots.py [OUT_DIR]     # default docs/screenshots
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from ops_center.web import SCREEN_PATH
from tests.integration.test_api_support import Server, sqlite_env
from tests.integration.test_web_screen import CHROMIUM, CHROMIUM_ARGS, log_in

WIDE = {"width": 1920, "height": 1080}
PHONE = {"width": 390, "height": 844}


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for env in sqlite_env(Path(tmp) / "shots.db", kpi_interval_s=1.0):
            with Server(env) as srv, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                shots = [
                    ("city", "leader", WIDE, "", None),
                    ("ward", "tn-staff", WIDE, "", None),
                    ("incident", "tn-staff", WIDE, "", "inc-tn-1"),
                    ("wall", "leader", WIDE, "?wall=1", None),
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
                    page.wait_for_timeout(1500)  # tiles of the offline layer and charts drawn
                    page.screenshot(path=str(out / f"{name}.png"))
                    ctx.close()
                    print(out / f"{name}.png")
                browser.close()


if __name__ == "__main__":
    main()
