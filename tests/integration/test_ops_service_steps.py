"""The ops repository's step writes against real SQLite and PostgreSQL: one evaluation step is
one transaction (incidents, timeline, alerts, gateway status and the service's snapshot), a
replayed step stores nothing twice and says what was already there, and migration 0003
de-duplicates timelines written before the entry key existed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from contract.registry import load_registry
from ops_center.adapters.factory import open_repository
from ops_center.adapters.records import AlertRecord, GatewayStatusRecord, IncidentRecord, TimelineEvent
from ops_center.adapters.repository import (
    OpsRepository,
    RepositoryError,
    RepositoryUnavailable,
    ServiceSnapshot,
    StepOutcome,
    StepWrite,
)
from ops_center.adapters.sql_incidents import SqlIncidentRepository
from ops_center.adapters.sqlite import SqliteOpsRepository
from ops_center.feed import Feed
from ops_center.rulebook.loader import load_patterns, load_rules
from ops_center.service.actions import HumanAction, mutation
from ops_center.service.persist import ChangeWriter
from ops_center.service.service import OpsService
from ops_center.service.settings import OpsServiceSettings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
REGISTRY = load_registry()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, OpsRepository]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ops.db'}"
    else:
        url = request.getfixturevalue("postgres_db")
    repo = open_repository(url)
    repo.migrate()
    yield url, repo
    repo.close()


def incident(iid: str = "inc-1", state: str = "open") -> IncidentRecord:
    return IncidentRecord(id=iid, site="an-xa", kind="gas_leak", severity="critical", state=state,  # type: ignore[arg-type]
                          title_vi="Rò rỉ khí", title_en="Gas leak", opened_at=T0, updated_at=T0)


def entry(action: str = "opened", detail: str | None = "Mở / Opened", at: datetime = T0) -> TimelineEvent:
    return TimelineEvent(incident_id="inc-1", site="an-xa", at=at, actor="rule:gas-lel", action=action,
                         detail=detail)


def alert(state: str = "active", at: datetime = T0) -> AlertRecord:
    return AlertRecord(id="al-1", rule="gas-lel", site="an-xa", severity="critical", state=state,  # type: ignore[arg-type]
                       opened_at=T0, updated_at=at, sensor="ax-gas-01", metric="gas_lel", incident_id="inc-1")


def status(state: str = "online", at: datetime = T0) -> GatewayStatusRecord:
    return GatewayStatusRecord(gateway="ax-gw-02", site="an-xa", state=state, last_seen=at, outbox_batches=0,
                               outbox_oldest=None, dropped_batches=0, last_seq=1, agent=None)


def step(**kw: object) -> StepWrite:
    base: dict[str, object] = {"alerts": (alert(),), "incidents": (incident(),),
                               "timeline": (entry(), entry("alert_added", None)),
                               "gateways": (status(),), "snapshot": ServiceSnapshot("ops", b"state-1")}
    base.update(kw)
    return StepWrite(**base)  # type: ignore[arg-type]


def test_a_step_is_committed_whole_or_not_at_all(store: tuple[str, OpsRepository]) -> None:
    _, repo = store
    refused = replace(alert(), id="al-2", severity="bogus")  # type: ignore[arg-type]  # a CHECK refuses it
    with pytest.raises(RepositoryError):
        repo.incidents.commit_step(step(alerts=(alert(), refused)))
    # Nothing of the step: not the incident written before the bad row, not its timeline,
    # not the snapshot written after it.
    assert repo.incidents.get_incident("inc-1") is None
    assert repo.incidents.list_alerts(None, None, 10, 0).total == 0
    assert repo.gateways.list_gateway_status(None) == []
    assert repo.incidents.load_service_state("ops") is None

    outcome = repo.incidents.commit_step(step())
    assert outcome.timeline_new == (True, True) and outcome.alerts_before == {}
    detail = repo.incidents.get_incident("inc-1")
    assert detail is not None and [e.action for e in detail.timeline] == ["opened", "alert_added"]
    assert [a.id for a in detail.alerts] == ["al-1"]
    assert repo.incidents.load_service_state("ops") == b"state-1"


def test_a_replayed_step_stores_nothing_twice_and_reports_what_was_there(
        store: tuple[str, OpsRepository]) -> None:
    _, repo = store
    repo.incidents.commit_step(step())
    cleared = alert("cleared", T0 + timedelta(minutes=2))
    cleared_entry = entry("alert_cleared", "x", T0 + timedelta(minutes=2))
    repo.incidents.commit_step(StepWrite(alerts=(cleared,), timeline=(cleared_entry,),
                               gateways=(status("offline", T0 + timedelta(minutes=3)),)))

    replay = repo.incidents.commit_step(step(snapshot=ServiceSnapshot("ops", b"state-2")))
    assert replay.timeline_new == (False, False)
    before = replay.alerts_before["al-1"]
    assert before.updated_at == T0 + timedelta(minutes=2) and before.state == "cleared/critical"
    gw = replay.gateways_before["ax-gw-02"]
    assert gw.updated_at == T0 + timedelta(minutes=3) and gw.state == "offline"
    # The store kept the newer rows: a replay never moves anything back.
    assert repo.incidents.list_alerts(None, None, 10, 0).items[0].state == "cleared"
    assert repo.gateways.list_gateway_status(None)[0].state == "offline"
    detail = repo.incidents.get_incident("inc-1")
    assert detail is not None and len(detail.timeline) == 3
    assert repo.incidents.load_service_state("ops") == b"state-2"
    # A timeline entry without a detail is keyed too (NULL is not "distinct" here).
    assert repo.incidents.append_timeline(entry("alert_added", None)) is None


def _forget_0003(url: str, repo: OpsRepository) -> list[int | None]:
    """The database as it was before migration 0003, holding duplicate timeline entries."""
    if url.startswith("sqlite:"):
        import sqlite3

        with sqlite3.connect(url[len("sqlite:///"):]) as conn:
            conn.execute("DROP INDEX incident_events_entry_key")
            conn.execute("DELETE FROM ops_schema_migrations WHERE version = 3")
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP INDEX incident_events_entry_key")
            conn.execute("DELETE FROM ops_schema_migrations WHERE version = 3")
    entries = (entry(), entry(), entry(), entry("alert_added", None), entry("alert_added", None),
               entry("note", "a long note " * 400), entry("note", "a long note " * 400))
    return [repo.incidents.append_timeline(e) for e in entries]  # no key yet: every one is a row


def test_migration_0003_removes_duplicate_timeline_entries_and_is_idempotent(
        store: tuple[str, OpsRepository]) -> None:
    url, repo = store
    repo.incidents.upsert_incident(incident())
    ids = _forget_0003(url, repo)
    detail = repo.incidents.get_incident("inc-1")
    assert detail is not None and len(detail.timeline) == 7 and None not in ids

    repo.migrate()
    repo.migrate()  # applied once, recorded: a no-op
    detail = repo.incidents.get_incident("inc-1")
    assert detail is not None
    assert [e.action for e in detail.timeline] == ["opened", "alert_added", "note"]
    assert [e.id for e in detail.timeline] == [ids[0], ids[3], ids[5]]  # the first of each was kept
    assert repo.incidents.append_timeline(entry()) is None  # and the key is in force


# --- the service's writer over a real store ---------------------------------------------------------


class FlakySqlite(SqliteOpsRepository):
    """The real SQLite adapter, made to fail on demand: ``down`` steps answer unavailable, and
    any step writing gateway ``refused`` is refused for good (as a constraint would)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.down = 0
        self.incidents = FlakyIncidents(self)


