"""Incidents: correlated alerts with a lifecycle (open → acknowledged → resolved).

The :class:`IncidentManager` is pure: fed alert changes and the time, it returns incident
changes. It knows three clocks, each used for what it means:

- reading (event) time, from the alerts: ``opened_at``, the timeline of alert changes, the
  reopen window, the grouping window;
- a per-site event clock (the newest alert change time of the site), so the auto-resolve
  hold passes at the pace of the data, also for a simulated fleet on a fast clock;
- ``now``, the caller's wall clock: escalation (how long people have left an incident
  unacknowledged), human actions, and the auto-resolve hold when no data arrives at all.

Topology: a gateway outage (``gateway_offline`` / ``gateway_silent`` alerts) is one
``gateway_offline`` incident that absorbs its sensors' silence alerts; ≥ N gateways of one
site down within a window become one ``area_outage`` incident that absorbs the gateway
incidents (they are closed as merged, with ``merged_into`` set).

Memory stays bounded over a long run: a resolved incident is forgotten (with the incidents
merged into it) once its site's event clock is past its reopen window, when nothing can
reopen it any more; a recurrence then opens a NEW incident. The store keeps the history;
the manager keeps only what can still change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from contract.registry import Registry
from ops_center.domain.alerts import (
    Alert,
    AlertChange,
    Severity,
    alert_from_dict,
    alert_to_dict,
    severity_of,
    severity_rank,
    stable_id,
    to_datetime,
)
from ops_center.domain.correlation import (
    Pattern,
    PatternSet,
    distance_m,
    group_value,
    render,
    sensor_position,
    title_context,
)
from ops_center.domain.errors import InvalidTransition, UnknownIncident
from ops_center.domain.maintenance import MaintenanceCalendar, MaintenanceWindow

IncidentState = Literal["open", "acknowledged", "resolved"]
IncidentAction = Literal[
    "opened", "alert_added", "alert_updated", "alert_cleared", "kind_changed", "acknowledged",
    "resolved", "reopened", "escalated", "merged", "annotated",
]
GATEWAY_RULE_KINDS = frozenset({"gateway_offline", "gateway_silent"})
GATEWAY_KIND = "gateway_offline"
AREA_KIND = "area_outage"
SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One change of an incident: when, what, by whom (``rule:<id>``, ``system``,
    ``pattern:<kind>`` or a user name), and why."""

    at: datetime
    action: IncidentAction
    by: str
    message_vi: str
    message_en: str
    alert_id: str | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident as stored in the ``incidents`` table, plus its members and timeline."""

    id: str
    site: str
    kind: str
    severity: Severity
    state: IncidentState
    title_vi: str
    title_en: str
    opened_at: datetime            # event time of the change that opened it
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    updated_at: datetime
    group: str                     # the grouping value (site, gateway, sensor, attr=value)
    alert_ids: tuple[str, ...]
    active_alert_ids: tuple[str, ...]
    sensors: tuple[str, ...]
    gateways: tuple[str, ...]
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    escalated: bool = False
    late: bool = False             # made only of late data: never pages
    merged_into: str | None = None  # absorbed by another incident (topology)
    timeline: tuple[TimelineEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """What happened to one incident. ``alert_ids``: alerts this change attached to it
    (update ``alerts.incident_id``); ``entry`` is the new timeline entry."""

    action: IncidentAction
    incident: Incident
    entry: TimelineEntry
    alert_ids: tuple[str, ...] = ()
    notify_min_rank: int = 2

    @property
    def notify(self) -> bool:
        """True when this change should page someone now."""
        inc = self.incident
        return (self.action in ("opened", "reopened", "escalated") and not inc.late
                and inc.merged_into is None and severity_rank(inc.severity) >= self.notify_min_rank)


@dataclass(slots=True)
class _Inc:
    id: str
    site: str
    kind: str
    group: str
    pattern: int | None            # index into the pattern set; None for topology kinds
    severity: Severity
    state: IncidentState
    title_vi: str
    title_en: str
    opened_at: float
    opened_wall: float
    updated_at: float
    members: dict[str, Alert] = field(default_factory=dict)
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    escalated: bool = False
    merged_into: str | None = None
    clear_event: float | None = None   # when every member had cleared (event time)
    clear_wall: float | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.state != "resolved" and self.merged_into is None


@dataclass(slots=True)
class _Pending:
    members: dict[str, Alert] = field(default_factory=dict)
    ready_event: float | None = None   # when an opening condition first held (event time)
    ready_wall: float | None = None


@dataclass(slots=True)
class ManagerStats:
    suppressed: int = 0    # alert changes ignored under maintenance
    absorbed: int = 0      # silence alerts absorbed by a gateway or area incident
    forgotten: int = 0     # resolved incidents dropped from memory after their reopen window


class IncidentManager:
    def __init__(self, registry: Registry, patterns: PatternSet,
                 maintenance: MaintenanceCalendar | None = None) -> None:
        self.registry = registry
        self.patterns = patterns
        self.settings = patterns.settings
        self.maintenance = maintenance if maintenance is not None else MaintenanceCalendar()
        self.stats = ManagerStats()
        self._incs: dict[str, _Inc] = {}
        self._by_group: dict[tuple[str, str, str], list[str]] = {}
        self._alert_inc: dict[str, str] = {}
        self._pending: dict[tuple[int, str, str], _Pending] = {}
        self._suppressed: set[str] = set()
        self._clock: dict[str, float] = {}
        self._notify_rank = severity_rank(self.settings.notify_min_severity)

    # --- queries ---------------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident:
        inc = self._incs.get(incident_id)
        if inc is None:
            raise UnknownIncident(incident_id)
        return self._view(inc)

    def incidents(self, *, site: str | None = None, state: IncidentState | None = None,
                  include_merged: bool = False) -> list[Incident]:
        return [self._view(i) for i in self._incs.values()
                if (site is None or i.site == site) and (state is None or i.state == state)
                and (include_merged or i.merged_into is None)]

    def incident_of(self, alert_id: str) -> str | None:
        return self._alert_inc.get(alert_id)

    # --- alert changes ---------------------------------------------------------------------

    def apply(self, changes: Sequence[AlertChange], now: datetime) -> list[IncidentChange]:
        now_s = now.timestamp()
        out: list[IncidentChange] = []
        for ch in changes:
            t = ch.at.timestamp()
            site = ch.alert.site
            if t > self._clock.get(site, float("-inf")):
                self._clock[site] = t
                # The site's data moved on: incidents whose members have all been clear for the
                # hold by now are resolved BEFORE this change is routed, so a new alert long
                # after does not join an incident that only no tick had resolved yet.
                self._resolve_held(site, now_s, out)
            self._apply_one(ch, t, now_s, out)
        return out

    def _apply_one(self, ch: AlertChange, t: float, now_s: float, out: list[IncidentChange]) -> None:
        a = ch.alert
        inc_id = self._alert_inc.get(a.id)
        if inc_id is not None:
            inc = self._incs[inc_id]
            if not a.active:
                self._member_cleared(inc, a, t, now_s, out)
                return
            if inc.state == "resolved" and inc.merged_into is None:
                if ch.action == "deescalated":
                    inc.members[a.id] = a  # milder after someone resolved it: nothing to reopen
                    return
                if t - (inc.resolved_at or t) <= self.settings.reopen_window_s:
                    self._attach(inc, [a], t, now_s, out, by=f"rule:{a.rule}")
                    return
                del self._alert_inc[a.id]  # too long ago: treat as a new alert
            else:
                self._member_updated(inc, a, ch, t, now_s, out)
                return
        if not a.active:
            self._suppressed.discard(a.id)
            for pend in self._pending.values():
                pend.members.pop(a.id, None)
            return
        if a.id in self._suppressed:
            return
        maint = self.maintenance
        if not maint.empty and maint.covering(a.site, a.gateway, a.sensor, t) is not None:
            self._suppressed.add(a.id)
            self.stats.suppressed += 1
            return
        if a.rule_kind in GATEWAY_RULE_KINDS:
            self._route_gateway(a, t, now_s, out)
            return
        if a.rule_kind == "freshness":
            host = self._gateway_host(a.site, a.gateway)
            if host is not None:
                self.stats.absorbed += 1
                self._attach(host, [a], t, now_s, out, by=f"rule:{a.rule}")
                return
        self._route_patterns(a, t, now_s, out)

    # --- patterns --------------------------------------------------------------------------

    def _sensor_kind(self, a: Alert) -> str | None:
        ref = self.registry.sensors.get(a.sensor) if a.sensor else None
        return ref.spec.kind if ref is not None else None

    def _route_patterns(self, a: Alert, t: float, now_s: float, out: list[IncidentChange]) -> None:
        sk = self._sensor_kind(a)
        for pi, p in enumerate(self.patterns.patterns):
            if not p.accepts(a, sk):
                continue
            grp = group_value(p, a, self.registry)
            inc = self._find(p, p.kind, a.site, grp, a, t)
            if inc is not None:
                self._attach(inc, [a], t, now_s, out, by=f"rule:{a.rule}")
                return
            pend = self._pending.setdefault((pi, a.site, grp), _Pending())
            pend.members[a.id] = a
            self._expire(pend, p, t)
            if not self._ready(p, pend):
                continue
            for kind in p.upgrades:
                target = self._find(p, kind, a.site, grp, a, t)
                if target is not None and target.live:
                    self._upgrade(target, pi, p, pend, t, now_s, out)
                    return
            if pend.ready_event is None:
                pend.ready_event, pend.ready_wall = t, now_s
            if p.open_delay_s > 0 and not self._delay_passed(pend, p, a.site, now_s):
                return  # waiting; tick() opens it if nothing absorbs the members first
            self._open_from(pi, p, a.site, grp, pend, t, now_s, out, by=f"rule:{a.rule}")
            return

    def _ready(self, p: Pattern, pend: _Pending) -> bool:
        members = [(m, self._sensor_kind(m)) for m in pend.members.values() if m.active]
        return any(c.satisfied(members) for c in p.opens)

    def _delay_passed(self, pend: _Pending, p: Pattern, site: str, now_s: float) -> bool:
        if pend.ready_event is None or pend.ready_wall is None:
            return False
        event_now = self._clock.get(site, pend.ready_event)
        return (event_now - pend.ready_event >= p.open_delay_s
                or now_s - pend.ready_wall >= p.open_delay_s)

    def _expire(self, pend: _Pending, p: Pattern, t: float) -> None:
        for aid in [aid for aid, m in pend.members.items()
                    if not m.active or t - m.updated_at.timestamp() > p.window_s]:
            del pend.members[aid]
        if not pend.members:
            pend.ready_event = pend.ready_wall = None

    def _find(self, p: Pattern | None, kind: str, site: str, grp: str, a: Alert, t: float) -> _Inc | None:
        ids = self._by_group.get((kind, site, grp), [])
        for iid in reversed(ids):
            inc = self._incs[iid]
            if inc.merged_into is not None:
                continue
            if inc.state == "resolved" and (
                    inc.resolved_at is None or t - inc.resolved_at > self.settings.reopen_window_s):
                continue
            if p is not None and p.distance_m is not None and not self._near(inc, a, p.distance_m):
                continue
            return inc
        return None

    def _near(self, inc: _Inc, a: Alert, limit_m: float) -> bool:
        pos = sensor_position(self.registry, a.sensor, a.gateway)
        if pos is None:
            return True
        for m in inc.members.values():
            other = sensor_position(self.registry, m.sensor, m.gateway)
            if other is None or distance_m(pos[0], pos[1], other[0], other[1]) <= limit_m:
                return True
        return False

    def _open_from(self, pi: int, p: Pattern, site: str, grp: str, pend: _Pending, t: float,
                   now_s: float, out: list[IncidentChange], *, by: str) -> None:
        members = [m for m in pend.members.values() if m.active and m.id not in self._alert_inc]
        pend.ready_event = pend.ready_wall = None
        if not members:
            return
        inc = self._new(site, p.kind, grp, pi, members, t, now_s, floor=p.severity_floor)
        self._record_open(inc, members, t, by, out)

    def _upgrade(self, inc: _Inc, pi: int, p: Pattern, pend: _Pending, t: float, now_s: float,
                 out: list[IncidentChange]) -> None:
        old = inc.kind
        self._by_group[(old, inc.site, inc.group)].remove(inc.id)
        inc.kind, inc.pattern = p.kind, pi
        self._by_group.setdefault((p.kind, inc.site, inc.group), []).append(inc.id)
        new = [m for m in pend.members.values() if m.active and m.id not in self._alert_inc]
        pend.ready_event = pend.ready_wall = None
        for m in new:
            inc.members[m.id] = m
            self._alert_inc[m.id] = inc.id
        self._refresh(inc)
        entry = self._entry(inc, t, "kind_changed", f"pattern:{p.kind}",
                            f"Chuyển loại sự cố {old} → {p.kind}", f"Incident kind {old} → {p.kind}")
        out.append(self._change("kind_changed", inc, entry, tuple(m.id for m in new)))

    # --- topology --------------------------------------------------------------------------

    def _gateway_host(self, site: str, gateway: str) -> _Inc | None:
        """The live incident that speaks for a gateway being down, if any."""
        for iid in reversed(self._by_group.get((GATEWAY_KIND, site, gateway), [])):
            inc = self._incs[iid]
            while inc.merged_into is not None:
                inc = self._incs[inc.merged_into]
            if inc.state != "resolved" and any(
                    m.active and m.rule_kind in GATEWAY_RULE_KINDS for m in inc.members.values()):
                return inc
        return None

    def _route_gateway(self, a: Alert, t: float, now_s: float, out: list[IncidentChange]) -> None:
        s = self.settings
        area = self._find(None, AREA_KIND, a.site, a.site, a, t)
        if area is not None and area.live:
            self._attach(area, [a], t, now_s, out, by=f"rule:{a.rule}")
            self._absorb_silence(area, a.gateway, t, now_s, out)
            return
        ginc = self._find(None, GATEWAY_KIND, a.site, a.gateway, a, t)
        if ginc is not None:
            self._attach(ginc, [a], t, now_s, out, by=f"rule:{a.rule}")
        else:
            ginc = self._new(a.site, GATEWAY_KIND, a.gateway, None, [a], t, now_s,
                             floor=s.gateway_severity_floor)
            self._record_open(ginc, [a], t, f"rule:{a.rule}", out)
        self._absorb_silence(ginc, a.gateway, t, now_s, out)
        # Several gateways of the site down within the window: one area outage.
        down = [i for i in self._incs.values()
                if i.kind == GATEWAY_KIND and i.site == a.site and i.live
                and abs(i.opened_at - ginc.opened_at) <= s.area_window_s]
        if len({i.group for i in down}) < s.area_min_gateways:
            return
        if area is None:
            first = min(down, key=lambda i: i.opened_at)
            area = self._new(a.site, AREA_KIND, a.site, None, [], t, now_s, floor=s.area_severity_floor)
            since = f"{to_datetime(first.opened_at):%H:%M} UTC"
            self._record_open(area, [], t, "system", out,
                              why=(f"{len(down)} cổng mất kết nối từ {since}",
                                   f"{len(down)} gateways down since {since}"))
        elif area.state == "resolved":
            self._reopen(area, t, now_s, "system", out)
        for child in down:
            self._merge(child, area, t, now_s, out)

    def _absorb_silence(self, host: _Inc, gateway: str, t: float, now_s: float,
                        out: list[IncidentChange]) -> None:
        """Move the gateway's sensors' silence alerts (pending, or in sensor incidents made
        only of silence) into the incident that speaks for the gateway."""
        moved: list[Alert] = []
        for pend in self._pending.values():
            for aid, m in list(pend.members.items()):
                if m.rule_kind == "freshness" and m.gateway == gateway and aid not in self._alert_inc:
                    moved.append(m)
                    del pend.members[aid]
        for inc in list(self._incs.values()):
            if (inc is not host and inc.live and inc.members
                    and all(m.rule_kind == "freshness" and m.gateway == gateway
                            for m in inc.members.values())):
                self._merge(inc, host, t, now_s, out)
        if moved:
            self.stats.absorbed += len(moved)
            self._attach(host, moved, t, now_s, out, by="system")

    def _merge(self, child: _Inc, parent: _Inc, t: float, now_s: float, out: list[IncidentChange]) -> None:
        if child is parent or child.merged_into is not None:
            return
        moved = list(child.members.values())
        child.merged_into = parent.id
        child.state = "resolved"
        child.resolved_at = t
        child.resolved_by = "system"
        entry = self._entry(child, t, "merged", "system", f"Gộp vào sự cố {parent.title_vi}",
                            f"Merged into {parent.title_en}")
        out.append(self._change("merged", child, entry))
        self._attach(parent, moved, t, now_s, out, by="system")

    # --- members ---------------------------------------------------------------------------

    def _new(self, site: str, kind: str, grp: str, pi: int | None, members: list[Alert], t: float,
             now_s: float, *, floor: Severity | None) -> _Inc:
        # Deterministic (a replay gives the same ids); the first member tells apart two
        # incidents of one group opened at the same instant (distance grouping).
        iid = stable_id("incident", kind, site, grp, round(t * 1000), members[0].id if members else "")
        while iid in self._incs:
            iid = stable_id(iid, "next")
        inc = _Inc(iid, site, kind, grp, pi, floor or "info", "open", "", "", t, now_s, t)
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

    def _record_open(self, inc: _Inc, members: list[Alert], t: float, by: str,
                     out: list[IncidentChange], why: tuple[str, str] | None = None) -> None:
        vi, en = why if why is not None else (
            "; ".join(m.message_vi for m in members[:5]), "; ".join(m.message_en for m in members[:5]))
        entry = self._entry(inc, t, "opened", by, vi, en)
        out.append(self._change("opened", inc, entry, tuple(m.id for m in members)))

    def _attach(self, inc: _Inc, alerts: list[Alert], t: float, now_s: float,
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

    def _member_updated(self, inc: _Inc, a: Alert, ch: AlertChange, t: float, now_s: float,
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

    def _member_cleared(self, inc: _Inc, a: Alert, t: float, now_s: float, out: list[IncidentChange]) -> None:
        inc.members[a.id] = a
        if inc.merged_into is not None:
            return
        if inc.state != "resolved" and all(not m.active for m in inc.members.values()):
            inc.clear_event, inc.clear_wall = t, now_s
        self._refresh(inc)
        entry = self._entry(inc, t, "alert_cleared", f"rule:{a.rule}", f"Hết cảnh báo: {a.message_vi}",
                            f"Alert cleared: {a.message_en}", a.id)
        out.append(self._change("alert_cleared", inc, entry))

    def _refresh(self, inc: _Inc) -> None:
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

    def _reopen(self, inc: _Inc, t: float, now_s: float, by: str, out: list[IncidentChange]) -> None:
        inc.state = "open"
        inc.resolved_at = inc.resolved_by = None
        inc.acknowledged_at = inc.acknowledged_by = None
        inc.escalated = False
        inc.opened_wall = now_s
        inc.clear_event = inc.clear_wall = None
        entry = self._entry(inc, t, "reopened", by, "Sự cố tái diễn trong thời gian theo dõi",
                            "Recurred within the reopen window")
        out.append(self._change("reopened", inc, entry))

    def tick(self, now: datetime) -> list[IncidentChange]:
        """Timers: auto-resolve after the hold, escalation, delayed pattern openings."""
        now_s = now.timestamp()
        s = self.settings
        out: list[IncidentChange] = []
        for inc in list(self._incs.values()):
            if not inc.live:
                continue
            if self._auto_resolve(inc, now_s, out):
                continue
            after = s.escalate_after_s.get(inc.severity)
            if (after is not None and inc.state == "open" and not inc.escalated
                    and not self._late(inc) and now_s - inc.opened_wall >= after):
                inc.escalated = True
                entry = self._entry(inc, now_s, "escalated", "system",
                                    f"Chưa được tiếp nhận sau {after / 60:.0f} phút",
                                    f"Not acknowledged after {after / 60:.0f} min")
                out.append(self._change("escalated", inc, entry))
        self._forget_expired()
        for (pi, site, grp), pend in list(self._pending.items()):
            if not pend.members:
                del self._pending[(pi, site, grp)]  # groups come and go (sensors, zones)
                continue
            p = self.patterns.patterns[pi]
            if pend.ready_event is None:
                continue
            if not self._ready(p, pend):
                pend.ready_event = pend.ready_wall = None
                continue
            if self._delay_passed(pend, p, site, now_s):
                t = max(self._clock.get(site, pend.ready_event), pend.ready_event)
                self._open_from(pi, p, site, grp, pend, min(t, pend.ready_event + p.open_delay_s),
                                now_s, out, by=f"pattern:{p.kind}")
        return out

    def _auto_resolve(self, inc: _Inc, now_s: float, out: list[IncidentChange]) -> bool:
        """Resolve ``inc`` when every member has been clear for the hold (event or wall time)."""
        if inc.clear_event is None or inc.clear_wall is None or not inc.members:
            return False
        hold = self.settings.auto_resolve_hold_s
        event_now = self._clock.get(inc.site, inc.clear_event)
        if event_now - inc.clear_event < hold and now_s - inc.clear_wall < hold:
            return False
        at = max(inc.clear_event, min(event_now, inc.clear_event + hold))
        minutes = f"{hold / 60:.0f}"
        self._resolve(inc, at, "system", f"Tự đóng: mọi cảnh báo đã hết trong {minutes} phút",
                      f"Auto-resolved: every alert clear for {minutes} min", out)
        return True

    def _resolve_held(self, site: str, now_s: float, out: list[IncidentChange]) -> None:
        for inc in list(self._incs.values()):
            if inc.site == site and inc.live and inc.clear_event is not None:
                self._auto_resolve(inc, now_s, out)

    def _forget_expired(self) -> None:
        """Drop resolved incidents whose reopen window has passed on their site's event
        clock, with every incident merged into them (a merged child still routes its
        gateway to the parent while the parent can change)."""
        window = self.settings.reopen_window_s
        roots = [i for i in self._incs.values()
                 if i.merged_into is None and i.state == "resolved" and i.resolved_at is not None
                 and self._clock.get(i.site, float("-inf")) - i.resolved_at > window]
        if not roots:
            return
        children: dict[str, list[str]] = {}
        for i in self._incs.values():
            if i.merged_into is not None:
                children.setdefault(i.merged_into, []).append(i.id)
        for root in roots:
            stack = [root.id]
            while stack:
                iid = stack.pop()
                stack.extend(children.get(iid, ()))
                self._drop(iid)

    def _drop(self, iid: str) -> None:
        inc = self._incs.pop(iid, None)
        if inc is None:
            return
        self.stats.forgotten += 1
        ids = self._by_group.get((inc.kind, inc.site, inc.group))
        if ids is not None:
            if iid in ids:
                ids.remove(iid)
            if not ids:
                del self._by_group[(inc.kind, inc.site, inc.group)]
        for aid in inc.members:
            if self._alert_inc.get(aid) == iid:
                del self._alert_inc[aid]

    def _late(self, inc: _Inc) -> bool:
        return bool(inc.members) and all(m.late for m in inc.members.values())

    def _resolve(self, inc: _Inc, at: float, by: str, vi: str, en: str, out: list[IncidentChange]) -> None:
        inc.state = "resolved"
        inc.resolved_at = at
        inc.resolved_by = by
        entry = self._entry(inc, at, "resolved", by, vi, en)
        out.append(self._change("resolved", inc, entry))

    def acknowledge(self, incident_id: str, by: str, at: datetime, note: str = "") -> IncidentChange:
        inc = self._live(incident_id)
        if inc.state != "open":
            raise InvalidTransition(f"incident {incident_id} is {inc.state}, not open")
        t = at.timestamp()
        inc.state = "acknowledged"
        inc.acknowledged_at, inc.acknowledged_by = t, by
        entry = self._entry(inc, t, "acknowledged", by, note or "Đã tiếp nhận", note or "Acknowledged")
        return self._change("acknowledged", inc, entry)

    def resolve(self, incident_id: str, by: str, at: datetime, note: str = "") -> IncidentChange:
        inc = self._live(incident_id)
        out: list[IncidentChange] = []
        self._resolve(inc, at.timestamp(), by, note or "Đã xử lý xong", note or "Resolved", out)
        return out[0]

    def annotate(self, incident_id: str, by: str, at: datetime, note: str) -> IncidentChange:
        inc = self._incs.get(incident_id)
        if inc is None:
            raise UnknownIncident(incident_id)
        entry = self._entry(inc, at.timestamp(), "annotated", by, note, note)
        return self._change("annotated", inc, entry)

    def _live(self, incident_id: str) -> _Inc:
        inc = self._incs.get(incident_id)
        if inc is None:
            raise UnknownIncident(incident_id)
        if inc.merged_into is not None:
            raise InvalidTransition(f"incident {incident_id} was merged into {inc.merged_into}")
        if inc.state == "resolved":
            raise InvalidTransition(f"incident {incident_id} is already resolved")
        return inc

    # --- maintenance -----------------------------------------------------------------------

    def add_maintenance(self, window: MaintenanceWindow) -> None:
        """Suppress new alerts of the window's sensors, gateway or site. Incidents already open
        stay open (people are working on them)."""
        self.maintenance.add(window)

    def remove_maintenance(self, window_id: str) -> MaintenanceWindow | None:
        return self.maintenance.remove(window_id)

    # --- views -----------------------------------------------------------------------------

    def _entry(self, inc: _Inc, t: float, action: IncidentAction, by: str, vi: str, en: str,
               alert_id: str | None = None) -> TimelineEntry:
        entry = TimelineEntry(to_datetime(t), action, by, vi, en, alert_id)
        inc.timeline.append(entry)
        inc.updated_at = max(inc.updated_at, t)
        return entry

    def _change(self, action: IncidentAction, inc: _Inc, entry: TimelineEntry,
                alert_ids: tuple[str, ...] = ()) -> IncidentChange:
        return IncidentChange(action, self._view(inc), entry, alert_ids, self._notify_rank)

    def _view(self, inc: _Inc) -> Incident:
        members = inc.members.values()
        return Incident(
            id=inc.id, site=inc.site, kind=inc.kind, severity=inc.severity, state=inc.state,
            title_vi=inc.title_vi, title_en=inc.title_en, opened_at=to_datetime(inc.opened_at),
            acknowledged_at=_dt(inc.acknowledged_at), resolved_at=_dt(inc.resolved_at),
            updated_at=to_datetime(inc.updated_at), group=inc.group,
            alert_ids=tuple(inc.members), active_alert_ids=tuple(m.id for m in members if m.active),
            sensors=tuple(sorted({m.sensor for m in members if m.sensor is not None})),
            gateways=tuple(sorted({m.gateway for m in members})),
            acknowledged_by=inc.acknowledged_by, resolved_by=inc.resolved_by, escalated=inc.escalated,
            late=self._late(inc), merged_into=inc.merged_into, timeline=tuple(inc.timeline),
        )

    # --- snapshot --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        incs = []
        for i in self._incs.values():
            incs.append({
                "id": i.id, "site": i.site, "kind": i.kind, "group": i.group, "pattern": i.pattern,
                "severity": i.severity, "state": i.state, "title_vi": i.title_vi, "title_en": i.title_en,
                "opened_at": i.opened_at, "opened_wall": i.opened_wall, "updated_at": i.updated_at,
                "members": [alert_to_dict(m) for m in i.members.values()],
                "acknowledged_at": i.acknowledged_at, "acknowledged_by": i.acknowledged_by,
                "resolved_at": i.resolved_at, "resolved_by": i.resolved_by, "escalated": i.escalated,
                "merged_into": i.merged_into, "clear_event": i.clear_event, "clear_wall": i.clear_wall,
                "timeline": [[e.at.isoformat(), e.action, e.by, e.message_vi, e.message_en, e.alert_id]
                             for e in i.timeline],
            })
        pending = [[pi, site, grp, [alert_to_dict(m) for m in p.members.values()],
                    p.ready_event, p.ready_wall]
                   for (pi, site, grp), p in self._pending.items() if p.members]
        return {"v": SNAPSHOT_VERSION, "incidents": incs, "pending": pending,
                "suppressed": sorted(self._suppressed), "clock": dict(self._clock)}

    def restore(self, snap: dict[str, Any]) -> None:
        if snap.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported incident snapshot version {snap.get('v')!r}")
        self._incs, self._by_group, self._alert_inc, self._pending = {}, {}, {}, {}
        n_patterns = len(self.patterns.patterns)
        for d in snap["incidents"]:
            members = [alert_from_dict(m) for m in d["members"]]
            pattern = d["pattern"] if d["pattern"] is not None and d["pattern"] < n_patterns else None
            inc = _Inc(d["id"], d["site"], d["kind"], d["group"], pattern, d["severity"], d["state"],
                       d["title_vi"], d["title_en"], d["opened_at"], d["opened_wall"], d["updated_at"],
                       {m.id: m for m in members}, d["acknowledged_at"], d["acknowledged_by"],
                       d["resolved_at"], d["resolved_by"], d["escalated"], d["merged_into"],
                       d["clear_event"], d["clear_wall"],
                       [TimelineEntry(datetime.fromisoformat(e[0]), e[1], e[2], e[3], e[4], e[5])
                        for e in d["timeline"]])
            self._incs[inc.id] = inc
            self._by_group.setdefault((inc.kind, inc.site, inc.group), []).append(inc.id)
            for m in members:
                if inc.merged_into is None:
                    self._alert_inc[m.id] = inc.id
        for pi, site, grp, members, re, rw in snap["pending"]:
            if pi < n_patterns:
                self._pending[(pi, site, grp)] = _Pending(
                    {m["id"]: alert_from_dict(m) for m in members}, re, rw)
        self._suppressed = set(snap["suppressed"])
        self._clock = {k: float(v) for k, v in snap["clock"].items()}


def _dt(t: float | None) -> datetime | None:
    return None if t is None else to_datetime(t)
