"""Downlinks beyond lamps: which kind takes which command (contract/commands.py), and the
simulated pumps and bypass valve obeying them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.commands import judge
from contract.registry import load_registry
from simulators.fleet import GatewaySimulator

REG = load_registry()
NOON = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)  # 12:00 local, dry: the pumps stand


@pytest.mark.parametrize(("kind", "name", "args", "verdict"), [
    ("drainage_level", "set_pump", {"on": True}, "ok"),
    ("drainage_level", "set_pump", {"auto": True}, "ok"),
    ("drainage_level", "set_pump", {"on": 1}, "bad_args"),
    ("drainage_level", "set_pump", {"on": True, "speed": 3}, "bad_args"),
    ("drainage_level", "set_pump", {"auto": False}, "bad_args"),
    ("drainage_level", "set_valve", {"open": True}, "unsupported"),
    ("wastewater", "set_valve", {"open": False}, "ok"),
    ("wastewater", "set_valve", {"open": "yes"}, "bad_args"),
    ("wastewater", "set_valve", {}, "bad_args"),
    ("wastewater", "set_pump", {"on": True}, "unsupported"),
    ("street_light", "set_pump", {"on": True}, "unsupported"),
    ("street_light", "set_lamp", {"on": True, "dim_pct": 60}, "ok"),
    ("air_quality", "set_valve", {"open": True}, "unsupported"),
])
def test_each_kind_takes_its_own_command_with_its_own_arguments(
    kind: str, name: str, args: dict[str, Any], verdict: str
) -> None:
    assert judge(kind, name, args) == verdict


def _series(batch: list[Any], sensor: str, metric: str) -> dict[datetime, float]:
    return {r.ts: r.value for r in batch if r.sensor == sensor and r.metric == metric}


def test_set_pump_runs_the_simulated_pumps_until_auto() -> None:
    sim = GatewaySimulator(REG, "tn-gw-02", start=NOON)
    assert sim.command("set_pump", "tn-drain-01", {"on": True}, at=NOON + timedelta(minutes=10)) == (
        True, "applied")
    pump = _series(sim.advance(NOON + timedelta(minutes=30)), "tn-drain-01", "pump_on")
    assert pump[NOON + timedelta(minutes=5)] == 0.0
    assert set(v for t, v in pump.items() if t >= NOON + timedelta(minutes=12)) == {1.0}
    assert sim.command("set_pump", "tn-drain-01", {"auto": True}, at=NOON + timedelta(minutes=31))[0]
    later = _series(sim.advance(NOON + timedelta(hours=1)), "tn-drain-01", "pump_on")
    assert set(v for t, v in later.items() if t >= NOON + timedelta(minutes=33)) == {0.0}
    assert sim.command("set_pump", "tn-flood-01", {"on": True}, at=NOON) == (False, "unsupported_command")
    assert sim.command("set_pump", "tn-drain-01", {"on": "yes"}, at=NOON) == (False, "bad_args")


def test_set_valve_diverts_the_outlet_to_the_holding_pond() -> None:
    sim = GatewaySimulator(REG, "ax-gw-01", start=NOON)
    assert sim.command("set_valve", "ax-ww-01", {"open": True}, at=NOON + timedelta(minutes=10)) == (
        True, "applied")
    assert sim.command("set_valve", "ax-ww-01", {"open": False}, at=NOON + timedelta(minutes=20))[0]
    out = _series(sim.advance(NOON + timedelta(minutes=30)), "ax-ww-01", "ww_flow_out_m3h")
    ten, twenty = NOON + timedelta(minutes=10), NOON + timedelta(minutes=20)
    before = [v for t, v in out.items() if t < ten]
    diverted = [v for t, v in out.items() if ten <= t < twenty]
    after = [v for t, v in out.items() if t >= twenty]
    assert before and diverted and after
    assert min(before) > 0 and set(diverted) == {0.0} and min(after) > 0
    assert sim.command("set_valve", "ax-pwr-01", {"open": True}, at=NOON) == (False, "unsupported_command")
