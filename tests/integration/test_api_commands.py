"""Operator commands end to end: the API (its own command link, account ``ops-api``) → a real
Mosquitto with the generated password file and ACL → the real edge agent of the Thống Nhất
lighting cabinet (simulated driver) → ``cmd/result`` → the command's state in the store.
Scope and role are the API's: another ward's staff gets 404, a city leader 403."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contract.registry import load_registry
from edge.agent import Agent
from edge.app import open_agent
from edge.drivers.simulated import open_simulation
from ops_center.commands.desk import CommandDesk
from ops_center.security.mqtt_credentials import generate, read_credentials
from tests.integration.test_edge_mqtt import fast_settings
from tests.servers.mosquitto import MosquittoFactory
from tests.support.api import Env, auth, sqlite_env
from tests.support.edge import running
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

REG = load_registry()
GW, LAMP = "tn-gw-03", "tn-lamp-07"
SIM_T = datetime(2025, 11, 28, 12, 0, tzinfo=UTC)
V1 = "/api/v1/commands"
SET_LAMP: dict[str, Any] = {"sensor": LAMP, "name": "set_lamp", "args": {"on": True, "dim_pct": 60},
                            "ttl_s": 120}


@pytest.fixture
def secured(mosquitto: MosquittoFactory, tmp_path: Path) -> tuple[int, dict[str, str]]:
    creds = tmp_path / "mqtt"
    generate(REG, creds)
    server = mosquitto(credentials=creds)
    return server.port, read_credentials(creds / "credentials.txt")


@contextmanager
def simulated_gateway(tmp_path: Path, url: str, gateway: str = GW) -> Iterator[Agent]:
    """The gateway's real edge agent on the simulated driver at real speed (outbox and MQTT
    session in ``tmp_path``), connected to `url` and past its first status."""
    sim = open_simulation(REG, gateway, speed=1.0, start=SIM_T)
    with (open_agent(fast_settings(tmp_path, url), REG, gateway, clock=sim.clock, driver=sim.driver,
                     link=sim.driver) as agent,
          running(agent)):
        agent.wait_until(lambda s: s.connected and s.counters.status_published >= 1, 10)
        yield agent


def agent_url(secured: tuple[int, dict[str, str]], gateway: str) -> str:
    """The gateway's own account on the secured broker."""
    port, accounts = secured
    return f"mqtt://{gateway}:{accounts[gateway]}@127.0.0.1:{port}"


@pytest.fixture
def lighting_cabinet(tmp_path: Path, secured: tuple[int, dict[str, str]]) -> Iterator[None]:
    with simulated_gateway(tmp_path, agent_url(secured, GW)):
        yield


@pytest.fixture
def env(tmp_path: Path, secured: tuple[int, dict[str, str]]) -> Iterator[Env]:
    port, accounts = secured
    yield from sqlite_env(tmp_path / "api.db", commands_mqtt_url=f"mqtt://ops-api:{accounts['ops-api']}@127.0.0.1:{port}")


def test_ward_staff_switches_a_lamp_and_the_command_is_applied(env: Env, lighting_cabinet: None) -> None:
    desk: CommandDesk = env.app.state.commands
    assert desk.link is not None and desk.link.subscribed.wait(10), "the results subscription was refused"
    assert env.client.get("/readyz").json()["checks"]["commands"] is True
    staff = auth(env.tokens["tn-staff"])
    r = env.client.post(V1, json=SET_LAMP, headers=staff)
    assert r.status_code == 202, r.text
    sent = r.json()
    assert (sent["state"], sent["gateway"], sent["site"], sent["created_by"]) == (
        "pending", GW, "thong-nhat", "tn-staff")

    def state() -> str:
        got = env.client.get(f"{V1}/{sent['id']}", headers=staff)
        assert got.status_code == 200, got.text
        value: str = got.json()["state"]
        return value

    wait_until(lambda: state() == "applied", 10, "the edge applied the command")
    done = env.client.get(f"{V1}/{sent['id']}", headers=staff).json()
    assert done["detail"] == "applied" and done["result_at"] is not None
    listed = env.client.get(V1, params={"site": "thong-nhat", "state": "applied"}, headers=staff).json()
    assert [c["id"] for c in listed["items"]] == [sent["id"]]
    # Another ward sees nothing of it.
    other = auth(env.tokens["qt-staff"])
    assert env.client.get(f"{V1}/{sent['id']}", headers=other).status_code == 404
    assert env.client.get(V1, headers=other).json()["items"] == []
    assert env.client.get(V1, params={"site": "thong-nhat"}, headers=other).json()["items"] == []
    audit = env.repo.users.audit_entries(1000, 0).items
    assert any(a.actor == "tn-staff" and a.action == "command.send" and a.outcome == "ok"
               and a.target == f"command:{sent['id']}" for a in audit)


