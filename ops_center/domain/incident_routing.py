"""Routing an alert to its incident: the correlation patterns (grouping, windows, distance,
delayed openings, upgrades of kind) and the topology (a gateway outage absorbs its sensors'
silence; several gateways down become one area outage, the gateway incidents merged into it)."""

from __future__ import annotations

from ops_center.domain.alerts import Alert, to_datetime
from ops_center.domain.correlation import Pattern, distance_m, group_value, sensor_position
from ops_center.domain.incident_core import IncidentCore
from ops_center.domain.incident_model import (
    AREA_KIND,
    GATEWAY_KIND,
    GATEWAY_RULE_KINDS,
    IncidentChange,
    Pending,
    Tracked,
)
from ops_center.domain.lifecycle import next_state


class IncidentRouting(IncidentCore):
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
            pend = self._pending.setdefault((pi, a.site, grp), Pending())
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

    def _ready(self, p: Pattern, pend: Pending) -> bool:
        members = [(m, self._sensor_kind(m)) for m in pend.members.values() if m.active]
        return any(c.satisfied(members) for c in p.opens)

    def _delay_passed(self, pend: Pending, p: Pattern, site: str, now_s: float) -> bool:
        if pend.ready_event is None or pend.ready_wall is None:
            return False
        event_now = self._clock.get(site, pend.ready_event)
        return (event_now - pend.ready_event >= p.open_delay_s
                or now_s - pend.ready_wall >= p.open_delay_s)

    def _expire(self, pend: Pending, p: Pattern, t: float) -> None:
        for aid in [aid for aid, m in pend.members.items()
                    if not m.active or t - m.updated_at.timestamp() > p.window_s]:
            del pend.members[aid]
        if not pend.members:
            pend.ready_event = pend.ready_wall = None

    def _find(self, p: Pattern | None, kind: str, site: str, grp: str, a: Alert, t: float) -> Tracked | None:
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

    def _near(self, inc: Tracked, a: Alert, limit_m: float) -> bool:
        pos = sensor_position(self.registry, a.sensor, a.gateway)
        if pos is None:
            return True
        for m in inc.members.values():
            other = sensor_position(self.registry, m.sensor, m.gateway)
            if other is None or distance_m(pos[0], pos[1], other[0], other[1]) <= limit_m:
                return True
        return False

    def _open_from(self, pi: int, p: Pattern, site: str, grp: str, pend: Pending, t: float,
                   now_s: float, out: list[IncidentChange], *, by: str) -> None:
        members = [m for m in pend.members.values() if m.active and m.id not in self._alert_inc]
        pend.ready_event = pend.ready_wall = None
        if not members:
            return
        inc = self._new(site, p.kind, grp, pi, members, t, now_s, floor=p.severity_floor)
        self._record_open(inc, members, t, by, out)

    def _upgrade(self, inc: Tracked, pi: int, p: Pattern, pend: Pending, t: float, now_s: float,
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

    def _gateway_host(self, site: str, gateway: str) -> Tracked | None:
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

    def _absorb_silence(self, host: Tracked, gateway: str, t: float, now_s: float,
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

    def _merge(self, child: Tracked, parent: Tracked, t: float, now_s: float,
               out: list[IncidentChange]) -> None:
        if child is parent or child.merged_into is not None:
            return
        moved = list(child.members.values())
        child.state = next_state(child.state, "merged")
        child.merged_into = parent.id
        child.resolved_at = t
        child.resolved_by = "system"
        entry = self._entry(child, t, "merged", "system", f"Gộp vào sự cố {parent.title_vi}",
                            f"Merged into {parent.title_en}")
        out.append(self._change("merged", child, entry))
        self._attach(parent, moved, t, now_s, out, by="system")

