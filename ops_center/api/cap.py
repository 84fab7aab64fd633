"""Incidents as OASIS Common Alerting Protocol 1.2 messages, and a site's current warnings as
an Atom feed of them. Built with ``xml.etree`` (text is escaped by the serializer; characters
XML 1.0 cannot carry are removed), no I/O: the routes (routes/cap.py) read the store.

Mapping (CAP 1.2 §3.2):

- ``identifier`` names one version of an incident (its id and ``updated_at``): the same
  version always gives the same message. ``sent`` is that version's time. The first version
  of an open incident is an ``Alert``; every later one is an ``Update`` whose ``references``
  names the first (``sender,identifier,sent``); a resolved incident is an ``Update`` with
  urgency ``Past`` and responseType ``AllClear``.
- ``scope`` is ``Restricted``: the API gives each message only to the users of its site.
- severity: info → Minor, warning → Moderate, critical → Severe, emergency → Extreme;
  urgency: Immediate for critical and emergency, Expected for warning, Future for info;
  certainty: Observed (sensors measured it), Possible for a statistical anomaly;
  category from the incident kind (``KINDS``).
- two ``info`` blocks: Vietnamese first (``vi-VN``), then English (``en-US``).
- ``area``: a circle around the incident's sensors (or gateways, or the site) from the
  registry coordinates, with a margin (larger where the registry marks the position as a
  placeholder); with three or more distinct positions, also their convex hull as a closed
  polygon pushed out by the same margin.
- Times are ``YYYY-MM-DDThh:mm:ss+07:00`` (Vietnam time; CAP forbids ``Z``).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from contract.registry import Location, Registry
from ops_center.adapters.records import AlertRecord, IncidentDetail, IncidentRecord

CAP_NS: Final = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS: Final = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE: Final = "application/cap+xml"
ATOM_MEDIA_TYPE: Final = "application/atom+xml"
VIETNAM: Final = timezone(timedelta(hours=7), "ICT")
ET.register_namespace("cap", CAP_NS)

SEVERITY: Final = {"info": "Minor", "warning": "Moderate", "critical": "Severe", "emergency": "Extreme"}
URGENCY: Final = {"info": "Future", "warning": "Expected", "critical": "Immediate", "emergency": "Immediate"}


@dataclass(frozen=True, slots=True)
class KindText:
    category: str  # CAP 1.2 category
    vi: str
    en: str


# Incident kinds (ops_center/rulebook/patterns.yaml, domain/incidents.py) -> CAP category and event.
KINDS: Final = {
    "fire_risk": KindText("Fire", "Nguy cơ cháy", "Fire risk"),
    "gas_leak": KindText("Safety", "Rò rỉ khí cháy", "Combustible gas leak"),
    "flooding": KindText("Met", "Ngập úng", "Flooding"),
    "discharge_breach": KindText("Env", "Nước thải vượt quy chuẩn", "Wastewater discharge above limits"),
    "emission_breach": KindText("Env", "Khí thải vượt quy chuẩn", "Stack emissions above limits"),
    "air_quality": KindText("Env", "Ô nhiễm không khí", "Air pollution"),
    "air_pollution": KindText("Env", "Ô nhiễm không khí", "Air pollution"),
    "noise": KindText("Env", "Tiếng ồn vượt quy chuẩn", "Noise above limits"),
    "lighting_fault": KindText("Infra", "Sự cố chiếu sáng công cộng", "Street lighting fault"),
    "bin_full": KindText("Env", "Thùng rác đầy", "Waste bin full"),
    "sensor_fault": KindText("Infra", "Sự cố thiết bị quan trắc", "Monitoring device fault"),
    "anomaly": KindText("Other", "Bất thường trong số liệu", "Anomaly in the readings"),
    "gateway_offline": KindText("Infra", "Mất kết nối cổng thu thập", "Gateway offline"),
    "area_outage": KindText("Infra", "Mất kết nối diện rộng", "Wide-area connectivity loss"),
}
_OTHER = KindText("Other", "Sự cố", "Incident")

MARGIN_KM: Final = 0.3
PLACEHOLDER_MARGIN_KM: Final = 1.5  # docs/domain-facts.md §5.2-5.3: An Xá's positions are estimates (±1.5 km)
HEADLINE_MAX: Final = 160  # CAP 1.2 §3.2.2: headline "SHOULD be less than 160 characters"
_EARTH_KM: Final = 6371.0
# XML 1.0 Char: no C0 controls except tab, newline, carriage return; no surrogates, no U+FFFE/F.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    """``text`` as XML carries it: without the characters XML 1.0 cannot hold, and with line
    ends as ``\n`` (a parser turns a literal CR into LF anyway, XML 1.0 §2.11)."""
    return _NOT_XML.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def cap_time(t: datetime) -> str:
    """CAP 1.2 dateTime: seconds, a numeric offset (Vietnam time), never ``Z``."""
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}")
    return t.astimezone(VIETNAM).replace(microsecond=0).isoformat()


def _version(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def identifier(incident_id: str, version_at: datetime) -> str:
    """No spaces, commas, '<' or '&' (CAP 1.2 §3.2.1): incident ids are [A-Za-z0-9._:-]."""
    return f"smartward-{incident_id}-{_version(version_at)}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, ns: str = CAP_NS) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ns}}}{tag}")
    if text is not None:
        el.text = clean(text)
    return el


# --- area ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Area:
    desc_vi: str
    desc_en: str
    center: tuple[float, float]
    radius_km: float
    polygon: tuple[tuple[float, float], ...] = ()  # closed: first == last, >= 4 points


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def _hull(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Convex hull (monotone chain) of (lat, lon) points, counter-clockwise in (lon, lat)."""
    pts = sorted({(p[1], p[0]) for p in points})
    if len(pts) < 3:
        return []

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    upper: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    return [(lat, lon) for lon, lat in hull] if len(hull) >= 3 else []