class FlakyIncidents(SqlIncidentRepository):
    def __init__(self, db: FlakySqlite) -> None:
        super().__init__(db)
        self.flaky = db

    def commit_step(self, step: StepWrite) -> StepOutcome:
        if self.flaky.down:
            self.flaky.down -= 1
            raise RepositoryUnavailable("sqlite: database is locked")
        if any(g.gateway == "refused" for g in step.gateways):
            raise RepositoryError("sqlite: CHECK constraint failed")
        return super().commit_step(step)


def test_a_step_waits_whole_for_a_database_that_is_down_and_acks_only_once_committed(tmp_path: Path) -> None:
    repo = FlakySqlite(tmp_path / "ops.db")
    repo.migrate()
    feed = Feed()
    writer = ChangeWriter(repo.incidents, REGISTRY, feed)
    committed: list[bool] = []
    writer.gateway_status(status("offline", T0 + timedelta(minutes=1)), changed=True)
    writer.checkpoint(ServiceSnapshot("ops", b"state"), committed.append)
    repo.down = 2
    assert not writer.flush() and not writer.flush()
    # Nothing of the step yet: no row, no snapshot, no event, nothing to acknowledge.
    assert writer.pending == 1 and committed == [] and feed.recent() == []
    assert repo.gateways.list_gateway_status(None) == [] and repo.incidents.load_service_state("ops") is None
    assert writer.flush()
    assert committed == [True] and writer.pending == 0
    assert [e.kind for e in feed.recent()] == ["gateway"]
    assert repo.incidents.load_service_state("ops") == b"state"
    repo.close()


