"""From incident changes to outbox rows, inside the evaluation step (ops_center/service/persist.py).

The rows are committed in the step's own transaction, so an incident change and the messages
it causes exist together or not at all; a replayed step re-plans the same keys, which the
outbox's unique key turns into no-ops.

Reasons: an incident opening (or reopening) → ``opened`` to the first tier; its severity rising
→ ``severity`` to the first tier; resolved → ``resolved`` to whoever was told before
(``ResolvedNotice``, resolved in SQL within the same transaction; a person's resolve through
the API inserts it in the API's own transaction, ops_center/api/notify_policy.py). Escalations are not
incident changes: the sender loop creates them when they fall due (ops_center/notify/sender.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from contract.registry import Registry
from ops_center.adapters.records import (
    AlertRecord,
    IncidentRecord,
    NotificationRecord,
    ResolvedNotice,
    notification_id,
)
from ops_center.domain.alerts import severity_rank
from ops_center.domain.incidents import Incident, IncidentChange
from ops_center.domain.notify import IncidentFacts, Intent, NotifyPolicy
from ops_center.notify.render import render

_SEVERITY_MEMORY = 100_000  # incidents whose last severity is remembered (bounded)


def facts(incident: IncidentRecord) -> IncidentFacts:
    return IncidentFacts(incident.id, incident.site, incident.kind, incident.severity, incident.opened_at)


def rows_for(
    intents: Sequence[Intent],
    incident: IncidentRecord,
    alerts: Sequence[AlertRecord],
    registry: Registry,
    public_url: str,
    now: datetime,
) -> list[NotificationRecord]:
    out: list[NotificationRecord] = []
    rendered = {}
    for i in intents:
        if i.reason not in rendered:
            rendered[i.reason] = render(incident, alerts, i.reason, registry, public_url)
        msg = rendered[i.reason]
        out.append(
            NotificationRecord(
                id=notification_id(i.incident_id, i.contact, i.channel, i.reason),
                incident_id=i.incident_id,
                site=incident.site,
                contact=i.contact,
                channel=i.channel,
                reason=i.reason,
                state="pending",
                created_at=now,
                next_attempt_at=now,
                subject=msg.subject,
                body=msg.body,
                step=i.step,
            )
        )
    return out


def resolved_notice(
    incident: IncidentRecord,
    alerts: Sequence[AlertRecord],
    registry: Registry,
    public_url: str,
    now: datetime,
) -> ResolvedNotice:
    """The ``resolved`` notice of ``incident``: who hears it is decided in SQL (whoever was told
    of it before), in the transaction that resolves it."""
    msg = render(incident, alerts, "resolved", registry, public_url)
    return ResolvedNotice(incident.id, incident.site, now, msg.subject, msg.body)


class NotificationPlanner:
    """Owned by the service's worker thread (through its ``ChangeWriter``)."""

    def __init__(self, policy: NotifyPolicy, registry: Registry, public_url: str) -> None:
        self.policy = policy
        self.registry = registry
        self.public_url = public_url
        self._severity: dict[str, int] = {}

    def plan(
        self, changes: Sequence[IncidentChange], alerts: Sequence[AlertRecord], now: datetime
    ) -> tuple[list[NotificationRecord], list[ResolvedNotice]]:
        if not self.policy.active:
            return [], []
        rows: list[NotificationRecord] = []
        resolved: list[ResolvedNotice] = []
        for ch in changes:
            inc = ch.incident
            rank = severity_rank(inc.severity)
            before = self._severity.get(inc.id)
            self._remember(inc.id, rank)
            if inc.late or inc.merged_into is not None:
                continue
            record = IncidentRecord.from_domain(inc)
            members = [a for a in alerts if a.incident_id == inc.id]
            if ch.action in ("opened", "reopened"):
                intents = self.policy.on_change(facts(record), "opened", now)
            elif ch.action == "resolved":
                resolved.append(resolved_notice(record, members, self.registry, self.public_url, now))
                self._severity.pop(inc.id, None)
                continue
            elif before is not None and rank > before and inc.state != "resolved":
                intents = self.policy.on_change(facts(record), "severity", now)
            else:
                continue
            rows += rows_for(intents, record, members, self.registry, self.public_url, now)
        return rows, resolved

    def resolved(self, incident: Incident, now: datetime) -> list[ResolvedNotice]:
        """The notice for an incident a person resolved (the service heard of it afterwards; the
        API's transaction has normally inserted the same keys already: then a no-op)."""
        self._severity.pop(incident.id, None)
        if not self.policy.active or incident.late or incident.merged_into is not None:
            return []
        record = IncidentRecord.from_domain(incident)
        return [resolved_notice(record, [], self.registry, self.public_url, now)]

    def _remember(self, incident_id: str, rank: int) -> None:
        sev = self._severity
        sev[incident_id] = rank
        if len(sev) > _SEVERITY_MEMORY:
            for key in list(sev)[: len(sev) // 10]:
                del sev[key]
