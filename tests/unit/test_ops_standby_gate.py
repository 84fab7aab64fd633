"""The evaluator gate (ops_center/service/standby.py) with a scripted lock and a stand-in
service: standby until the lock is taken, leader after, stepping down only when the database
answers and another process holds the lock; people's actions adopted once, by the leader."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, cast

from ops_center.adapters.records import IncidentRecord, TimelineEvent
from ops_center.service.service import OpsService
from ops_center.service.standby import EvaluatorGate, LeadershipLost
from tests.support.waiting import wait_until

AT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
INC = IncidentRecord(id="inc-1", site="an-xa", kind="gas_leak", severity="critical", state="open",
                     title_vi="Rò rỉ khí", title_en="Gas leak", opened_at=AT, updated_at=AT)


class FakeService:
    def __init__(self) -> None:
        self.started = threading.Event()
        self.aborted = threading.Event()
        self.actions: list[Any] = []
        self.fatal: BaseException | None = None
        self.connected = True
        self.ready = True

    def start(self) -> None:
        self.started.set()

    def stop(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted.set()

    def on_action(self, act: Any, record: IncidentRecord) -> None:
        self.actions.append((act.action, act.by, record.id))


class ScriptedLock:
    def __init__(self) -> None:
        self.free = False
        self.alive = True  # the holder's session
        self.reachable = True
        self._held = False
        self.released = False

    @property
    def held(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        if not self.reachable:
            return False
        if self.free:
            self._held, self.free, self.alive = True, False, True
        return self._held and self.alive

    def check(self) -> bool:
        if not self.alive:
            self._held = False
        return self._held

    def release(self) -> None:
        self.released = True


def gate_with(lock: ScriptedLock, step_down_after_s: float = 60.0) -> tuple[EvaluatorGate, FakeService]:
    svc = FakeService()
    return EvaluatorGate(cast(OpsService, svc), lock, retry_s=0.01, step_down_after_s=step_down_after_s), svc


def test_standby_until_the_lock_is_free_then_leader() -> None:
    lock = ScriptedLock()
    gate, svc = gate_with(lock)
    gate.start()
    try:
        assert gate.role == "standby" and gate.ready and gate.broker_ok  # a ready standby serves
        assert not svc.started.wait(0.1)
        lock.free = True
        assert svc.started.wait(5)
        wait_until(lambda: gate.leader, timeout_s=5, what="leader")
        assert gate.took_over_at is not None
    finally:
        gate.stop()
    assert lock.released and gate.role == "stopped"


def test_a_leader_cut_off_from_the_database_keeps_going_one_whose_lock_was_taken_steps_down() -> None:
    lock = ScriptedLock()
    lock.free = True
    gate, svc = gate_with(lock)
    gate.start()
    try:
        assert svc.started.wait(5)
        lock.alive, lock.reachable = False, False  # the session is gone, the database too
        assert not svc.aborted.wait(0.2)
        assert gate.leader and gate.failure() is None
        lock.reachable = True  # the database answers: someone else holds the lock now
        assert svc.aborted.wait(5)
        assert isinstance(gate.failure(), LeadershipLost) and not gate.ready
    finally:
        gate.stop()


def test_a_leader_cut_off_longer_than_its_grace_steps_down() -> None:
    lock = ScriptedLock()
    lock.free = True
    gate, svc = gate_with(lock, step_down_after_s=0.3)
    gate.start()
    try:
        assert svc.started.wait(5)
        lock.alive, lock.reachable = False, False
        assert not svc.aborted.wait(0.1)
        assert svc.aborted.wait(5)
        assert isinstance(gate.failure(), LeadershipLost)
    finally:
        gate.stop()


def test_without_a_leadership_the_service_starts_at_once_and_takes_actions_directly() -> None:
    svc = FakeService()
    gate = EvaluatorGate(cast(OpsService, svc), None)
    gate.start()
    assert svc.started.is_set() and gate.leader
    act = type("Act", (), {"action": "acknowledge", "by": "truc-ban"})()
    gate.on_action(act, INC)  # type: ignore[arg-type]
    assert svc.actions == [("acknowledge", "truc-ban", "inc-1")]


def test_the_leader_adopts_peoples_actions_from_the_store_once() -> None:
    lock = ScriptedLock()
    gate, svc = gate_with(lock)

    def entry(action: str, actor: str) -> TimelineEvent:
        return TimelineEvent(incident_id="inc-1", site="an-xa", at=AT, actor=actor, action=action, id=1)

    gate.start()
    try:
        gate.adopt(INC, entry("acknowledged", "truc-ban"))  # a standby: the store has it
        assert svc.actions == []
        lock.free = True
        assert svc.started.wait(5)
        wait_until(lambda: gate.leader, timeout_s=5, what="leader")
        act = type("Act", (), {"action": "resolve", "by": "x"})()
        gate.on_action(act, INC)  # type: ignore[arg-type]  # HA: through the store only
        for action, actor in (("acknowledged", "truc-ban"), ("resolved", "system"),
                              ("opened", "rule:gas-lel"), ("annotated", "truc-ban"),
                              ("assigned", "truc-ban"), ("resolved", "truc-ban")):
            gate.adopt(INC, entry(action, actor))
        assert svc.actions == [("acknowledge", "truc-ban", "inc-1"), ("note", "truc-ban", "inc-1"),
                               ("resolve", "truc-ban", "inc-1")]
    finally:
        gate.stop()
