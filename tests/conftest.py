"""Root fixtures. Server fixtures live in tests/servers/ (one plugin per server kind)."""

from __future__ import annotations

pytest_plugins: list[str] = [
    "tests.servers.modbus",
    "tests.servers.mosquitto",
    "tests.servers.rabbitmq",
    "tests.servers.postgres",
    "tests.servers.timescale",
    "tests.servers.victoria",
    "tests.servers.smtp",
]
