"""Root fixtures. Server fixtures live in tests/servers/ (one plugin per server kind)."""

from __future__ import annotations

pytest_plugins: list[str] = []