def _push_out(p: tuple[float, float], center: tuple[float, float], km: float) -> tuple[float, float]:
    """``p`` moved ``km`` further from ``center`` (flat approximation: areas of a few km)."""
    dlat_km = (p[0] - center[0]) * 111.32
    dlon_km = (p[1] - center[1]) * 111.32 * math.cos(math.radians(center[0]))
    d = math.hypot(dlat_km, dlon_km)
    if d == 0:
        return p
    f = (d + km) / d
    return (center[0] + (p[0] - center[0]) * f, center[1] + (p[1] - center[1]) * f)


def area_of(registry: Registry, incident: IncidentRecord, alerts: Sequence[AlertRecord]) -> Area:
    site = registry.sites.get(incident.site)
    located: dict[str, Location] = {}
    estimated = False  # a position the registry marks (or places near one it marks) as a placeholder
    names_vi: list[str] = []
    names_en: list[str] = []
    for a in alerts:
        ref = registry.sensors.get(a.sensor) if a.sensor else None
        gw = registry.gateways.get(a.gateway) if a.gateway else None
        if ref is not None and ref.spec.location is not None:
            located[ref.id] = ref.spec.location
        elif gw is not None and gw.location is not None:
            located[gw.id] = gw.location
        else:
            continue
        estimated = estimated or bool(gw is not None and gw.location is not None and gw.location.placeholder)
        if gw is not None and gw.name is not None and gw.name.vi not in names_vi:
            names_vi.append(gw.name.vi)
            names_en.append(gw.name.en)
    if not located and site is not None:
        located[site.id] = site.location
    site_vi = site.name.vi if site else incident.site
    site_en = site.name.en if site else incident.site
    desc_vi = f"{site_vi}: {', '.join(names_vi)}" if names_vi else site_vi
    desc_en = f"{site_en}: {', '.join(names_en)}" if names_en else site_en
    if not located:  # a site that left the registry: no position to give
        return Area(desc_vi, desc_en, (0.0, 0.0), 0.0)
    points = [(loc.lat, loc.lon) for loc in located.values()]
    estimated = estimated or any(loc.placeholder for loc in located.values())
    margin = PLACEHOLDER_MARGIN_KM if estimated else MARGIN_KM
    center = (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))
    radius = max(_km(center, p) for p in points) + margin
    hull = _hull(points)
    polygon: tuple[tuple[float, float], ...] = ()
    if hull:
        out = [_push_out(p, center, margin) for p in hull]
        polygon = (*out, out[0])
    return Area(desc_vi, desc_en, center, radius, polygon)


def _coord(p: tuple[float, float]) -> str:
    return f"{p[0]:.5f},{p[1]:.5f}"


# --- the alert -----------------------------------------------------------------------------------