def test_a_step_refused_for_good_is_written_row_by_row(tmp_path: Path) -> None:
    repo = FlakySqlite(tmp_path / "ops.db")
    repo.migrate()
    writer = ChangeWriter(repo.incidents, REGISTRY, Feed())
    committed: list[bool] = []
    writer.gateway_status(status("online"), changed=False)
    writer.gateway_status(replace(status(), gateway="refused"), changed=False)
    writer.checkpoint(ServiceSnapshot("ops", b"state"), committed.append)
    assert writer.flush()
    # The rest of the step:
    assert [g.gateway for g in repo.gateways.list_gateway_status(None)] == ["ax-gw-02"]
    assert committed == [True] and repo.incidents.load_service_state("ops") == b"state"
    assert writer.stats.refused == 1
    repo.close()


def test_an_action_adopted_while_the_store_is_down_is_adopted_again_as_stored(tmp_path: Path) -> None:
    """A person's action reaches the worker (called here directly; the service is not started)
    while its own step cannot be committed: the committed record stands in, and once the step
    is committed the stored row, which that step moved on (a recurrence reopened it), is
    adopted: store and rule state end equal."""
    repo = FlakySqlite(tmp_path / "ops.db")
    repo.migrate()
    settings = OpsServiceSettings(mqtt_url="mqtt://127.0.0.1:9", db_url=f"sqlite:///{tmp_path / 'ops.db'}")
    svc = OpsService(settings, REGISTRY, repo, Feed(), rules=load_rules(registry=REGISTRY),
                     patterns=load_patterns(), name="t", client_id="t")

    def reading(k: int, value: float) -> None:
        at = T0 + timedelta(seconds=10 * k)
        changes = svc.engine.ingest([("ax-gas-01", "gas_lel", at, value, "good")], at, "ax-gw-02", at)
        svc._record(changes, svc.manager.apply(changes, at))

    reading(0, 25.0)
    assert svc._flush()
    (inc,) = svc.manager.incidents()
    act = HumanAction(incident_id=inc.id, action="resolve", by="tran.van.b", at=T0 + timedelta(seconds=5),
                      note="Đã khóa van")
    stored = repo.incidents.apply_incident_action(inc.id, mutation(act))
    assert stored is not None and stored.state == "resolved"
    reading(1, 60.0)  # worse, recorded, not committed yet
    repo.down = 2
    svc._apply_action(act, stored)
    assert svc.manager.get(inc.id).state == "resolved"  # the committed record, for now
    assert not svc._flush() and svc._flush()
    row = repo.incidents.get_incident(inc.id)
    assert row is not None and row.incident.state == "open"  # the step reopened it
    svc._readopt()
    assert svc.manager.get(inc.id).state == row.incident.state and not svc._deferred
    repo.close()


def test_an_action_that_found_the_queue_full_is_taken_by_the_worker_later(tmp_path: Path) -> None:
    """``on_action`` with the worker's queue full leaves the action for the worker (here called
    directly) instead of dropping it: the rule state then agrees with the store."""
    repo = FlakySqlite(tmp_path / "ops.db")
    repo.migrate()
    settings = OpsServiceSettings(mqtt_url="mqtt://127.0.0.1:9", db_url=f"sqlite:///{tmp_path / 'ops.db'}")
    svc = OpsService(settings, REGISTRY, repo, Feed(), rules=load_rules(registry=REGISTRY),
                     patterns=load_patterns(), name="t", client_id="t")
    changes = svc.engine.ingest([("ax-gas-01", "gas_lel", T0, 25.0, "good")], T0, "ax-gw-02", T0)
    svc._record(changes, svc.manager.apply(changes, T0))
    assert svc._flush()
    (inc,) = svc.manager.incidents()
    act = HumanAction(incident_id=inc.id, action="acknowledge", by="tran.van.b", at=T0 + timedelta(seconds=5))
    stored = repo.incidents.apply_incident_action(inc.id, mutation(act))
    assert stored is not None
    svc._thread = threading.Thread(target=lambda: None)  # a worker that looks alive...
    svc._thread.is_alive = lambda: True  # type: ignore[method-assign]
    for _ in range(svc._queue.maxsize):  # ... with its queue full
        svc._queue.put_nowait("abort")
    svc.settings = settings.model_copy(update={"ops_action_timeout_s": 0.01})
    svc.on_action(act, stored)
    assert svc.manager.get(inc.id).state == "open"  # not yet
    svc._catch_up()
    assert svc.manager.get(inc.id).state == "acknowledged" == stored.state
    repo.close()
