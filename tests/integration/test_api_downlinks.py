"""``set_pump`` and ``set_valve`` end to end, like ``set_lamp`` (test_api_commands.py): the API's
command link → a real Mosquitto with the generated ACL → the real edge agent of the gateway
(simulated driver) → ``cmd/result`` → the command applied, audited, scoped; bad arguments 422."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops_center.commands.desk import CommandDesk
from tests.integration.test_api_commands import V1, agent_url, env, secured, simulated_gateway
from tests.support.api import Env, auth
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
__all__ = ["env", "secured"]

PUMP = {"sensor": "tn-drain-01", "name": "set_pump", "args": {"on": True}, "ttl_s": 120}
VALVE = {"sensor": "ax-ww-01", "name": "set_valve", "args": {"open": True}, "ttl_s": 120}


@pytest.fixture
def gateways(tmp_path: Path, secured: tuple[int, dict[str, str]]) -> Iterator[None]:
    with (simulated_gateway(tmp_path / "tn-gw-02", agent_url(secured, "tn-gw-02"), "tn-gw-02"),
          simulated_gateway(tmp_path / "ax-gw-01", agent_url(secured, "ax-gw-01"), "ax-gw-01")):
        yield


def send_and_wait(env: Env, user: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = auth(env.tokens[user])
    r = env.client.post(V1, json=body, headers=headers)
    assert r.status_code == 202, r.text
    ident = r.json()["id"]

    def state() -> str:
        value: str = env.client.get(f"{V1}/{ident}", headers=headers).json()["state"]
        return value

    wait_until(lambda: state() == "applied", 10, f"the edge applied {body['name']}")
    done: dict[str, Any] = env.client.get(f"{V1}/{ident}", headers=headers).json()
    return done


def test_pump_and_bypass_valve_commands_are_applied_by_their_devices(env: Env, gateways: None) -> None:
    desk: CommandDesk = env.app.state.commands
    assert desk.link is not None and desk.link.subscribed.wait(10)
    pump = send_and_wait(env, "tn-staff", PUMP)
    assert (pump["gateway"], pump["site"], pump["detail"]) == ("tn-gw-02", "thong-nhat", "applied")
    assert send_and_wait(env, "tn-staff", {**PUMP, "args": {"auto": True}})["state"] == "applied"
    valve = send_and_wait(env, "ax-manager", VALVE)
    assert (valve["gateway"], valve["site"], valve["args"]) == ("ax-gw-01", "an-xa", {"open": True})
    audit = env.repo.users.audit_entries(1000, 0).items
    for actor, ident in (("tn-staff", pump["id"]), ("ax-manager", valve["id"])):
        assert any(a.actor == actor and a.action == "command.send" and a.outcome == "ok"
                   and a.target == f"command:{ident}" for a in audit)


def test_pump_and_valve_scope_role_and_arguments_are_checked(env: Env) -> None:
    desk: CommandDesk = env.app.state.commands
    assert desk.link is not None and desk.link.subscribed.wait(10)
    assert env.client.post(V1, json=VALVE, headers=auth(env.tokens["tn-staff"])).status_code == 404
    assert env.client.post(V1, json=PUMP, headers=auth(env.tokens["ax-manager"])).status_code == 404
    r = env.client.post(V1, json=PUMP, headers=auth(env.tokens["leader"]))
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    for user, body, code in (
        ("tn-staff", {**PUMP, "args": {"on": "yes"}}, "command_args"),
        ("tn-staff", {**PUMP, "args": {"on": True, "rpm": 900}}, "command_args"),
        ("tn-staff", {**PUMP, "args": {}}, "command_args"),
        ("tn-staff", {**PUMP, "name": "set_valve", "args": {"open": True}}, "command_unsupported"),
        ("tn-staff", {**PUMP, "sensor": "tn-flood-01"}, "command_unsupported"),
        ("ax-manager", {**VALVE, "args": {"open": 1}}, "command_args"),
        ("ax-manager", {**VALVE, "args": {"auto": True}}, "command_args"),
        ("ax-manager", {**VALVE, "sensor": "ax-stack-01"}, "command_unsupported"),
        ("ax-manager", {**VALVE, "name": "set_pump", "args": {"on": True}}, "command_unsupported"),
    ):
        r = env.client.post(V1, json=body, headers=auth(env.tokens[user]))
        assert (r.status_code, r.json()["error"]) == (422, code), (body, r.text)
        assert set(r.json()["detail"]) == {"vi", "en"}
    assert env.client.get(V1, headers=auth(env.tokens["admin"])).json()["total"] == 0