def cap_alert(detail: IncidentDetail, registry: Registry, sender: str) -> ET.Element:
    """The CAP 1.2 ``alert`` of the incident as it is now."""
    inc = detail.incident
    kind = KINDS.get(inc.kind, _OTHER)
    first = inc.state == "open" and inc.updated_at == inc.opened_at
    resolved = inc.state == "resolved"
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", identifier(inc.id, inc.updated_at))
    _sub(alert, "sender", sender)
    _sub(alert, "sent", cap_time(inc.updated_at))
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", "Alert" if first else "Update")
    _sub(alert, "source", "smartward")
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", "Người dùng được phân quyền địa bàn / users authorised for the site "
                               f"{inc.site}")
    if not first:
        _sub(alert, "references", f"{sender},{identifier(inc.id, inc.opened_at)},{cap_time(inc.opened_at)}")
    _sub(alert, "incidents", inc.id)
    area = area_of(registry, inc, detail.alerts)
    site = registry.sites.get(inc.site)
    for lang, event, headline, desc, center_name, messages in (
        ("vi-VN", kind.vi, inc.title_vi, area.desc_vi, "Trung tâm điều hành đô thị thông minh",
         [a.message_vi for a in detail.alerts if a.message_vi]),
        ("en-US", kind.en, inc.title_en, area.desc_en, "Smart city operations center",
         [a.message_en for a in detail.alerts if a.message_en]),
    ):
        info = _sub(alert, "info")
        _sub(info, "language", lang)
        _sub(info, "category", kind.category)
        _sub(info, "event", event)
        _sub(info, "responseType", "AllClear" if resolved else "Monitor")
        _sub(info, "urgency", "Past" if resolved else URGENCY[inc.severity])
        _sub(info, "severity", SEVERITY[inc.severity])
        _sub(info, "certainty", "Possible" if inc.kind == "anomaly" else "Observed")
        code = _sub(info, "eventCode")
        _sub(code, "valueName", "smartward:kind")
        _sub(code, "value", inc.kind)
        _sub(info, "effective", cap_time(inc.updated_at))
        _sub(info, "onset", cap_time(inc.opened_at))
        site_name = (site.name.vi if lang == "vi-VN" else site.name.en) if site else inc.site
        _sub(info, "senderName", f"{center_name} - {site_name}")
        _sub(info, "headline", headline[:HEADLINE_MAX])
        _sub(info, "description", "\n".join([headline, *messages]))
        for name, value in (("smartward:incident", inc.id), ("smartward:site", inc.site),
                            ("smartward:state", inc.state), ("smartward:severity", inc.severity)):
            param = _sub(info, "parameter")
            _sub(param, "valueName", name)
            _sub(param, "value", value)
        el = _sub(info, "area")
        _sub(el, "areaDesc", desc)
        if area.polygon:
            _sub(el, "polygon", " ".join(_coord(p) for p in area.polygon))
        if area.radius_km > 0:
            _sub(el, "circle", f"{_coord(area.center)} {area.radius_km:.3f}")
    return alert


def cap_document(detail: IncidentDetail, registry: Registry, sender: str) -> bytes:
    out: bytes = ET.tostring(cap_alert(detail, registry, sender), encoding="utf-8", xml_declaration=True,
                             default_namespace=CAP_NS)
    return out


# --- the Atom feed -------------------------------------------------------------------------------


def _atom(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = clean(text)
    return el


def atom_feed(site_id: str, details: Sequence[IncidentDetail], registry: Registry, sender: str,
              self_url: str, cap_url: str, now: datetime) -> bytes:
    """RFC 4287 feed of the site's current warnings, one entry per incident with its CAP
    message as the entry's content. ``cap_url`` has ``{id}`` for an incident's ``.cap`` URL."""
    site = registry.sites.get(site_id)
    name_vi = site.name.vi if site else site_id
    name_en = site.name.en if site else site_id
    # Atom elements are written unqualified under a default namespace declared on the root:
    # ElementTree's `default_namespace` refuses the unqualified attributes Atom needs (rel,
    # href, type), and registering "" as a prefix would change every other document.
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    _atom(feed, "id", f"urn:smartward:cap:{site_id}")
    _atom(feed, "title", f"Cảnh báo hiện hành - {name_vi} / Current warnings - {name_en}")
    updated = max((d.incident.updated_at for d in details), default=now)
    _atom(feed, "updated", cap_time(updated))
    author = _atom(feed, "author")
    _atom(author, "name", "smartward")
    link = _atom(feed, "link")
    link.set("rel", "self")
    link.set("href", self_url)
    for d in details:
        inc = d.incident
        entry = _atom(feed, "entry")
        _atom(entry, "id", f"urn:smartward:cap:{identifier(inc.id, inc.updated_at)}")
        _atom(entry, "title", f"{inc.title_vi} / {inc.title_en}")
        _atom(entry, "updated", cap_time(inc.updated_at))
        _atom(entry, "published", cap_time(inc.opened_at))
        alt = _atom(entry, "link")
        alt.set("rel", "alternate")
        alt.set("type", CAP_MEDIA_TYPE)
        alt.set("href", cap_url.format(id=inc.id))
        _atom(entry, "summary", f"{SEVERITY[inc.severity]}: {inc.title_vi} / {inc.title_en}")
        content = _atom(entry, "content")
        content.set("type", CAP_MEDIA_TYPE)
        content.append(cap_alert(d, registry, sender))
    out: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return out
