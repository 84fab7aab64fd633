"""Message text: Vietnamese first, then English, short enough for an SMS.

A message says: why (new, escalated, worse, resolved), severity, the incident's title (kind and
place, already in display names from the registry: "Ngập úng tại Hàn Thuyên"), the site's
name, the time in Vietnam time, one line of what was measured (the leading alert's message),
and the link to the incident on the screen (``SMARTWARD_PUBLIC_URL`` + the incident id).
The acknowledge link is added per contact at sending time (ops_center/notify/acklink.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import quote
from weakref import WeakKeyDictionary

from contract.registry import Registry
from ops_center.adapters.records import AlertRecord, IncidentRecord, NotificationRecord
from ops_center.domain.notify import VIETNAM, Reason

SEVERITY: Final = {
    "info": ("Thông tin", "Info"),
    "warning": ("Cảnh báo", "Warning"),
    "critical": ("Nghiêm trọng", "Critical"),
    "emergency": ("KHẨN CẤP", "EMERGENCY"),
}
REASON: Final[dict[Reason, tuple[str, str]]] = {
    "opened": ("Sự cố mới", "New incident"),
    "escalated": ("Chưa ai tiếp nhận", "Not acknowledged"),
    "severity": ("Tăng mức độ", "Severity raised"),
    "resolved": ("Đã xử lý xong", "Resolved"),
}
_SLUG: Final = re.compile(r"(?<![\w-])[a-z0-9][a-z0-9-]*[a-z0-9](?![\w-])")
_NAMES: WeakKeyDictionary[Registry, dict[str, tuple[str, str]]] = WeakKeyDictionary()
MEASURED_MAX: Final = 90  # characters of the "what was measured" line, per language
TITLE_MAX: Final = 80


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    body: str


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def incident_link(public_url: str, incident_id: str) -> str:
    return f"{public_url.rstrip('/')}/screen/?incident={quote(incident_id, safe='')}"


def vn_time(at: datetime) -> str:
    return at.astimezone(VIETNAM).strftime("%H:%M %d/%m/%Y")


def display_names(registry: Registry) -> dict[str, tuple[str, str]]:
    """Slug → (vi, en) display name: sites, gateways, sensors (their own name, else their
    gateway's), and sensor attribute values (``factory: det-nhuom-1``) that belong to one
    gateway only (the place is then that gateway's). Rule titles and alert messages name
    places by these slugs; a message on a phone names them as people do."""
    cached = _NAMES.get(registry)
    if cached is not None:
        return cached
    names: dict[str, tuple[str, str]] = {}
    attr_gateways: dict[str, set[str]] = {}
    for _site, gw in registry.iter_gateways():
        gw_name = (gw.name.vi, gw.name.en) if gw.name is not None else None
        if gw_name is not None:
            names[gw.id] = gw_name
        for sensor in gw.sensors:
            own = (sensor.name.vi, sensor.name.en) if sensor.name is not None else gw_name
            if own is not None:
                names[sensor.id] = own
            for value in sensor.attrs.values():
                if isinstance(value, str) and _SLUG.fullmatch(value):
                    attr_gateways.setdefault(value, set()).add(gw.id)
    for value, gws in attr_gateways.items():
        only = next(iter(gws)) if len(gws) == 1 else None
        if only is not None and only in names and value not in names:
            names[value] = names[only]
    for site_spec in registry.spec.sites:
        names[site_spec.id] = (site_spec.name.vi, site_spec.name.en)
    _NAMES[registry] = names
    return names


def humanize(text: str, registry: Registry, lang: int) -> str:
    """``text`` with the registry's slugs replaced by display names (``lang``: 0 vi, 1 en)."""
    names = display_names(registry)
    return _SLUG.sub(lambda m: names[m.group(0)][lang] if m.group(0) in names else m.group(0), text)


def render(
    incident: IncidentRecord,
    alerts: Sequence[AlertRecord],
    reason: Reason,
    registry: Registry,
    public_url: str,
) -> Message:
    """The message about ``incident`` for ``reason``; ``alerts`` are its members (the newest
    active one is quoted as what was measured)."""
    site = registry.sites.get(incident.site)
    site_vi, site_en = (site.name.vi, site.name.en) if site is not None else (incident.site, incident.site)
    sev_vi, sev_en = SEVERITY[incident.severity]
    why_vi, why_en = REASON[reason]
    lead = _lead(alerts)
    at = incident.resolved_at if reason == "resolved" and incident.resolved_at else incident.opened_at
    when = vn_time(at)
    title_vi = _cut(humanize(incident.title_vi, registry, 0), TITLE_MAX)
    title_en = _cut(humanize(incident.title_en, registry, 1), TITLE_MAX)
    vi = f"[{sev_vi}] {why_vi}: {title_vi} ({site_vi}), {when}."
    en = f"[{sev_en}] {why_en}: {title_en} ({site_en})."
    if lead is not None and lead.message_vi:
        vi += " " + _cut(humanize(lead.message_vi, registry, 0), MEASURED_MAX)
    if lead is not None and lead.message_en:
        en += " " + _cut(humanize(lead.message_en, registry, 1), MEASURED_MAX)
    subject = f"[{sev_vi}/{sev_en}] {why_vi}: {title_vi} — {site_vi}"
    body = f"{vi}\n{en}\n{incident_link(public_url, incident.id)}"
    return Message(subject=subject, body=body)


def _lead(alerts: Sequence[AlertRecord]) -> AlertRecord | None:
    if not alerts:
        return None
    ranked = sorted(alerts, key=lambda a: (a.state == "active", a.updated_at), reverse=True)
    return ranked[0]


def render_digest(rows: Sequence[NotificationRecord], public_url: str, at: datetime) -> Message:
    """One message for a burst (the rate limit folded ``rows`` together)."""
    n = len(rows)
    incidents = len({r.incident_id for r in rows})
    first = rows[0].subject if rows else ""
    subject = f"[Tổng hợp/Digest] {incidents} sự cố / incidents — {vn_time(at)}"
    lines = [
        f"Tổng hợp {n} thông báo về {incidents} sự cố (giới hạn tin nhắn). Mới nhất: {_cut(first, 100)}",
        f"Digest of {n} notifications about {incidents} incidents (message limit reached).",
        f"{public_url.rstrip('/')}/screen/",
    ]
    return Message(subject=subject, body="\n".join(lines))


def ack_line(link: str) -> str:
    return f"Xác nhận đã nhận / Acknowledge: {link}"
