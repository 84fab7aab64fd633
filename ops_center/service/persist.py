"""Writing what the rules decided: alerts, incidents and their timeline, gateway status; then
telling the live stream.

Writes are queued in order and done by :meth:`ChangeWriter.flush`. A database that is down
(``RepositoryUnavailable``) stops the flush at the failing write, which is retried first
next time (the service meanwhile takes no new message and acknowledges nothing, so the
broker holds the rest). A write the database refuses for good (``RepositoryError``) is
logged, counted and skipped. The feed hears of a change only after it is stored.

Idempotence (a restart replays what the last snapshot lacks): alert and incident ids are
deterministic and written as upserts; timeline events have no key in the table, so the
writer compares each with what is stored for its incident (read once per incident, then
kept while the incident lives).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from contract.registry import Registry
from ops_center.adapters.records import AlertRecord, GatewayStatusRecord, IncidentRecord, TimelineEvent
from ops_center.adapters.repository import OpsRepository, RepositoryError, RepositoryUnavailable
from ops_center.api.errors import Localized
from ops_center.api.schemas import AlertOut, GatewayOut, IncidentOut
from ops_center.domain.alerts import Alert, AlertChange
from ops_center.domain.incidents import IncidentChange
from ops_center.feed import EventKind, Feed

logger = logging.getLogger(__name__)

TimelineKey = tuple[str, str, str, str | None]  # at (ISO), actor, action, detail
_Write = tuple[str, Callable[[], None]]


def _key(e: TimelineEvent) -> TimelineKey:
    return (e.at.isoformat(), e.actor, e.action, e.detail)


@dataclass(slots=True)
class WriterStats:
    alerts_written: int = 0
    incidents_written: int = 0
    timeline_written: int = 0
    timeline_replayed: int = 0  # already stored: skipped (a replay after a restart)
    gateway_status_written: int = 0
    refused: int = 0  # permanent errors: skipped
    unavailable: int = 0  # transient failures (retried)
    feed_events: int = 0


class ChangeWriter:
    """Owned by the service's worker thread."""

    def __init__(self, repo: OpsRepository, registry: Registry, feed: Feed | None, *,
                 alert_cache: int = 50_000) -> None:
        self.repo = repo
        self.registry = registry
        self.feed = feed
        self.stats = WriterStats()
        self._queue: deque[_Write] = deque()
        # The newest Alert object per id: re-linking alerts to the incident that absorbed
        # them (a merge) needs the whole row. Bounded (LRU); a miss only leaves the old link.
        self._alerts: OrderedDict[str, Alert] = OrderedDict()
        self._alert_cache = alert_cache
        self._timeline: dict[str, set[TimelineKey]] = {}

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- queueing ------------------------------------------------------------------------------

    def record(self, alert_changes: Sequence[AlertChange], incident_changes: Sequence[IncidentChange],
               incident_of: Callable[[str], str | None]) -> None:
        """Queue the writes of one step (after the incident manager has seen the alert changes,
        so ``incident_of`` gives each alert its final incident)."""
        for ch in alert_changes:
            self._remember(ch.alert)
        touched: dict[str, Alert] = {ch.alert.id: ch.alert for ch in alert_changes}
        for ic in incident_changes:
            for aid in ic.alert_ids:
                if aid not in touched and (cached := self._alerts.get(aid)) is not None:
                    touched[aid] = cached
        latest: dict[str, IncidentChange] = {}
        for ic in incident_changes:
            latest[ic.incident.id] = ic
        for iid, ic in latest.items():
            self._queue.append((f"incident {iid}", partial(self._upsert_incident,
                                                           IncidentRecord.from_domain(ic.incident))))
        for ic in incident_changes:
            ev = TimelineEvent.from_domain(ic.incident, ic.entry)
            self._queue.append((f"timeline {ev.incident_id}", partial(self._append_timeline, ev)))
        records: dict[str, AlertRecord] = {}
        for aid, alert in touched.items():
            records[aid] = AlertRecord.from_domain(alert, incident_of(aid))
            self._queue.append((f"alert {aid}", partial(self._upsert_alert, records[aid])))
        if self.feed is None:
            return
        for ch in alert_changes:
            # Each event shows the alert as this change left it (a step may raise and clear
            # one alert; the table keeps the last state).
            rec = AlertRecord.from_domain(ch.alert, records[ch.alert.id].incident_id)
            data: dict[str, Any] = {"action": ch.action, "notify": ch.notify, "late": ch.late,
                                    "alert": AlertOut.of(rec).model_dump(mode="json")}
            self._queue.append(("feed", partial(self._publish, "alert", ch.alert.site, data)))
        for ic in incident_changes:
            irec = IncidentRecord.from_domain(ic.incident)
            idata: dict[str, Any] = {"action": ic.action, "by": ic.entry.by, "notify": ic.notify,
                                     "merged_into": ic.incident.merged_into,
                                     "incident": IncidentOut.of(irec).model_dump(mode="json")}
            self._queue.append(("feed", partial(self._publish, "incident", irec.site, idata)))

    def gateway_status(self, status: GatewayStatusRecord, *, changed: bool) -> None:
        self._queue.append((f"gateway {status.gateway}", partial(self._upsert_status, status)))
        if self.feed is None or not changed:
            return
        gw = self.registry.gateways.get(status.gateway)
        out = GatewayOut(
            id=status.gateway, site=status.site,
            name=Localized(vi=gw.name.vi, en=gw.name.en) if gw is not None and gw.name else None,
            state="online" if status.state == "online" else "offline", last_seen=status.last_seen,
            outbox_batches=status.outbox_batches, outbox_oldest=status.outbox_oldest,
            dropped_batches=status.dropped_batches, last_seq=status.last_seq, agent=status.agent,
            sensors=len(gw.sensors) if gw is not None else 0,
        )
        data = {"gateway": out.model_dump(mode="json")}
        self._queue.append(("feed", partial(self._publish, "gateway", status.site, data)))

    # --- flushing ------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Do the queued writes in order; False when the database is unavailable (the rest
        stays queued, the failed write first)."""
        q = self._queue
        while q:
            what, write = q[0]
            try:
                write()
            except RepositoryUnavailable as exc:
                self.stats.unavailable += 1
                logger.debug("database unavailable (%s): %s", what, exc)
                return False
            except RepositoryError:
                self.stats.refused += 1
                logger.exception("the database refused %s; skipped", what)
            q.popleft()
        return True

    # --- the writes ------------------------------------------------------------------------------

    def _remember(self, alert: Alert) -> None:
        cache = self._alerts
        cache[alert.id] = alert
        cache.move_to_end(alert.id)
        while len(cache) > self._alert_cache:
            cache.popitem(last=False)

    def _upsert_alert(self, rec: AlertRecord) -> None:
        self.repo.upsert_alert(rec)
        self.stats.alerts_written += 1

    def _upsert_incident(self, rec: IncidentRecord) -> None:
        self.repo.upsert_incident(rec)
        self.stats.incidents_written += 1

    def _append_timeline(self, ev: TimelineEvent) -> None:
        keys = self._timeline.get(ev.incident_id)
        if keys is None:
            detail = self.repo.get_incident(ev.incident_id)
            keys = {_key(e) for e in detail.timeline} if detail is not None else set()
            self._timeline[ev.incident_id] = keys
        k = _key(ev)
        if k in keys:
            self.stats.timeline_replayed += 1
            return
        self.repo.append_timeline(ev)
        keys.add(k)
        self.stats.timeline_written += 1
        if ev.action in ("resolved", "merged"):
            self._timeline.pop(ev.incident_id, None)  # over: reloaded if it ever reopens

    def _upsert_status(self, rec: GatewayStatusRecord) -> None:
        self.repo.upsert_gateway_status(rec)
        self.stats.gateway_status_written += 1

    def _publish(self, kind: EventKind, site: str, data: dict[str, Any]) -> None:
        assert self.feed is not None
        self.feed.publish(kind, site, data)
        self.stats.feed_events += 1
