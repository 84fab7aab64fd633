"""Helpers for the ops service's tests (no tests here): a gateway as the broker sees it
(``Publisher``), a batch of the An Xá gas gateway, and a test rig on a migrated ops store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract.codec import encode
from contract.models import Reading, TelemetryBatch
from ops_center.adapters.factory import open_repository
from ops_center.adapters.repository import OpsRepository
from ops_center.service.service import OpsService

GW = "ax-gw-02"  # gas detectors ax-gas-01/02 (10 s), fire detectors, a stack, a power meter
SITE = "an-xa"


class Publisher:
    """A gateway as the broker sees it: QoS 1 publishes, waited for."""

    def __init__(self, url: str) -> None:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-gw-{id(self)}",
                                  protocol=mqtt.MQTTv5)
        self.client.connect(host, int(port))
        self.client.loop_start()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def batch(seq: int, at: datetime, gas_lel: float, *, gateway: str = GW) -> bytes:
    """One 10-second batch of the gateway: gas on ax-gas-01, the rest quiet."""
    readings = [Reading("ax-gas-01", "gas_lel", at, gas_lel), Reading("ax-gas-02", "gas_lel", at, 0.0),
                Reading("ax-fire-01", "fire_temp_c", at, 30.0), Reading("ax-fire-01", "smoke_pct", at, 0.0),
                Reading("ax-fire-02", "fire_temp_c", at, 30.0), Reading("ax-fire-02", "smoke_pct", at, 0.0)]
    return encode(TelemetryBatch(v=1, gateway=gateway, seq=seq, sent_at=at + timedelta(seconds=1),
                                 readings=readings))


class _Rig(Protocol):
    services: list[OpsService]


R = TypeVar("R", bound=_Rig)


@contextmanager
def opened_rig(db_url: str, make: Callable[[OpsRepository], R]) -> Iterator[R]:
    """The rig `make` builds on the ops store at `db_url`, migrated; on the way out the rig's
    services are stopped, then the store is closed."""
    repo = open_repository(db_url)
    repo.migrate()
    try:
        rig = make(repo)
        try:
            yield rig
        finally:
            for svc in rig.services:
                svc.stop()
    finally:
        repo.close()
