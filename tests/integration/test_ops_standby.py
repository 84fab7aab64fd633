"""The two pieces of H3 (docs/reliability.md) against a real PostgreSQL: the evaluator lock
(one holder; free again when its session ends, also by a crash) and the store's change feed
(a committed step reaches every listening process's stream once; a replay does not)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from contract.registry import load_registry
from ops_center.adapters.factory import open_repository
from ops_center.adapters.leadership import AdvisoryLeadership
from ops_center.adapters.records import AlertRecord, GatewayStatusRecord, IncidentRecord, TimelineEvent
from ops_center.adapters.repository import OpsRepository, StepWrite
from ops_center.service.change_feed import ChangeFeedListener, StoreFedFeed
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

REGISTRY = load_registry()
AT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


@pytest.fixture
def repo(postgres_db: str) -> Iterator[OpsRepository]:
    r = open_repository(postgres_db)
    r.migrate()
    yield r
    r.close()


def test_one_holder_and_the_lock_is_free_once_the_holders_session_ends(postgres_db: str) -> None:
    a, b = AdvisoryLeadership(postgres_db), AdvisoryLeadership(postgres_db)
    try:
        assert a.try_acquire()
        assert not b.try_acquire() and b.reachable  # reached the database: someone holds it
        assert a.check()
        a.release()
        assert b.try_acquire()
        # A crash: the holder's session ends without a word (its backend terminated).
        with psycopg.connect(postgres_db, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'smartward-ops-leader:ops'")
        assert not b.check()
        assert a.try_acquire()
        other = AdvisoryLeadership(postgres_db, name="other-service")
        assert other.try_acquire()  # another service name: another lock
        other.release()
    finally:
        a.release()
        b.release()


def _step(seq: int) -> StepWrite:
    at = AT + timedelta(seconds=seq)
    incident = IncidentRecord(id="inc-1", site="an-xa", kind="gas_leak", severity="critical", state="open",
                              title_vi="Rò rỉ khí", title_en="Gas leak", opened_at=AT, updated_at=at)
    alert = AlertRecord(id="al-1", rule="gas-lel", site="an-xa", gateway="ax-gw-02", sensor="ax-gas-01",
                        metric="gas_lel", severity="critical", state="active", opened_at=AT, updated_at=at,
                        incident_id="inc-1", value=25.0)
    entry = TimelineEvent(incident_id="inc-1", site="an-xa", at=AT, actor="rule:gas-lel", action="opened",
                          detail="Mở / Opened [alert al-1]")
    status = GatewayStatusRecord(gateway="ax-gw-02", site="an-xa", state="online", last_seen=at)
    return StepWrite(alerts=(alert,), incidents=(incident,), timeline=(entry,), gateways=(status,))


def test_a_committed_step_reaches_every_listening_stream_once(repo: OpsRepository, postgres_db: str) -> None:
    feeds = [StoreFedFeed(), StoreFedFeed()]
    listeners = [ChangeFeedListener(postgres_db, repo.incidents, repo.gateways, f, poll_s=0.1) for f in feeds]
    adopted: list[tuple[str, str, str]] = []
    listeners[1].on_incident = lambda rec, e: adopted.append((rec.id, e.action, e.actor))
    for listener in listeners:
        listener.start()
    try:
        for listener in listeners:
            assert listener.listening.wait(10)
        # A local publish of a store-fed kind is not the stream's: the store announces it.
        feeds[0].publish("alert", "an-xa", {"local": True})
        feeds[0].publish("kpi", "an-xa", {"local": True})
        repo.incidents.commit_step(_step(1))
        repo.incidents.commit_step(_step(1))  # a replay: nothing new, nothing announced
        for f in feeds:
            wait_until(lambda f=f: len(f.recent()) >= (4 if f is feeds[0] else 3), timeout_s=10,
                       what="the step's three events on the stream")
        repo.incidents.commit_step(_step(2))  # the same state at a later time: no new announcement either
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('smartward_feed', '{\"k\": \"gateway\", \"id\": \"zz\"}')")
            conn.execute("SELECT pg_notify('smartward_feed', 'not json')")
        wait_until(lambda: all(lst.received >= 5 for lst in listeners), timeout_s=10,
                   what="the odd notifications received")
        for f in feeds:
            kinds = sorted(e.kind for e in f.recent() if e.kind != "kpi")
            assert kinds == ["alert", "gateway", "incident"], kinds
        assert adopted == [("inc-1", "opened", "rule:gas-lel")]  # every committed entry, once
        inc = next(e for e in feeds[1].recent() if e.kind == "incident")
        assert inc.data["action"] == "opened" and inc.data["alert_id"] == "al-1"
        assert inc.data["notify"] is True
        assert isinstance(inc.data["incident"], IncidentRecord) and inc.data["incident"].id == "inc-1"
        alert = next(e for e in feeds[1].recent() if e.kind == "alert")
        assert alert.data["action"] == "raised" and alert.site == "an-xa"
        cleared = AlertRecord(id="al-1", rule="gas-lel", site="an-xa", gateway="ax-gw-02",
                              sensor="ax-gas-01", metric="gas_lel", severity="critical", state="cleared",
                              opened_at=AT, updated_at=AT + timedelta(minutes=1),
                              cleared_at=AT + timedelta(minutes=1), incident_id="inc-1", value=1.0)
        repo.incidents.commit_step(StepWrite(alerts=(cleared,)))
        wait_until(lambda: sum(e.kind == "alert" for e in feeds[1].recent()) == 2, timeout_s=10,
                   what="the clearing on the stream")
        assert [e.data["action"] for e in feeds[1].recent() if e.kind == "alert"] == ["raised", "cleared"]
    finally:
        for listener in listeners:
            listener.stop()


def test_a_stream_client_of_a_store_fed_feed_receives_the_events() -> None:
    feed = StoreFedFeed()

    async def client() -> list[Any]:
        sub, _ = feed.subscribe(lambda site: True)
        threading.Thread(target=feed.publish_from_store, args=(7, "incident", "an-xa", {"x": 1})).start()
        got = await sub.next_batch(5)
        sub.close()
        return got or []

    assert [(e.id, e.data) for e in asyncio.run(client())] == [(f"store-{7 << 20}", {"x": 1})]


def test_last_event_id_resumes_on_any_process_that_heard_every_change_after_it() -> None:
    a, b = StoreFedFeed(), StoreFedFeed()
    a.heard_from(0)
    b.heard_from(0)
    for n in (1, 2, 3):
        for f in (a, b):
            f.publish_from_store(n, "incident", "an-xa", {"n": n})
    a.publish("kpi", "an-xa", {"local": "a"})
    last = a.recent()[1].id  # the client saw change 2 on process a
    assert [e.id for e in a.recent()[:3]] == [e.id for e in b.recent()]  # one numbering

    async def resume(f: StoreFedFeed, last_id: str) -> tuple[bool, list[Any]]:
        sub, replay = f.subscribe(lambda site: True, last_id)
        sub.close()
        return replay.resync, [e.data for e in replay.events]

    assert asyncio.run(resume(b, last)) == (False, [{"n": 3}])
    assert asyncio.run(resume(b, a.recent()[-1].id)) == (False, [])  # a's KPI: nothing missed on b
    late = StoreFedFeed()
    late.heard_from(2)  # started listening after change 2
    assert asyncio.run(resume(late, f"store-{1 << 20}"))[0] is True
    assert asyncio.run(resume(late, last))[0] is False
    assert asyncio.run(resume(b, "0a1b2c3d-5"))[0] is True  # an id of a process-local feed


def test_the_listener_comes_back_after_its_session_is_cut_and_older_ids_resync(
        repo: OpsRepository, postgres_db: str) -> None:
    feed = StoreFedFeed()
    listener = ChangeFeedListener(postgres_db, repo.incidents, repo.gateways, feed, poll_s=0.1)
    listener.start()
    try:
        wait_until(lambda: listener.sessions == 1, timeout_s=10, what="listening")
        repo.incidents.commit_step(_step(1))
        wait_until(lambda: len(feed.recent()) == 3, timeout_s=10, what="the first step's events")
        before_gap = feed.recent()[-1].id
        with psycopg.connect(postgres_db, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'smartward-ops-feed'")
            # A change while nobody listens: lost to this process's stream.
            admin.execute("INSERT INTO gateway_status (gateway, site, state, last_seen) "
                          "VALUES ('ax-gw-03', 'an-xa', 'online', now())")
        wait_until(lambda: listener.sessions == 2, timeout_s=15, what="listening again")
        entry = TimelineEvent(incident_id="inc-1", site="an-xa", at=AT + timedelta(minutes=5),
                              actor="truc-ban", action="acknowledged")
        repo.incidents.commit_step(StepWrite(timeline=(entry,)))
        wait_until(lambda: len(feed.recent()) == 4, timeout_s=10, what="a change after the reconnect")
        assert feed.recent()[-1].data["action"] == "acknowledged"

        async def resume(last_id: str) -> bool:
            sub, replay = feed.subscribe(lambda site: True, last_id)
            sub.close()
            return replay.resync

        # Before the gap: what this process missed cannot be replayed. After it: resumes.
        assert asyncio.run(resume(before_gap)) is True
        assert asyncio.run(resume(feed.recent()[-1].id)) is False
    finally:
        listener.stop()
