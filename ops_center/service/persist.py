"""Writing what the rules decided: alerts, incidents and their timeline, gateway status, the
rule-state snapshot; then telling the live stream.

The feed carries the records (``AlertRecord``, ``IncidentRecord``, ``GatewayStatusRecord``) as
they were written; the stream route renders them with the API's schemas
(ops_center/api/render.py): the service never imports the API.

One evaluation step is ONE transaction (``IncidentRepository.commit_step``): a crash leaves either
the whole step or none of it. The service records a step's changes, optionally attaches its
snapshot (:meth:`ChangeWriter.checkpoint`), and :meth:`ChangeWriter.flush` commits the steps in
order. A database that is down (``RepositoryUnavailable``) stops the flush at the failing step,
which is retried first next time (the service meanwhile takes no new message and acknowledges
nothing, so the broker holds the rest). A step the database refuses for good
(``RepositoryError``) is retried write by write, so one bad row costs only itself (logged,
counted, skipped).

Replays (a restart re-evaluates what the last snapshot lacks; alert and incident ids are
deterministic): the rows are upserts and timeline entries have a key (migration 0003), so the
store is unchanged by a replay. The live stream must not hear of a replayed change twice
either: the feed hears of a change only after its step is committed, and only when the step
found it new — an incident change whose timeline entry was not stored yet, an alert change
newer than the stored alert, a gateway status newer than the stored one.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract.bounds import safe_text
from contract.registry import Registry
from ops_center.adapters.ports import IncidentRepository
from ops_center.adapters.records import (
    AlertRecord,
    GatewayStatusRecord,
    IncidentRecord,
    NotificationRecord,
    ResolvedNotice,
    TimelineEvent,
)
from ops_center.adapters.repository import (
    RepositoryError,
    RepositoryUnavailable,
    ServiceSnapshot,
    StepOutcome,
    StepWrite,
    StoredVersion,
)
from ops_center.domain.alerts import Alert, AlertChange
from ops_center.domain.incidents import Incident, IncidentChange
from ops_center.feed import EventKind, Feed
from ops_center.notify.planner import NotificationPlanner

logger = logging.getLogger(__name__)

AfterCommit = Callable[[bool], None]  # called with True once committed, False when refused for good


@dataclass(slots=True)
class WriterStats:
    steps_committed: int = 0
    alerts_written: int = 0
    incidents_written: int = 0
    timeline_written: int = 0
    timeline_replayed: int = 0  # already stored: skipped (a replay after a restart)
    gateway_status_written: int = 0
    snapshots_written: int = 0
    refused: int = 0  # permanent errors: the write skipped
    failed: int = 0  # steps that raised something else than a RepositoryError (then row by row)
    unavailable: int = 0  # transient failures (retried)
    feed_events: int = 0
    feed_replays_suppressed: int = 0  # changes already stored before: not published again


@dataclass(slots=True)
class _AlertEvent:
    alert: Alert
    data: dict[str, Any]


@dataclass(slots=True)
class _IncidentEvent:
    timeline_index: int
    site: str
    data: dict[str, Any]


@dataclass(slots=True)
class _GatewayEvent:
    status: GatewayStatusRecord
    data: dict[str, Any]


@dataclass(slots=True)
class _Step:
    alerts: dict[str, AlertRecord] = field(default_factory=dict)
    incidents: dict[str, IncidentRecord] = field(default_factory=dict)
    timeline: list[TimelineEvent] = field(default_factory=list)
    gateways: dict[str, GatewayStatusRecord] = field(default_factory=dict)
    snapshot: ServiceSnapshot | None = None
    after: AfterCommit | None = None
    # The outbox rows the step's incident changes cause (issue #13), in the same transaction.
    notifications: list[NotificationRecord] = field(default_factory=list)
    resolved: list[ResolvedNotice] = field(default_factory=list)
    # The feed events, in the order the changes happened.
    events: list[_AlertEvent | _IncidentEvent | _GatewayEvent] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.alerts or self.incidents or self.timeline or self.gateways or self.snapshot
                    or self.notifications or self.resolved)

    def write(self) -> StepWrite:
        return StepWrite(alerts=tuple(self.alerts.values()), incidents=tuple(self.incidents.values()),
                         timeline=tuple(self.timeline), gateways=tuple(self.gateways.values()),
                         snapshot=self.snapshot, notifications=tuple(self.notifications),
                         resolved=tuple(self.resolved))


def _alert_replayed(before: StoredVersion | None, alert: Alert) -> bool:
    """The stored alert already shows this change (or a later one): it was committed, and
    published, before a restart. ``updated_at`` is the change's reading time and only moves
    forward for one alert id."""
    if before is None:
        return False
    return before.updated_at > alert.updated_at or (
        before.updated_at == alert.updated_at and before.state == f"{alert.state}/{alert.severity}")


def _gateway_replayed(before: StoredVersion | None, status: GatewayStatusRecord) -> bool:
    if before is None:
        return False
    return before.updated_at > status.last_seen or (
        before.updated_at == status.last_seen and before.state == status.state)


class ChangeWriter:
    """Owned by the service's worker thread."""

    def __init__(self, incidents: IncidentRepository, registry: Registry, feed: Feed | None, *,
                 alert_cache: int = 50_000, planner: NotificationPlanner | None = None,
                 on_notifications: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.incidents = incidents
        self.planner = planner
        self.on_notifications = on_notifications  # the sender's wake-up, after a commit
        self._clock = clock
        self.registry = registry
        self.feed = feed
        self.stats = WriterStats()
        self._queue: deque[_Step] = deque()
        self._open = _Step()
        # The newest Alert object per id: re-linking alerts to the incident that absorbed
        # them (a merge) needs the whole row. Bounded (LRU); a miss only leaves the old link.
        self._alerts: OrderedDict[str, Alert] = OrderedDict()
        self._alert_cache = alert_cache

    @property
    def pending(self) -> int:
        """Steps waiting to be committed (the one being recorded included)."""
        return len(self._queue) + (0 if self._open.empty else 1)

    # --- recording a step ------------------------------------------------------------------------

    def record(self, alert_changes: Sequence[AlertChange], incident_changes: Sequence[IncidentChange],
               incident_of: Callable[[str], str | None]) -> None:
        """Add changes to the step being recorded (after the incident manager has seen the
        alert changes, so ``incident_of`` gives each alert its final incident)."""
        step = self._open
        for ch in alert_changes:
            self._remember(ch.alert)
        touched: dict[str, Alert] = {ch.alert.id: ch.alert for ch in alert_changes}
        for ic in incident_changes:
            for aid in ic.alert_ids:
                if aid not in touched and (cached := self._alerts.get(aid)) is not None:
                    touched[aid] = cached
        for ic in incident_changes:
            step.incidents[ic.incident.id] = IncidentRecord.from_domain(ic.incident)  # the latest wins
        first_entry = len(step.timeline)
        for ic in incident_changes:
            step.timeline.append(TimelineEvent.from_domain(ic.incident, ic.entry))
        records: dict[str, AlertRecord] = {}
        for aid, alert in touched.items():
            records[aid] = step.alerts[aid] = AlertRecord.from_domain(alert, incident_of(aid))
        if self.planner is not None and incident_changes:
            rows, resolved = self.planner.plan(incident_changes, list(records.values()), self._clock())
            step.notifications += rows
            step.resolved += resolved
        if self.feed is None:
            return
        for ch in alert_changes:
            # Each event shows the alert as this change left it (a step may raise and clear
            # one alert; the table keeps the last state).
            rec = AlertRecord.from_domain(ch.alert, records[ch.alert.id].incident_id)
            data: dict[str, Any] = {"action": ch.action, "notify": ch.notify, "late": ch.late, "alert": rec}
            step.events.append(_AlertEvent(ch.alert, data))
        for k, ic in enumerate(incident_changes):
            irec = IncidentRecord.from_domain(ic.incident)
            # The entry's own time and alert tell two changes of one incident apart (two
            # alerts added at one reading time would otherwise read the same).
            idata: dict[str, Any] = {"action": ic.action, "by": ic.entry.by, "notify": ic.notify,
                                     "merged_into": ic.incident.merged_into,
                                     "entry_at": ic.entry.at.isoformat().replace("+00:00", "Z"),
                                     "alert_id": ic.entry.alert_id,
                                     "incident": irec}
            step.events.append(_IncidentEvent(first_entry + k, irec.site, idata))

    def resolved_by_person(self, incident: Incident) -> None:
        """A person resolved ``incident`` (through the API): the ``resolved`` notifications go
        out with the next step (the key makes a second one a no-op)."""
        if self.planner is not None:
            self._open.resolved += self.planner.resolved(incident, self._clock())

    def gateway_status(self, status: GatewayStatusRecord, *, changed: bool) -> None:
        step = self._open
        prior = step.gateways.get(status.gateway)
        if prior is None or prior.last_seen <= status.last_seen:
            step.gateways[status.gateway] = status
        if self.feed is None or not changed:
            return
        step.events.append(_GatewayEvent(status, {"gateway": status}))

    def checkpoint(self, snapshot: ServiceSnapshot, after: AfterCommit) -> None:
        """Attach the rule-state snapshot to the step being recorded (the snapshot covers
        exactly what was evaluated so far, the step's changes included) and close it:
        both are committed in one transaction. ``after`` hears whether it was committed."""
        self._open.snapshot = snapshot
        self._open.after = after
        self._seal()

    def _seal(self) -> None:
        if not self._open.empty:
            self._queue.append(self._open)
            self._open = _Step()

    # --- committing ---------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Commit the recorded steps in order; False when the database is unavailable (the
        rest stays queued, the failed step first)."""
        self._seal()
        q = self._queue
        while q:
            step = q[0]
            try:
                outcome = self.incidents.commit_step(step.write())
            except RepositoryUnavailable as exc:
                self.stats.unavailable += 1
                logger.debug("database unavailable (a step of %d alerts, %d incidents): %s",
                             len(step.alerts), len(step.incidents), exc)
                return False
            except Exception as exc:
                # RepositoryError: refused for good. Anything else is a value the adapter could
                # not even send (an integer beyond 64 bits, a time before year 1) or a bug:
                # the same treatment, so that one row never stops the service.
                if not isinstance(exc, RepositoryError):
                    self.stats.failed += 1
                logger.warning("the database refused a step (%s); writing it row by row",
                               safe_text(repr(exc), 500))
                try:
                    outcome, ok = self._one_by_one(step)
                except RepositoryUnavailable:
                    self.stats.unavailable += 1
                    return False
                q.popleft()
                self._committed(step, outcome, snapshot_ok=ok)
                continue
            q.popleft()
            self._committed(step, outcome, snapshot_ok=True)
        return True

    def _one_by_one(self, step: _Step) -> tuple[StepOutcome, bool]:
        """A refused step, each row in its own transaction (a replay of the ones done is a
        no-op); RepositoryUnavailable propagates and the step is retried whole."""
        fresh: list[bool] = []
        alerts_before: dict[str, StoredVersion] = {}
        gateways_before: dict[str, StoredVersion] = {}
        parts: list[tuple[str, StepWrite]] = [(f"incident {i.id}", StepWrite(incidents=(i,)))
                                               for i in step.incidents.values()]
        parts += [(f"timeline {e.incident_id}", StepWrite(timeline=(e,))) for e in step.timeline]
        parts += [(f"alert {a.id}", StepWrite(alerts=(a,))) for a in step.alerts.values()]
        parts += [(f"gateway {g.gateway}", StepWrite(gateways=(g,))) for g in step.gateways.values()]
        parts += [(f"notification {n.id}", StepWrite(notifications=(n,))) for n in step.notifications]
        parts += [(f"resolved notice {r.incident_id}", StepWrite(resolved=(r,))) for r in step.resolved]
        if step.snapshot is not None:
            parts.append(("snapshot", StepWrite(snapshot=step.snapshot)))
        snapshot_ok = True
        for what, part in parts:
            try:
                out = self.incidents.commit_step(part)
            except RepositoryUnavailable:
                raise
            except Exception:  # RepositoryError, or a value the adapter cannot send (see flush)
                self.stats.refused += 1
                logger.exception("the database refused %s; skipped", safe_text(what, 200))
                if part.timeline:
                    fresh.append(False)
                if part.snapshot is not None:
                    snapshot_ok = False
                continue
            fresh.extend(out.timeline_new)
            alerts_before.update(out.alerts_before)
            gateways_before.update(out.gateways_before)
        return StepOutcome(tuple(fresh), alerts_before, gateways_before), snapshot_ok

    def _committed(self, step: _Step, outcome: StepOutcome, *, snapshot_ok: bool) -> None:
        s = self.stats
        s.steps_committed += 1
        s.alerts_written += len(step.alerts)
        s.incidents_written += len(step.incidents)
        new = sum(outcome.timeline_new)
        s.timeline_written += new
        s.timeline_replayed += len(outcome.timeline_new) - new
        s.gateway_status_written += len(step.gateways)
        if step.snapshot is not None and snapshot_ok:
            s.snapshots_written += 1
        if self.feed is not None:
            for ev in step.events:
                self._publish_if_new(ev, outcome)
        if step.after is not None:
            step.after(snapshot_ok)
        if (step.notifications or step.resolved) and self.on_notifications is not None:
            self.on_notifications()

    def _publish_if_new(self, ev: _AlertEvent | _IncidentEvent | _GatewayEvent, outcome: StepOutcome) -> None:
        kind: EventKind
        if isinstance(ev, _AlertEvent):
            replayed = _alert_replayed(outcome.alerts_before.get(ev.alert.id), ev.alert)
            kind, site = "alert", ev.alert.site
        elif isinstance(ev, _IncidentEvent):
            i = ev.timeline_index
            replayed = i < len(outcome.timeline_new) and not outcome.timeline_new[i]
            kind, site = "incident", ev.site
        else:
            replayed = _gateway_replayed(outcome.gateways_before.get(ev.status.gateway), ev.status)
            kind, site = "gateway", ev.status.site
        if replayed:
            self.stats.feed_replays_suppressed += 1
            return
        assert self.feed is not None
        self.feed.publish(kind, site, ev.data)
        self.stats.feed_events += 1

    # --- the alert cache ------------------------------------------------------------------------------

    def _remember(self, alert: Alert) -> None:
        cache = self._alerts
        cache[alert.id] = alert
        cache.move_to_end(alert.id)
        while len(cache) > self._alert_cache:
            cache.popitem(last=False)
