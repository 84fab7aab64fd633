"""The incident manager's core: its state, the members of an incident (open, attach, update,
clear; severity and titles), the lifecycle steps shared by routing and timers, and the views
it hands out. Routing is ops_center/domain/incident_routing.py; timers, people's actions and
the public API are ops_center/domain/incidents.py."""

from __future__ import annotations

from contract.registry import Registry
from ops_center.domain.alerts import (
    Alert,
    AlertChange,
    Severity,
    severity_of,
    severity_rank,
    stable_id,
    to_datetime,
)
from ops_center.domain.correlation import PatternSet, render, title_context
from ops_center.domain.incident_model import (
    AREA_KIND,
    GATEWAY_KIND,
    Incident,
    IncidentChange,
    ManagerStats,
    Pending,
    TimelineEntry,
    Tracked,
    dt,
)
from ops_center.domain.lifecycle import IncidentAction, next_state
from ops_center.domain.maintenance import MaintenanceCalendar


class IncidentCore:
    def __init__(self, registry: Registry, patterns: PatternSet,
                 maintenance: MaintenanceCalendar | None = None) -> None:
        self.registry = registry
        self.patterns = patterns
        self.settings = patterns.settings
        self.maintenance = maintenance if maintenance is not None else MaintenanceCalendar()
        self.stats = ManagerStats()
        self._incs: dict[str, Tracked] = {}
        self._by_group: dict[tuple[str, str, str], list[str]] = {}
        self._alert_inc: dict[str, str] = {}
        self._pending: dict[tuple[int, str, str], Pending] = {}
        self._suppressed: set[str] = set()
        self._clock: dict[str, float] = {}
        self._notify_rank = severity_rank(self.settings.notify_min_severity)

    # --- members ---------------------------------------------------------------------------

    def _new(self, site: str, kind: str, grp: str, pi: int | None, members: list[Alert], t: float,
             now_s: float, *, floor: Severity | None) -> Tracked:
        # Deterministic (a replay gives the same ids); the first member tells apart two
        # incidents of one group opened at the same instant (distance grouping).
        iid = stable_id("incident", kind, site, grp, round(t * 1000), members[0].id if members else "")
        while iid in self._incs:
            iid = stable_id(iid, "next")
        inc = Tracked(iid, site, kind, grp, pi, floor or "info", next_state(None, "opened"), "", "", t,
                      now_s, t)
        for m in members:
            inc.members[m.id] = m
        if floor is None and members:
            inc.severity = severity_of(max(severity_rank(m.severity) for m in members))
        self._refresh(inc)
        self._incs[iid] = inc
        self._by_group.setdefault((kind, site, grp), []).append(iid)
        for m in members:
            self._alert_inc[m.id] = iid
        return inc

    def _record_open(self, inc: Tracked, members: list[Alert], t: float, by: str,
                     out: list[IncidentChange], why: tuple[str, str] | None = None) -> None:
        vi, en = why if why is not None else (
            "; ".join(m.message_vi for m in members[:5]), "; ".join(m.message_en for m in members[:5]))
        entry = self._entry(inc, t, "opened", by, vi, en)
        out.append(self._change("opened", inc, entry, tuple(m.id for m in members)))

    def _attach(self, inc: Tracked, alerts: list[Alert], t: float, now_s: float,
                out: list[IncidentChange], *, by: str) -> None:
        if inc.state == "resolved":
            self._reopen(inc, t, now_s, by, out)
        for a in alerts:
            inc.members[a.id] = a
            self._alert_inc[a.id] = inc.id
        if any(a.active for a in alerts):
            inc.clear_event = inc.clear_wall = None
        before = inc.severity
        self._refresh(inc)
        if not alerts:
            return
        lead = alerts[0]
        extra = f" (+{len(alerts) - 1})" if len(alerts) > 1 else ""
        vi, en = lead.message_vi + extra, lead.message_en + extra
        if severity_rank(inc.severity) > severity_rank(before):
            vi, en = f"{vi} — mức độ {before} → {inc.severity}", f"{en} — severity {before} → {inc.severity}"
        entry = self._entry(inc, t, "alert_added", by, vi, en, lead.id)
        out.append(self._change("alert_added", inc, entry, tuple(a.id for a in alerts)))

    def _member_updated(self, inc: Tracked, a: Alert, ch: AlertChange, t: float, now_s: float,
                        out: list[IncidentChange]) -> None:
        inc.members[a.id] = a
        if a.active:
            inc.clear_event = inc.clear_wall = None
        before = inc.severity
        self._refresh(inc)
        vi, en = a.message_vi, a.message_en
        if ch.previous_severity is not None and ch.previous_severity != a.severity:
            vi = f"{vi} ({ch.previous_severity} → {a.severity})"
            en = f"{en} ({ch.previous_severity} → {a.severity})"
        if inc.severity != before:
            vi, en = f"{vi}; sự cố: {before} → {inc.severity}", f"{en}; incident: {before} → {inc.severity}"
        entry = self._entry(inc, t, "alert_updated", f"rule:{a.rule}", vi, en, a.id)
        out.append(self._change("alert_updated", inc, entry))

    def _member_cleared(self, inc: Tracked, a: Alert, t: float, now_s: float,
                        out: list[IncidentChange]) -> None:
        inc.members[a.id] = a
        if inc.merged_into is not None:
            return
        if inc.state != "resolved" and all(not m.active for m in inc.members.values()):
            inc.clear_event, inc.clear_wall = t, now_s
        self._refresh(inc)
        entry = self._entry(inc, t, "alert_cleared", f"rule:{a.rule}", f"Hết cảnh báo: {a.message_vi}",
                            f"Alert cleared: {a.message_en}", a.id)
        out.append(self._change("alert_cleared", inc, entry))

    def _refresh(self, inc: Tracked) -> None:
        """Severity = max of the members (never below the kind's floor, never lowered), and
        the titles from the pattern's templates."""
        ranks = [severity_rank(m.severity) for m in inc.members.values()]
        if ranks and max(ranks) > severity_rank(inc.severity):
            inc.severity = severity_of(max(ranks))
        s = self.settings
        if inc.kind == GATEWAY_KIND:
            tvi, ten = s.gateway_title.vi, s.gateway_title.en
        elif inc.kind == AREA_KIND:
            tvi, ten = s.area_title.vi, s.area_title.en
        elif inc.pattern is not None:
            p = self.patterns.patterns[inc.pattern]
            tvi, ten = p.title.vi, p.title.en
        else:  # pragma: no cover - every other incident comes from a pattern
            tvi = ten = inc.kind
        members = sorted(inc.members.values(), key=lambda m: (m.sensor is None, m.opened_at))
        if inc.kind == GATEWAY_KIND:
            ctx_vi = title_context(self.registry, inc.site, members, "vi")
            ctx_vi["gateway"] = inc.group
            gw = self.registry.gateways.get(inc.group)
            ctx_vi["gateway_name"] = gw.name.vi if gw is not None and gw.name is not None else inc.group
            ctx_en = title_context(self.registry, inc.site, members, "en")
            ctx_en["gateway"] = inc.group
            ctx_en["gateway_name"] = gw.name.en if gw is not None and gw.name is not None else inc.group
        else:
            ctx_vi = title_context(self.registry, inc.site, members, "vi")
            ctx_en = title_context(self.registry, inc.site, members, "en")
        inc.title_vi, inc.title_en = render(tvi, ctx_vi), render(ten, ctx_en)

    # --- lifecycle -------------------------------------------------------------------------

    def _reopen(self, inc: Tracked, t: float, now_s: float, by: str, out: list[IncidentChange]) -> None:
        inc.state = next_state(inc.state, "reopened")
        inc.resolved_at = inc.resolved_by = None
        inc.acknowledged_at = inc.acknowledged_by = None
        inc.escalated = False
        inc.opened_wall = now_s
        inc.clear_event = inc.clear_wall = None
        entry = self._entry(inc, t, "reopened", by, "Sự cố tái diễn trong thời gian theo dõi",
                            "Recurred within the reopen window")
        out.append(self._change("reopened", inc, entry))

    def _late(self, inc: Tracked) -> bool:
        return bool(inc.members) and all(m.late for m in inc.members.values())

    def _resolve(self, inc: Tracked, at: float, by: str, vi: str, en: str, out: list[IncidentChange]) -> None:
        inc.state = next_state(inc.state, "resolved")
        inc.resolved_at = at
        inc.resolved_by = by
        entry = self._entry(inc, at, "resolved", by, vi, en)
        out.append(self._change("resolved", inc, entry))

    # --- views -----------------------------------------------------------------------------

    def _entry(self, inc: Tracked, t: float, action: IncidentAction, by: str, vi: str, en: str,
               alert_id: str | None = None) -> TimelineEntry:
        entry = TimelineEntry(to_datetime(t), action, by, vi, en, alert_id)
        inc.timeline.append(entry)
        inc.updated_at = max(inc.updated_at, t)
        return entry

    def _change(self, action: IncidentAction, inc: Tracked, entry: TimelineEntry,
                alert_ids: tuple[str, ...] = ()) -> IncidentChange:
        return IncidentChange(action, self._view(inc), entry, alert_ids, self._notify_rank)

    def _view(self, inc: Tracked) -> Incident:
        members = inc.members.values()
        return Incident(
            id=inc.id, site=inc.site, kind=inc.kind, severity=inc.severity, state=inc.state,
            title_vi=inc.title_vi, title_en=inc.title_en, opened_at=to_datetime(inc.opened_at),
            acknowledged_at=dt(inc.acknowledged_at), resolved_at=dt(inc.resolved_at),
            updated_at=to_datetime(inc.updated_at), group=inc.group,
            alert_ids=tuple(inc.members), active_alert_ids=tuple(m.id for m in members if m.active),
            sensors=tuple(sorted({m.sensor for m in members if m.sensor is not None})),
            gateways=tuple(sorted({m.gateway for m in members})),
            acknowledged_by=inc.acknowledged_by, resolved_by=inc.resolved_by, escalated=inc.escalated,
            late=self._late(inc), merged_into=inc.merged_into, timeline=tuple(inc.timeline),
        )

