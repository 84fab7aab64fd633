"""Temporary: the helpers moved to ``tests/support/ingest.py`` (docs/testing.md). This module only
re-exports them for test files written in parallel with the move; delete it once nothing imports
it (``grep -rn "test_ingest_support" tests``). It holds no tests."""

from __future__ import annotations

from tests.support.ingest import (
    REGISTRY,
    REPO,
    AckWatcher,
    Publisher,
    WorkerProcess,
    broker,
    broker_url,
    gateways,
    mqtt_client,
)
from tests.support.waiting import wait_until

__all__ = [
    "REGISTRY", "REPO", "AckWatcher", "Publisher", "WorkerProcess", "broker", "broker_url", "gateways",
    "mqtt_client", "wait_until"
]
