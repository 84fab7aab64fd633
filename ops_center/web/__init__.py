"""The operations screen: static HTML, CSS and JavaScript modules served by the ops center
API at ``/screen/`` (ops_center/api/app.py). No build step, no CDN: the city's own servers,
possibly offline. The files live in ``static/`` (shipped as package data), so the mount serves
nothing but them (not this module nor its bytecode)."""

from __future__ import annotations

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent / "static"
SCREEN_PATH = "/screen"
