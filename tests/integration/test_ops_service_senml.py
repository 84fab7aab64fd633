"""SenML (RFC 8428) in the ops service, against a real Mosquitto: the readings of a third-party
device's pack go to the same rules as telemetry (the same alert and incident for the same
readings), a redelivered pack raises nothing again, and a malformed pack is a counted refusal,
never a crash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from ops_center.security.mqtt_credentials import service_acl
from ops_center.service.service import OpsService, ServiceProgress
from tests.integration.test_ops_service import WAIT_S, Rig, gas_alerts, through
from tests.support.ops import GW, SITE, Publisher, batch, opened_rig

pytestmark = pytest.mark.integration

LEL = [0.0, 0.0, 35.0, 36.0]  # crosses 20 %LEL (critical) at the third instant


@pytest.fixture
def rig(mosquitto: Any, tmp_path: Path) -> Iterator[Rig]:
    db_url = f"sqlite:///{tmp_path / 'ops.db'}"
    with opened_rig(db_url, lambda repo: Rig(mosquitto(), db_url, repo)) as r:
        yield r


def pack(at: datetime, gas_lel: float) -> bytes:
    """The readings of ``batch`` (tests/support/ops.py) at one instant, as a SenML pack."""
    return json.dumps([
        {"bn": "urn:dev:sw:ax-gas-01:", "bt": at.timestamp(), "n": "gas_lel", "v": gas_lel},
        {"bn": "urn:dev:sw:ax-gas-02:", "n": "gas_lel", "v": 0},
        {"bn": "urn:dev:sw:ax-fire-01:", "n": "fire_temp_c", "u": "Cel", "v": 30},
        {"n": "smoke_pct", "v": 0},
        {"bn": "urn:dev:sw:ax-fire-02:", "n": "fire_temp_c", "v": 30},
        {"n": "smoke_pct", "v": 0},
    ]).encode()


def settled(svc: OpsService, senml: int) -> ServiceProgress:
    return svc.wait_until(lambda p: p.counters.senml >= senml and p.queue_depth == 0
                          and p.pending_acks == 0, WAIT_S)


@pytest.mark.parametrize("kind", ["telemetry", "senml"])
def test_a_senml_reading_over_a_threshold_opens_the_same_alert_as_telemetry(
        rig: Rig, gateway: Publisher, kind: str) -> None:
    svc = rig.service()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    instants = [base + timedelta(seconds=10 * k) for k in range(1, len(LEL) + 1)]
    for k, (at, lel) in enumerate(zip(instants, LEL, strict=True), start=1):
        if kind == "telemetry":
            gateway.send(topics.telemetry(SITE, GW), batch(k, at, lel))
        else:
            gateway.send(topics.senml(SITE, GW), pack(at, lel))
    if kind == "telemetry":
        through(svc, len(LEL))
    else:
        progress = settled(svc, len(LEL))
        assert progress.counters.invalid == 0 and progress.counters.readings == 6 * len(LEL)
    (alert,) = gas_alerts(rig.repo)
    # Reading time: the alert opened at the reading that crossed 20 %LEL, whatever the topic.
    assert (alert.state, alert.severity, alert.opened_at) == ("active", "critical", instants[2])
    (incident,) = rig.repo.incidents.list_incidents(None, None, 10, 0).items
    assert (incident.kind, incident.site, incident.state) == ("gas_leak", SITE, "open")
    assert alert.incident_id == incident.id
    if kind == "senml":
        # A redelivered pack (or a device sending it again) is evaluated once.
        before = svc.progress().counters.alert_changes
        gateway.send(topics.senml(SITE, GW), pack(instants[2], LEL[2]))
        progress = settled(svc, len(LEL) + 1)
        assert progress.counters.alert_changes == before
        assert len(gas_alerts(rig.repo)) == 1


def test_a_malformed_senml_pack_is_a_counted_refusal_and_the_service_goes_on(
        rig: Rig, gateway: Publisher) -> None:
    svc = rig.service()
    now = datetime.now(UTC).replace(microsecond=0)
    ok = {"bn": "urn:dev:sw:ax-gas-01:", "bt": now.timestamp(), "n": "gas_lel", "v": 1}
    poison = [
        b"",
        b"[{nope",
        b"\xff\xfe[]",
        b"[" * 100_000 + b"]" * 100_000,  # nesting far beyond the recursion limit
        b'{"n": "x"}',
        json.dumps([{**ok, "u": "ppm"}]).encode(),  # a unit other than the catalog's
        json.dumps([{**ok, "bn": "urn:dev:sw:tn-aq-01:", "n": "pm25"}]).encode(),  # another gateway's
        json.dumps([{**ok, "v": "35"}]).encode(),
        b'[{"bn": "urn:dev:sw:ax-gas-01:", "n": "gas_lel", "v": NaN}]',
        json.dumps([{**ok, "bt": 1e300}]).encode(),
        b"[" + b" " * 264_000 + b"]",  # over 256 KiB
    ]
    for payload in poison:
        gateway.send(topics.senml(SITE, GW), payload)
    gateway.send(topics.senml("quang-trung", GW), pack(now, 50.0))  # under another site
    progress = settled(svc, len(poison))
    assert progress.counters.invalid == len(poison) + 1 and progress.counters.failed == 0
    assert svc.fatal is None and svc.ready and not gas_alerts(rig.repo)
    gateway.send(topics.senml(SITE, GW), pack(now, 45.0))  # a good pack still raises
    settled(svc, len(poison) + 1)
    (alert,) = gas_alerts(rig.repo)
    assert (alert.severity, alert.opened_at) == ("emergency", now)


def test_the_ops_account_may_read_senml() -> None:
    acl = service_acl("ops")
    assert "topic read smartward/v1/+/+/senml" in acl
    assert "topic read $share/ops/smartward/v1/+/+/senml" in acl
