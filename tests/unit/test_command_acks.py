"""The command link's in-order ack queue (``InOrderAcks``, ops_center/commands/link.py):
results handled one at a time in arrival order, each acked only once handled, a failing one
kept unacknowledged and retried with a bounded backoff, deliveries of an earlier connection
left to the broker's redelivery."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from mqttlink.acks import Delivery, InOrderAcks
from ops_center.adapters.commands import MemoryCommandStore
from ops_center.commands.desk import CommandDesk
from ops_center.commands.link import CommandLink
from ops_center.feed import Feed


class Recorder:
    """A fake store behind the handler: ``down`` makes every attempt fail; ``blocked`` makes
    one delivery fail until it is released."""

    def __init__(self) -> None:
        self.down = False
        self.blocked: set[int] = set()
        self.handled: list[int] = []
        self.attempts: list[tuple[int, float]] = []
        self.acked: list[int] = []
        self._cond = threading.Condition()

    def handle(self, d: Delivery) -> str | None:
        with self._cond:
            self.attempts.append((d.mid, time.monotonic()))
            self._cond.notify_all()
            if self.down or d.mid in self.blocked:
                return "store down"
            self.handled.append(d.mid)
            return None

    def ack(self, d: Delivery) -> None:
        with self._cond:
            self.acked.append(d.mid)
            self._cond.notify_all()

    def wait(self, what: str, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout_s), (what, self.attempts, self.acked)

    def attempts_of(self, mid: int) -> list[float]:
        return [t for m, t in self.attempts if m == mid]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def acks(rec: Recorder) -> Iterator[InOrderAcks]:
    q = InOrderAcks(rec.handle, rec.ack, retry_min_s=0.02, retry_max_s=0.08, name="test-acks")
    q.new_generation(1)
    q.start()
    yield q
    q.stop(timeout_s=5)


def d(mid: int, generation: int = 1) -> Delivery:
    return Delivery("smartward/v1/thong-nhat/tn-gw-01/cmd/result", b"{}", mid, 1, generation)


def test_results_are_acked_in_arrival_order_once_handled(acks: InOrderAcks, rec: Recorder) -> None:
    for mid in (5, 3, 9, 1):
        acks.put(d(mid))
    rec.wait("all acked", lambda: len(rec.acked) == 4)
    assert rec.handled == rec.acked == [5, 3, 9, 1]
    assert acks.pending == 0 and acks.retries == 0


def test_a_failing_result_stays_unacked_and_holds_back_the_later_ones(
        acks: InOrderAcks, rec: Recorder) -> None:
    rec.blocked.add(1)
    for mid in (1, 2, 3):
        acks.put(d(mid))
    rec.wait("three attempts at the first", lambda: len(rec.attempts_of(1)) >= 3)
    assert rec.acked == [] and acks.pending == 3, "nothing acked while the head is not recorded"
    assert rec.handled == [], "the later ones wait: PUBACKs leave in arrival order (MQTT 5 §4.6)"
    rec.blocked.clear()
    rec.wait("all acked", lambda: len(rec.acked) == 3)
    assert rec.acked == [1, 2, 3] and acks.pending == 0
    assert acks.retries >= 3


def test_retries_back_off_doubling_up_to_the_maximum(acks: InOrderAcks, rec: Recorder) -> None:
    rec.down = True
    acks.put(d(1))
    rec.wait("six attempts", lambda: len(rec.attempts_of(1)) >= 6, timeout_s=10)
    rec.down = False
    times = rec.attempts_of(1)[:6]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.02, 0.04, 0.08, 0.08, 0.08: each wait at least its delay, and never past the maximum
    # by more than scheduling noise.
    for gap, delay in zip(gaps, (0.02, 0.04, 0.08, 0.08, 0.08), strict=True):
        assert gap >= delay * 0.9, gaps
    assert max(gaps) < 0.08 + 0.5, gaps


def test_a_reconnect_drops_the_earlier_connection_s_results_for_redelivery(
        acks: InOrderAcks, rec: Recorder) -> None:
    rec.down = True
    acks.put(d(1))
    acks.put(d(2))
    rec.wait("the head was tried", lambda: bool(rec.attempts_of(1)))
    acks.new_generation(2)  # the connection was lost: the broker redelivers 1 and 2
    assert acks.pending == 0
    acks.put(d(3, generation=1))  # late news from the lost connection: it comes again too
    assert acks.pending == 0
    rec.down = False
    acks.put(d(1, generation=2))
    acks.put(d(7, generation=2))
    rec.wait("the redelivered ones acked", lambda: len(rec.acked) == 2)
    assert rec.acked == [1, 7] and rec.handled == [1, 7]


def test_stopping_leaves_the_unrecorded_results_unacked(rec: Recorder) -> None:
    q = InOrderAcks(rec.handle, rec.ack, retry_min_s=10.0, retry_max_s=10.0, name="test-acks")
    q.new_generation(1)
    q.start()
    rec.down = True
    q.put(d(1))
    q.put(d(2))
    rec.wait("the head was tried", lambda: bool(rec.attempts_of(1)))
    started = time.monotonic()
    q.stop(timeout_s=5)
    assert time.monotonic() - started < 2, "stop must wake a worker waiting to retry"
    assert rec.acked == [] and q.pending == 2


def test_a_handler_that_raises_is_logged_acked_and_does_not_stop_the_worker(
        rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    def handle(x: Delivery) -> str | None:
        if x.mid == 1:
            raise RuntimeError("a bug")
        return rec.handle(x)

    q = InOrderAcks(handle, rec.ack, retry_min_s=0.01, retry_max_s=0.01, name="test-acks")
    q.new_generation(1)
    q.start()
    try:
        q.put(d(1))
        q.put(d(2))
        rec.wait("both acked", lambda: len(rec.acked) == 2)
    finally:
        q.stop(timeout_s=5)
    assert rec.acked == [1, 2] and q.errors == 1
    assert "handling the delivery 1" in caplog.text


def test_the_desk_exports_its_link_s_pending_results_as_gauges() -> None:
    desk = CommandDesk(MemoryCommandStore(), Feed(), clock=lambda: datetime.now(UTC))
    registry = CollectorRegistry()
    desk.register_metrics(registry)  # no link: nothing to export
    assert registry.get_sample_value("smartward_api_command_results_pending") is None
    desk.link = CommandLink("mqtt://127.0.0.1:1883", client_id="test-gauges", on_result=desk.on_result)
    desk.register_metrics(registry)
    assert registry.get_sample_value("smartward_api_command_results_pending") == 0
    assert registry.get_sample_value("smartward_api_command_result_retries") == 0


def test_a_result_the_store_refuses_for_good_is_acked_only_an_unavailable_store_is_retried() -> None:
    """Issue #10 (containment): a command result the store can never take (PostgreSQL refuses
    NUL in text, a value out of range) is counted and acknowledged, not retried forever in
    front of every later result; only an unavailable store keeps it for another try."""
    from ops_center.adapters.repository import RepositoryError, RepositoryUnavailable

    raised: list[Exception] = []

    def on_result(*_a: object) -> None:
        raise raised[-1]

    link = CommandLink("mqtt://127.0.0.1:1883", client_id="test-poison", on_result=on_result)
    payload = (b'{"v": 1, "id": "cmd-1", "ok": false, "detail": "x", '
               b'"ts": "2026-12-07T08:00:00Z"}')
    delivery = Delivery("smartward/v1/thong-nhat/tn-gw-01/cmd/result", payload, 1, 1, 0)
    raised.append(RepositoryError("postgresql: PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert link._handle(delivery) is None and link.bad_results == 1
    raised.append(RepositoryUnavailable("postgresql: connection refused"))
    assert link._handle(delivery) is not None and link.bad_results == 1
