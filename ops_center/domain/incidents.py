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

The lifecycle's transitions are ops_center/domain/lifecycle.py's (:func:`next_state`), shared
with the store's mutation of people's actions; what people did is taken from the store by
:meth:`IncidentManager.adopt`. The parts: ``incident_model`` (data), ``incident_core``
(members, views), ``incident_routing`` (patterns, topology), ``incident_snapshot``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from ops_center.domain.alerts import AlertChange
from ops_center.domain.errors import InvalidTransition, UnknownIncident
from ops_center.domain.incident_model import (
    AREA_KIND,
    GATEWAY_KIND,
    GATEWAY_RULE_KINDS,
    Incident,
    IncidentChange,
    ManagerStats,
    TimelineEntry,
    Tracked,
)
from ops_center.domain.incident_routing import IncidentRouting
from ops_center.domain.incident_snapshot import pack_incidents, unpack_incidents
from ops_center.domain.lifecycle import IncidentAction, IncidentState, next_state
from ops_center.domain.maintenance import MaintenanceWindow

__all__ = [
    "AREA_KIND", "GATEWAY_KIND", "GATEWAY_RULE_KINDS", "Incident", "IncidentAction", "IncidentChange",
    "IncidentManager", "IncidentState", "ManagerStats", "StoredLifecycle", "TimelineEntry",
]


class IncidentManager(IncidentRouting):
    """Pure: fed alert changes and the time, it returns incident changes (module docstring)."""

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
                inc.state = next_state(inc.state, "escalated")
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

    def _auto_resolve(self, inc: Tracked, now_s: float, out: list[IncidentChange]) -> bool:
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


    def acknowledge(self, incident_id: str, by: str, at: datetime, note: str = "") -> IncidentChange:
        inc = self._live(incident_id)
        t = at.timestamp()
        inc.state = next_state(inc.state, "acknowledged")
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

    def find(self, incident_id: str) -> Incident | None:
        inc = self._incs.get(incident_id)
        return None if inc is None else self._view(inc)

    def adopt(self, incident_id: str, stored: StoredLifecycle, *, action: IncidentAction, by: str,
              at: datetime, note: str = "", quiet: bool = False) -> IncidentChange | None:
        """Take the lifecycle a person's committed action left in the store (the store is the
        truth: this never refuses). The timeline entry is the action's, in memory only (the API
        wrote it to the store; ``quiet``: none, and None is returned). None when the manager does
        not track the incident (forgotten after its reopen window, or never seen)."""
        inc = self._incs.get(incident_id)
        if inc is None:
            return None
        t = at.timestamp()
        was_live = inc.live
        inc.state = stored.state
        inc.acknowledged_at = _ts(stored.acknowledged_at)
        inc.resolved_at = _ts(stored.resolved_at)
        if stored.state != "open" and inc.acknowledged_by is None and stored.acknowledged_at is not None:
            inc.acknowledged_by = by
        if stored.state == "open":
            inc.acknowledged_by = None
        if stored.state == "resolved":
            if action == "resolved" or inc.resolved_by is None:
                inc.resolved_by = by
            inc.clear_event = inc.clear_wall = None
        else:
            inc.resolved_by = None
            if not was_live and inc.merged_into is None and all(not m.active for m in inc.members.values()):
                inc.clear_event, inc.clear_wall = t, t  # live again, nothing active: the hold runs
        inc.escalated = inc.escalated or stored.escalated_at is not None
        if quiet:
            return None
        words = {"acknowledged": ("Đã tiếp nhận", "Acknowledged"), "resolved": ("Đã xử lý xong", "Resolved")}
        vi, en = (note, note) if note else words.get(action, (action, action))
        entry = self._entry(inc, t, action, by, vi, en)
        return self._change(action, inc, entry)

    def _live(self, incident_id: str) -> Tracked:
        inc = self._incs.get(incident_id)
        if inc is None:
            raise UnknownIncident(incident_id)
        if inc.merged_into is not None:
            raise InvalidTransition(f"incident {incident_id} was merged into {inc.merged_into}",
                                    state=inc.state)
        if inc.state == "resolved":
            raise InvalidTransition(f"incident {incident_id} is already resolved", state=inc.state)
        return inc

    # --- maintenance -----------------------------------------------------------------------

    def add_maintenance(self, window: MaintenanceWindow) -> None:
        """Suppress new alerts of the window's sensors, gateway or site. Incidents already open
        stay open (people are working on them)."""
        self.maintenance.add(window)

    def remove_maintenance(self, window_id: str) -> MaintenanceWindow | None:
        return self.maintenance.remove(window_id)

    # --- snapshot --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return pack_incidents(self._incs, self._pending, self._suppressed, self._clock)

    def restore(self, snap: dict[str, Any]) -> None:
        incs, self._pending, self._suppressed, self._clock = unpack_incidents(
            snap, len(self.patterns.patterns))
        self._incs, self._by_group, self._alert_inc = {}, {}, {}
        for inc in incs:
            self._incs[inc.id] = inc
            self._by_group.setdefault((inc.kind, inc.site, inc.group), []).append(inc.id)
            if inc.merged_into is None:
                for aid in inc.members:
                    self._alert_inc[aid] = inc.id


class StoredLifecycle(Protocol):
    """An incident's lifecycle as the store holds it (the adapters' ``IncidentRecord`` is one)."""

    @property
    def state(self) -> IncidentState: ...
    @property
    def acknowledged_at(self) -> datetime | None: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def escalated_at(self) -> datetime | None: ...


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()
