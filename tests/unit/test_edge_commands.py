"""Operator commands on the edge, with fakes: the handler's decisions (apply, expired, not
ours, bad payload, redelivery) and the agent's round trip from its cmd topic to a result."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.codec import decode_command_result, encode
from contract.models import Command, CommandResult
from contract.registry import load_registry
from edge.agent import Agent
from edge.clock import ScaledClock
from edge.commands import CommandHandler
from edge.drivers.simulated import SimulatedDriver
from edge.drivers.synthetic import SyntheticDriver
from edge.outbox import MemoryOutbox
from edge.publisher import CommandReceived
from edge.settings import EdgeSettings
from simulators.fleet import GatewaySimulator
from tests.support.edge import MemoryConnection, running

REG = load_registry()
GW = "tn-gw-03"  # the Thống Nhất lighting cabinet
LAMPS = [s.id for s in REG.sensors_of(GW)]
WALL = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
SIM_T = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # 19:00 in Nam Định: lamps on by schedule


class RecordingTarget:
    def __init__(self, answer: tuple[bool, str] = (True, "applied"), fail: bool = False) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], datetime]] = []
        self.answer = answer
        self.fail = fail

    def command(self, name: str, sensor: str, args: Mapping[str, Any], *, at: datetime) -> tuple[bool, str]:
        self.calls.append((name, sensor, dict(args), at))
        if self.fail:
            raise RuntimeError("relay stuck")
        return self.answer


def cmd(ident: str = "c-1", *, sensor: str = "tn-lamp-07", expires: timedelta = timedelta(minutes=5),
        args: dict[str, Any] | None = None, name: str = "set_lamp") -> bytes:
    return encode(Command(v=1, id=ident, name=name, sensor=sensor,
                          args={"on": True, "dim_pct": 60} if args is None else args,
                          expires_at=WALL + expires))


def handler(target: RecordingTarget | None, **options: Any) -> CommandHandler:
    return CommandHandler(GW, LAMPS, target, wall=lambda: WALL, **options)


def test_command_for_a_lamp_of_this_gateway_is_applied_through_the_driver() -> None:
    target = RecordingTarget()
    out = handler(target).handle(cmd(), SIM_T)
    assert out.applied and not out.duplicate
    assert out.result == CommandResult(v=1, id="c-1", ok=True, detail="applied", ts=WALL)
    # The driver gets the agent's clock (simulated time), not the wall clock.
    assert target.calls == [("set_lamp", "tn-lamp-07", {"on": True, "dim_pct": 60}, SIM_T)]


def test_redelivered_command_is_answered_again_without_touching_the_device() -> None:
    target = RecordingTarget()
    h = handler(target)
    first = h.handle(cmd("c-9"), SIM_T)
    again = h.handle(cmd("c-9"), SIM_T + timedelta(seconds=1))
    assert again.duplicate and not again.applied
    assert again.result == first.result
    assert len(target.calls) == 1


def test_remembered_ids_are_bounded() -> None:
    target = RecordingTarget()
    h = handler(target, remember=2)
    for ident in ("a", "b", "c", "a"):
        h.handle(cmd(ident), SIM_T)
    # "a" was forgotten when "c" came: a redelivery that late is applied again.
    assert [c[1] for c in target.calls] == ["tn-lamp-07"] * 4


def test_expired_command_is_refused() -> None:
    target = RecordingTarget()
    out = handler(target).handle(cmd(expires=timedelta(seconds=-1)), SIM_T)
    assert (out.result.ok, out.result.detail, out.applied) == (False, "expired", False)
    assert target.calls == []


def test_command_for_another_gateways_sensor_is_refused() -> None:
    target = RecordingTarget()
    out = handler(target).handle(cmd(sensor="qt-lamp-01"), SIM_T)
    assert (out.result.ok, out.result.detail) == (False, "unknown_sensor")
    assert target.calls == []


def test_driver_without_command_hook_answers_unsupported() -> None:
    out = handler(None).handle(cmd(), SIM_T)
    assert (out.result.ok, out.result.detail) == (False, "unsupported_command")


def test_failing_driver_gets_an_answer_and_the_handler_goes_on() -> None:
    h = handler(RecordingTarget(fail=True))
    out = h.handle(cmd("c-1"), SIM_T)
    assert not out.result.ok and out.result.detail.startswith("driver_error: RuntimeError")
    assert h.handle(cmd("c-2", sensor="nope-1"), SIM_T).result.detail == "unknown_sensor"


@pytest.mark.parametrize(
    ("raw", "ident", "reason"),
    [
        (b"", "unknown", "bad_json"),
        (b"{not json", "unknown", "bad_json"),
        (b"\xff\xfe", "unknown", "bad_json"),
        (b'{"v":1,"id":"c-7","name":"set_lamp"}', "c-7", "schema"),
        (b'{"v":2,"id":"c-8","name":"set_lamp","sensor":"tn-lamp-07","args":{},'
         b'"expires_at":"2026-11-28T11:05:00Z"}', "c-8", "schema"),
        (b'{"v":1,"id":"c-9","name":"set_lamp","sensor":"tn-lamp-07","args":{},'
         b'"expires_at":"2026-11-28T11:05:00"}', "c-9", "schema"),  # no offset
        (b'[1, 2]', "unknown", "schema"),
        (b'{"v":1,"id":' + b'"x' * 200_000 + b'"}', "unknown", "oversize"),
    ],
)
def test_bad_payload_gets_a_failed_result_never_an_exception(raw: bytes, ident: str, reason: str) -> None:
    target = RecordingTarget()
    out = handler(target).handle(raw, SIM_T)
    assert out.result.id == ident and not out.result.ok
    assert out.result.detail.startswith(f"bad_payload: {reason}")
    assert len(out.result.detail) <= 200
    assert target.calls == []


def test_simulated_driver_switches_the_simulated_lamp() -> None:
    sim = GatewaySimulator(REG, GW, start=SIM_T)
    driver = SimulatedDriver(sim)
    before = [r.value for r in driver.poll(SIM_T + timedelta(minutes=10))
              if r.sensor == "tn-lamp-07" and r.metric == "lamp_power_w"]
    out = CommandHandler(GW, LAMPS, driver, wall=lambda: WALL).handle(
        cmd(args={"on": False}), SIM_T + timedelta(minutes=10))
    assert out.result.ok
    after = [r.value for r in driver.poll(SIM_T + timedelta(minutes=30))
             if r.sensor == "tn-lamp-07" and r.metric == "lamp_power_w"]
    assert before and min(before) > 50
    assert after and max(after) == 0.0
    bad = CommandHandler(GW, LAMPS, driver, wall=lambda: WALL).handle(
        cmd("c-2", args={"on": True, "dim_pct": 150}), SIM_T + timedelta(minutes=31))
    assert (bad.result.ok, bad.result.detail) == (False, "bad_args")


# --- the agent: cmd topic -> handler -> cmd/result ---------------------------------------------


class CommandPublisher(MemoryConnection):
    """A fake broker connection that can deliver commands and records the results."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[CommandResult] = []
        self.changed = threading.Condition()

    def set_link(self, up: bool) -> None:
        if up and not self.connected:
            self.connect()

    def publish_batch(self, seq: int, payload: bytes) -> bool:
        return False

    def publish_status(self, payload: bytes) -> bool:
        return self.connected

    def publish_result(self, payload: bytes) -> bool:
        if not self.connected:
            return False
        with self.changed:
            self.results.append(decode_command_result(payload))
            self.changed.notify_all()
        return True

    def wait_results(self, n: int, timeout_s: float = 10.0) -> list[CommandResult]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.results) >= n, timeout_s), self.results
            return list(self.results)


