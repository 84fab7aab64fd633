"""The incident manager's state as plain data (saved with the ops service's rule state,
ops_center/service/state.py) and back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ops_center.domain.alerts import alert_from_dict, alert_to_dict
from ops_center.domain.incident_model import SNAPSHOT_VERSION, Pending, TimelineEntry, Tracked

PendingKey = tuple[int, str, str]  # (pattern index, site, group)


def pack_incidents(incs: dict[str, Tracked], pending: dict[PendingKey, Pending],
                   suppressed: set[str], clock: dict[str, float]) -> dict[str, Any]:
    out = []
    for i in incs.values():
        out.append({
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
    waiting = [[pi, site, grp, [alert_to_dict(m) for m in p.members.values()], p.ready_event, p.ready_wall]
               for (pi, site, grp), p in pending.items() if p.members]
    return {"v": SNAPSHOT_VERSION, "incidents": out, "pending": waiting,
            "suppressed": sorted(suppressed), "clock": dict(clock)}


def unpack_incidents(snap: dict[str, Any], n_patterns: int) -> tuple[
        list[Tracked], dict[PendingKey, Pending], set[str], dict[str, float]]:
    """The tracked incidents, pending groups, suppressed alert ids and site clocks of ``snap``;
    ValueError for another version. Pattern indexes beyond ``n_patterns`` (a shorter pattern
    file since) are dropped."""
    if snap.get("v") != SNAPSHOT_VERSION:
        raise ValueError(f"unsupported incident snapshot version {snap.get('v')!r}")
    incs: list[Tracked] = []
    for d in snap["incidents"]:
        members = [alert_from_dict(m) for m in d["members"]]
        pattern = d["pattern"] if d["pattern"] is not None and d["pattern"] < n_patterns else None
        incs.append(Tracked(
            d["id"], d["site"], d["kind"], d["group"], pattern, d["severity"], d["state"],
            d["title_vi"], d["title_en"], d["opened_at"], d["opened_wall"], d["updated_at"],
            {m.id: m for m in members}, d["acknowledged_at"], d["acknowledged_by"],
            d["resolved_at"], d["resolved_by"], d["escalated"], d["merged_into"],
            d["clear_event"], d["clear_wall"],
            [TimelineEntry(datetime.fromisoformat(e[0]), e[1], e[2], e[3], e[4], e[5])
             for e in d["timeline"]]))
    pending: dict[PendingKey, Pending] = {}
    for pi, site, grp, members, re, rw in snap["pending"]:
        if pi < n_patterns:
            pending[(pi, site, grp)] = Pending({m["id"]: alert_from_dict(m) for m in members}, re, rw)
    return incs, pending, set(snap["suppressed"]), {k: float(v) for k, v in snap["clock"].items()}
