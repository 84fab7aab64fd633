"""Correlation and incident lifecycle, with a fake clock: patterns, topology, auto-resolve,
reopen, escalation, maintenance, late data, snapshots."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from contract.registry import load_registry
from ops_center.domain.alerts import AlertBook, AlertChange, AlertContext, Severity, severity_rank
from ops_center.domain.correlation import display_attrs, sensor_display_name
from ops_center.domain.errors import InvalidTransition, UnknownIncident
from ops_center.domain.incidents import IncidentChange, IncidentManager
from ops_center.domain.maintenance import MaintenanceWindow
from ops_center.rulebook.loader import load_patterns

REGISTRY = load_registry()
PATTERNS = load_patterns()
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CATEGORY = {"flood-depth": "flood", "flood-rising": "flood", "rain-heavy": "rain",
            "drain-freeboard": "drainage",
            "gas-lel": "gas", "fire-heat": "fire", "fire-smoke": "fire", "ww-qcvn40": "wastewater",
            "sensor-silent": "connectivity", "gateway-offline": "connectivity", "stuck-value": "data_quality",
            "noise-laeq-1h": "noise", "bin-full": "waste", "power-anomaly": "anomaly", "lamp-out": "lighting"}
KIND = {"sensor-silent": "freshness", "gateway-offline": "gateway_offline", "stuck-value": "stuck"}


class Scene:
    """Alerts raised by hand through an AlertBook, fed to a manager on a fake clock."""

    def __init__(self) -> None:
        self.book = AlertBook(reraise_hold_s=0)
        self.mgr = IncidentManager(REGISTRY, PATTERNS)
        self.now = T0
        self.log: list[IncidentChange] = []

    def ctx(self, rule: str, sensor: str | None, metric: str | None = None,
            gateway: str | None = None) -> AlertContext:
        if sensor is not None:
            ref = REGISTRY.sensors[sensor]
            site, gw = ref.site, ref.gateway
            metric = metric or ref.spec.metrics[0]
        else:
            assert gateway is not None
            site, gw = REGISTRY.gateway_site[gateway], gateway
        return AlertContext(rule, KIND.get(rule, "threshold"), CATEGORY[rule], site, gw, sensor, metric,
                            f"{rule} {sensor or gw}", f"{rule} {sensor or gw}")

    def set(self, rule: str, sensor: str | None, severity: Severity | None, *, at: datetime | None = None,
            gateway: str | None = None, late: bool = False,
            metric: str | None = None) -> list[IncidentChange]:
        level = 0 if severity is None else severity_rank(severity)
        when = at or self.now
        ch = self.book.set_level(self.ctx(rule, sensor, metric, gateway), level, when.timestamp(), late=late)
        changes: list[AlertChange] = [ch] if ch is not None else []
        out = self.mgr.apply(changes, self.now)
        self.log += out
        return out

    def advance(self, minutes: float) -> list[IncidentChange]:
        self.now += timedelta(minutes=minutes)
        out = self.mgr.tick(self.now)
        self.log += out
        return out

    def live(self) -> list[tuple[str, str, str]]:
        return [(i.kind, i.site, i.state) for i in self.mgr.incidents()]


def test_flood_evening_many_alerts_make_one_flooding_incident() -> None:
    s = Scene()
    s.set("rain-heavy", "tn-rain-01", "warning")  # rain alone waits for water
    assert s.live() == []
    s.advance(10)
    s.set("flood-rising", "tn-flood-01", "warning")
    for sensor in ("tn-flood-01", "tn-flood-02", "tn-flood-03"):
        s.set("flood-depth", sensor, "info")
    s.advance(5)
    for sensor in ("tn-flood-01", "tn-flood-02", "tn-flood-03"):
        s.set("flood-depth", sensor, "critical")
    s.set("drain-freeboard", "tn-drain-01", "critical")
    s.set("rain-heavy", "tn-rain-01", "critical")
    incidents = s.mgr.incidents()
    assert [(i.kind, i.site) for i in incidents] == [("flooding", "thong-nhat")]
    inc = incidents[0]
    assert len(inc.alert_ids) == 6 and inc.severity == "critical"
    assert inc.title_vi == "Ngập úng tại Trần Đăng Ninh"
    assert inc.title_en == "Flooding at Trần Đăng Ninh"
    opened = [c for c in s.log if c.action == "opened"]
    assert len(opened) == 1 and opened[0].notify
    assert set(opened[0].alert_ids) >= {inc.alert_ids[0]}  # the waiting rain alert joined at opening
    assert opened[0].incident.opened_at == T0 + timedelta(minutes=10)


def test_deep_water_alone_opens_flooding() -> None:
    s = Scene()
    s.set("flood-depth", "qt-flood-01", "warning")
    assert s.live() == [("flooding", "quang-trung", "open")]
    assert s.mgr.incidents()[0].title_vi == "Ngập úng tại Hàng Sắt"


def test_two_gateways_of_a_site_offline_make_one_area_outage() -> None:
    s = Scene()
    s.set("gateway-offline", None, "warning", gateway="tn-gw-01")
    assert s.live() == [("gateway_offline", "thong-nhat", "open")]
    s.set("sensor-silent", "tn-aq-01", "warning", metric="pm25")  # absorbed by the gateway incident
    s.advance(2)
    s.set("gateway-offline", None, "warning", gateway="tn-gw-02")
    assert s.live() == [("area_outage", "thong-nhat", "open")]
    area = s.mgr.incidents()[0]
    assert area.title_vi == "Mất kết nối diện rộng tại Phường Thống Nhất"
    assert area.gateways == ("tn-gw-01", "tn-gw-02") and len(area.alert_ids) == 3
    assert area.severity == "critical"
    merged = s.mgr.incidents(include_merged=True)
    assert sum(1 for i in merged if i.merged_into == area.id) == 2
    # A third gateway joins the open area outage instead of opening its own incident.
    s.set("gateway-offline", None, "warning", gateway="tn-gw-03")
    assert s.live() == [("area_outage", "thong-nhat", "open")]
    assert not [c for c in s.log if c.action == "opened" and c.incident.kind == "gateway_offline"
                and c.incident.group == "tn-gw-03"]


def test_gateways_of_different_sites_stay_separate() -> None:
    s = Scene()
    s.set("gateway-offline", None, "warning", gateway="tn-gw-01")
    s.set("gateway-offline", None, "warning", gateway="qt-gw-01")
    assert sorted(s.live()) == [("gateway_offline", "quang-trung", "open"),
                                ("gateway_offline", "thong-nhat", "open")]


def test_sensor_silence_before_the_last_will_is_absorbed_not_opened() -> None:
    s = Scene()
    s.set("sensor-silent", "tn-flood-01", "warning")
    s.set("sensor-silent", "tn-flood-02", "warning")
    s.advance(1)  # within the sensor_fault pattern's open delay
    assert s.live() == []
    s.set("gateway-offline", None, "warning", gateway="tn-gw-02")
    assert s.live() == [("gateway_offline", "thong-nhat", "open")]
    assert len(s.mgr.incidents()[0].alert_ids) == 3
    s.advance(10)
    assert s.live() == [("gateway_offline", "thong-nhat", "open")]


def test_a_silent_sensor_of_a_live_gateway_becomes_a_sensor_fault() -> None:
    s = Scene()
    s.set("sensor-silent", "tn-flood-03", "warning")
    assert s.live() == []
    out = s.advance(6)
    assert [(c.action, c.incident.kind) for c in out] == [("opened", "sensor_fault")]


def test_auto_resolve_after_the_hold_then_reopen_on_recurrence() -> None:
    s = Scene()
    s.set("flood-depth", "tn-flood-01", "warning")
    s.advance(5)
    s.set("flood-depth", "tn-flood-01", None)  # cleared
    assert s.advance(10) == []
    out = s.advance(6)  # 16 min after clearing: hold is 15 min
    assert [c.action for c in out] == ["resolved"]
    inc = out[0].incident
    assert inc.state == "resolved" and inc.resolved_by == "system"
    s.advance(20)
    s.set("flood-depth", "tn-flood-01", "warning")  # within the 1 h reopen window
    assert [c.action for c in s.log[-2:]] == ["reopened", "alert_added"]
    assert s.mgr.get(inc.id).state == "open" and len(s.mgr.incidents()) == 1


def test_recurrence_after_the_reopen_window_is_a_new_incident() -> None:
    s = Scene()
    s.set("flood-depth", "tn-flood-01", "warning")
    s.set("flood-depth", "tn-flood-01", None)
    s.advance(16)
    s.advance(70)
    s.set("flood-depth", "tn-flood-01", "warning", at=s.now)
    assert sorted(i.state for i in s.mgr.incidents()) == ["open", "resolved"]


def test_auto_resolve_follows_the_data_clock_of_a_fast_simulation() -> None:
    s = Scene()
    s.set("flood-depth", "tn-flood-01", "warning")
    s.set("flood-depth", "tn-flood-01", None, at=T0 + timedelta(minutes=1))
    # Wall time has not moved, but the site's data moved 20 minutes on: the flood is resolved
    # (at the end of its hold) before the new alert is routed.
    out = s.set("noise-laeq-1h", "tn-noise-02", "warning", at=T0 + timedelta(minutes=21))
    assert (out[0].action, out[0].incident.kind) == ("resolved", "flooding")
    assert out[0].incident.resolved_at == T0 + timedelta(minutes=16)
    assert s.advance(0) == []


def test_a_new_alert_long_after_the_last_clear_opens_a_new_incident_without_a_tick() -> None:
    s = Scene()
    s.set("ww-qcvn40", "ax-ww-01", "warning")
    s.set("ww-qcvn40", "ax-ww-01", None, at=T0 + timedelta(hours=6))
    # No tick ran (a fast simulation), and no other alert of the site came in between.
    out = s.set("ww-qcvn40", "ax-ww-01", "warning", metric="ww_tss", at=T0 + timedelta(days=2))
    assert [c.action for c in out] == ["resolved", "opened"]
    assert out[0].incident.id != out[1].incident.id


def test_an_unacknowledged_critical_incident_escalates_once() -> None:
    s = Scene()
    s.set("flood-depth", "tn-flood-01", "critical")
    assert s.advance(14) == []
    out = s.advance(2)
    assert [(c.action, c.notify) for c in out] == [("escalated", True)]
    assert s.mgr.incidents()[0].escalated
    assert s.advance(30) == []


def test_an_acknowledged_incident_does_not_escalate() -> None:
    s = Scene()
    s.set("gas-lel", "ax-gas-01", "emergency")
    inc = s.mgr.incidents()[0]
    ack = s.mgr.acknowledge(inc.id, "nguyen.van.a", s.now, "đang xử lý")
    assert ack.incident.state == "acknowledged" and ack.entry.by == "nguyen.van.a"
    assert s.advance(30) == []
    with pytest.raises(InvalidTransition):
        s.mgr.acknowledge(inc.id, "x", s.now)
    res = s.mgr.resolve(inc.id, "nguyen.van.a", s.now, "đã khóa van")
    assert res.incident.state == "resolved" and res.incident.resolved_by == "nguyen.van.a"
    with pytest.raises(InvalidTransition):
        s.mgr.resolve(inc.id, "x", s.now)
    with pytest.raises(UnknownIncident):
        s.mgr.get("nope")
    note = s.mgr.annotate(inc.id, "lanh.dao", s.now, "cần báo cáo")
    assert [e.action for e in note.incident.timeline] == ["opened", "acknowledged", "resolved", "annotated"]


def test_late_incidents_never_page() -> None:
    s = Scene()
    out = s.set("flood-depth", "tn-flood-01", "emergency", late=True)
    assert [(c.action, c.notify) for c in out] == [("opened", False)]
    assert s.mgr.incidents()[0].late
    assert s.advance(60) == []  # no escalation from the past


def test_titles_name_zones_and_silent_sensors_for_people() -> None:
    reg = load_registry()
    spec = reg.sensors["tn-aq-01"].spec
    assert display_attrs(spec.attrs, "vi")["zone"] == "Trường Tiểu học Thống Nhất"
    assert display_attrs(spec.attrs, "en")["zone"] == "Thong Nhat primary school"
    assert sensor_display_name(reg.sensors["tn-flood-01"].spec, "vi") == "Cảm biến ngập đường tn-flood-01"


def test_gas_leak_becomes_fire_risk_when_heat_joins_at_the_same_factory() -> None:
    s = Scene()
    s.set("gas-lel", "ax-gas-01", "warning")
    assert s.live() == [("gas_leak", "an-xa", "open")]
    # The factory by its registry display name, never its slug.
    assert s.mgr.incidents()[0].title_vi == "Rò rỉ khí cháy tại Nhà máy dệt nhuộm số 1"
    assert s.mgr.incidents()[0].title_en == "Gas leak at Dyeing mill no. 1"
    s.set("gas-lel", "ax-gas-03", "warning")  # another factory: its own incident
    s.set("fire-heat", "ax-fire-01", "critical")
    kinds = sorted((i.kind, i.group) for i in s.mgr.incidents())
    assert kinds == [("fire_risk", "factory=det-nhuom-1"), ("gas_leak", "factory=co-khi-2")]
    actions = [c.action for c in s.log if c.incident.group == "factory=det-nhuom-1"]
    assert actions[:2] == ["opened", "kind_changed"]


def test_several_effluent_parameters_make_one_discharge_breach() -> None:
    s = Scene()
    for metric in ("ww_cod", "ww_tss", "ww_nh4"):
        s.set("ww-qcvn40", "ax-ww-01", "warning", metric=metric)
    assert s.live() == [("discharge_breach", "an-xa", "open")]
    assert len(s.mgr.incidents()[0].alert_ids) == 3


def test_noise_groups_by_zone() -> None:
    s = Scene()
    s.set("noise-laeq-1h", "tn-noise-01", "warning")
    s.set("noise-laeq-1h", "tn-noise-02", "warning")
    assert sorted(i.group for i in s.mgr.incidents()) == ["zone=pho-chinh", "zone=truong-hoc"]


def test_info_anomalies_alone_open_nothing() -> None:
    s = Scene()
    s.set("power-anomaly", "ax-pwr-01", "info", metric="power_kw")
    assert s.live() == []


def test_maintenance_suppresses_incidents_and_says_who_and_why() -> None:
    s = Scene()
    window = MaintenanceWindow("mw-1", "site", "quang-trung", T0, "tran.thi.b",
                               "nạo vét cống / drain dredging", ends_at=T0 + timedelta(hours=2))
    s.mgr.add_maintenance(window)
    s.set("flood-depth", "qt-flood-01", "critical")
    s.set("gateway-offline", None, "warning", gateway="qt-gw-02")
    assert s.live() == []
    assert s.mgr.stats.suppressed == 2
    assert s.mgr.maintenance.windows()[0].set_by == "tran.thi.b"
    s.set("flood-depth", "tn-flood-01", "critical")  # another site is not covered
    assert s.live() == [("flooding", "thong-nhat", "open")]


def test_every_change_is_on_the_timeline() -> None:
    s = Scene()
    s.set("flood-depth", "tn-flood-01", "warning")
    s.set("flood-depth", "tn-flood-01", "critical")
    s.set("flood-depth", "tn-flood-01", None)
    inc = s.mgr.incidents()[0]
    assert [(e.action, e.by) for e in inc.timeline] == [
        ("opened", "rule:flood-depth"), ("alert_updated", "rule:flood-depth"),
        ("alert_cleared", "rule:flood-depth")]
    assert inc.severity == "critical"  # peak severity is kept


def test_manager_snapshot_round_trip_keeps_incidents_and_grouping() -> None:
    s = Scene()
    s.set("rain-heavy", "tn-rain-01", "warning")
    s.set("flood-depth", "tn-flood-01", "warning")
    s.set("gas-lel", "ax-gas-01", "warning")
    snap = json.loads(json.dumps(s.mgr.snapshot()))
    restored = IncidentManager(REGISTRY, PATTERNS)
    restored.restore(snap)
    assert [(i.id, i.kind, i.alert_ids) for i in restored.incidents()] == [
        (i.id, i.kind, i.alert_ids) for i in s.mgr.incidents()]
    s.mgr = restored
    s.set("flood-depth", "tn-flood-02", "warning")
    s.set("fire-smoke", "ax-fire-01", "critical", metric="smoke_pct")
    assert sorted(i.kind for i in restored.incidents()) == ["fire_risk", "flooding"]


def test_grouping_by_distance() -> None:
    from ops_center.rulebook.loader import parse_patterns

    patterns = parse_patterns(
        "version: 1\npatterns:\n  - kind: bin_full\n"
        "    title: {vi: 'Thùng đầy {sensor}', en: 'Bins full {sensor}'}\n"
        "    group_by: site\n    distance_m: 250\n    members: [{category: waste}]\n"
        "    opens: [{all_of: [{category: waste}]}]\n")
    s = Scene()
    s.mgr = IncidentManager(REGISTRY, patterns)
    for sensor in ("tn-bin-01", "tn-bin-02", "qt-bin-01", "qt-bin-02"):  # ~300 m apart; ~180 m apart
        s.set("bin-full", sensor, "warning")
    groups = sorted((i.site, i.sensors) for i in s.mgr.incidents())
    assert groups == [("quang-trung", ("qt-bin-01", "qt-bin-02")), ("thong-nhat", ("tn-bin-01",)),
                      ("thong-nhat", ("tn-bin-02",))]


def test_resolved_incidents_are_forgotten_after_the_reopen_window_so_memory_stays_bounded() -> None:
    s = Scene()
    sizes = []
    first_id = None
    for _ in range(120):  # a flood every 3 hours for 15 days
        s.set("flood-depth", "tn-flood-01", "warning", at=s.now)
        s.advance(5)
        s.set("flood-depth", "tn-flood-01", None, at=s.now)
        s.advance(16)      # resolved after the 15-min hold
        s.advance(159)     # the next flood comes 3 h later: long after the 1 h reopen window
        if first_id is None:
            first_id = next(c.incident.id for c in s.log if c.action == "opened")
        sizes.append(len(json.dumps(s.mgr.snapshot())))
    opened = [c.incident.id for c in s.log if c.action == "opened"]
    assert len(opened) == len(set(opened)) == 120  # each recurrence after the window is NEW
    assert not any(c.action == "reopened" for c in s.log)
    assert max(sizes[10:]) <= sizes[9] * 1.05     # the snapshot does not grow with the run
    assert len(s.mgr.incidents()) <= 2 and s.mgr.stats.forgotten >= 118
    with pytest.raises(UnknownIncident):
        s.mgr.get(first_id)
    restored = IncidentManager(REGISTRY, PATTERNS)
    restored.restore(json.loads(json.dumps(s.mgr.snapshot())))
    assert len(restored.incidents()) == len(s.mgr.incidents())


def test_a_recurrence_within_the_window_reopens_the_old_incident_even_after_a_tick() -> None:
    s = Scene()
    s.set("flood-depth", "tn-flood-01", "warning")
    s.set("flood-depth", "tn-flood-01", None)
    s.advance(16)                                   # resolved
    inc = next(c.incident for c in s.log if c.action == "resolved")
    s.set("rain-heavy", "tn-rain-01", "warning", at=s.now)   # the site's event clock moves on
    s.set("rain-heavy", "tn-rain-01", None, at=s.now)
    s.advance(30)                                   # ticks inside the window forget nothing
    s.set("flood-depth", "tn-flood-01", "warning", at=s.now)
    assert s.log[-2].action == "reopened" and s.log[-2].incident.id == inc.id
    assert s.mgr.stats.forgotten == 0


def test_area_outage_is_forgotten_with_the_gateway_incidents_merged_into_it() -> None:
    s = Scene()
    s.set("gateway-offline", None, "warning", gateway="qt-gw-01")
    s.set("gateway-offline", None, "warning", gateway="qt-gw-02")
    assert {i.kind for i in s.mgr.incidents(include_merged=True)} == {"gateway_offline", "area_outage"}
    s.advance(30)
    s.set("gateway-offline", None, None, gateway="qt-gw-01", at=s.now)
    s.set("gateway-offline", None, None, gateway="qt-gw-02", at=s.now)
    s.advance(16)
    assert [i.state for i in s.mgr.incidents()] == ["resolved"]
    s.advance(90)
    s.set("gateway-offline", None, "warning", gateway="qt-gw-03", at=s.now)  # moves the site's clock
    s.advance(1)
    kinds = [(i.kind, i.group) for i in s.mgr.incidents(include_merged=True)]
    assert kinds == [("gateway_offline", "qt-gw-03")] and s.mgr.stats.forgotten == 3