@contextmanager
def running_agent(tmp_path: Path, pub: CommandPublisher, target: RecordingTarget) -> Iterator[Agent]:
    clock = ScaledClock(speed=60.0, start=SIM_T)
    settings = EdgeSettings(edge_outbox=str(tmp_path / "outbox"), edge_status_interval_s=1.0)
    agent = Agent(settings=settings, gateway=GW, clock=clock, driver=SyntheticDriver([], start=SIM_T),
                  outbox=MemoryOutbox(max_bytes=10**6), connect=pub.bind,
                  commands=CommandHandler(GW, LAMPS, target, wall=lambda: WALL))
    with running(agent, join_timeout_s=30):
        yield agent


def test_agent_answers_each_command_on_its_result_topic(tmp_path: Path) -> None:
    pub, target = CommandPublisher(), RecordingTarget()
    with running_agent(tmp_path, pub, target) as agent:
        agent.wait_until(lambda s: s.connected, 10)
        pub.sink(CommandReceived(cmd("c-1")))
        pub.sink(CommandReceived(cmd("c-1")))  # QoS 1 redelivery
        pub.sink(CommandReceived(b"garbage"))
        results = pub.wait_results(3)
        stats = agent.wait_until(lambda s: s.counters.command_results_published >= 3, 10)
    assert [(r.id, r.ok, r.detail) for r in results[:2]] == [("c-1", True, "applied")] * 2
    assert (results[2].ok, results[2].detail.split(":")[0]) == (False, "bad_payload")
    assert len(target.calls) == 1
    c = stats.counters
    counts = (c.commands_received, c.commands_applied, c.commands_duplicate, c.commands_rejected)
    assert counts == (3, 1, 1, 1)


def test_result_waits_for_the_next_connection_when_the_link_dropped(tmp_path: Path) -> None:
    pub, target = CommandPublisher(), RecordingTarget()
    with running_agent(tmp_path, pub, target) as agent:
        agent.wait_until(lambda s: s.connected, 10)
        pub.disconnect()
        pub.sink(CommandReceived(cmd("c-5")))  # answered while the connection is gone
        agent.wait_until(lambda s: s.counters.commands_applied == 1, 10)
        assert pub.results == []
        pub.connect()
        results = pub.wait_results(1)
    assert [(r.id, r.ok) for r in results] == [("c-5", True)]