def test_command_scope_role_and_arguments_are_checked_before_sending(env: Env) -> None:
    desk: CommandDesk = env.app.state.commands
    assert desk.link is not None and desk.link.subscribed.wait(10)
    # Another ward's staff: the lamp is not theirs to see.
    r = env.client.post(V1, json=SET_LAMP, headers=auth(env.tokens["qt-staff"]))
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    # A city leader sees it, and may not switch it.
    r = env.client.post(V1, json=SET_LAMP, headers=auth(env.tokens["leader"]))
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    staff = auth(env.tokens["tn-staff"])
    for body, code in (
        ({**SET_LAMP, "sensor": "tn-aq-01"}, "command_unsupported"),  # an air-quality station
        ({**SET_LAMP, "name": "reboot"}, "command_unsupported"),
        ({**SET_LAMP, "args": {"on": True, "dim_pct": 150}}, "command_args"),
        ({**SET_LAMP, "args": {"on": "yes"}}, "command_args"),
        ({**SET_LAMP, "args": {"dim_pct": 10}}, "command_args"),
        ({**SET_LAMP, "ttl_s": 0}, "validation"),
    ):
        r = env.client.post(V1, json=body, headers=staff)
        assert (r.status_code, r.json()["error"]) == (422, code), (body, r.text)
        assert set(r.json()["detail"]) == {"vi", "en"}
    # Nothing was recorded or sent by any of these.
    assert env.client.get(V1, headers=auth(env.tokens["admin"])).json()["total"] == 0
    audit = env.repo.users.audit_entries(1000, 0).items
    assert any(a.actor == "leader" and a.action == "denied:device.command" for a in audit)
    assert any(a.actor == "qt-staff" and a.action == "scope_denied" for a in audit)


def test_pending_command_without_an_answer_shows_expired(env: Env) -> None:
    """No edge agent runs: the command stays unanswered and expires on its TTL."""
    desk: CommandDesk = env.app.state.commands
    assert desk.link is not None and desk.link.subscribed.wait(10)
    staff = auth(env.tokens["qt-staff"])
    lamp = next(s.id for s in REG.sensors.values()
                if s.site == "quang-trung" and s.spec.kind == "street_light")
    r = env.client.post(V1, json={**SET_LAMP, "sensor": lamp, "ttl_s": 10}, headers=staff)
    assert r.status_code == 202, r.text
    ident = r.json()["id"]
    assert env.client.get(V1, params={"state": "pending"}, headers=staff).json()["total"] == 1
    # The API's clock moves past the expiry (injected clock: no waiting).
    later = env.app.state.smartward.clock()
    env.app.state.smartward.clock = lambda: later.replace(year=later.year + 1)
    assert env.client.get(f"{V1}/{ident}", headers=staff).json()["state"] == "expired"
    assert env.client.get(V1, params={"state": "expired"}, headers=staff).json()["total"] == 1
    assert env.client.get(V1, params={"state": "pending"}, headers=staff).json()["total"] == 0


def test_without_a_command_link_sending_answers_503(tmp_path: Path) -> None:
    for env in sqlite_env(tmp_path / "nolink.db"):
        r = env.client.post(V1, json=SET_LAMP, headers=auth(env.tokens["tn-staff"]))
        assert (r.status_code, r.json()["error"]) == (503, "broker_unavailable")
        assert "commands" not in env.client.get("/readyz").json()["checks"]
