"""Scoring produced incidents against ground truth; and the engine + manager end to end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from contract.registry import load_registry
from ops_center.domain.alerts import AlertChange
from ops_center.domain.engine import Reading, RuleEngine
from ops_center.domain.incidents import Incident, IncidentManager
from ops_center.rulebook.loader import load_patterns, load_rules
from simulators.scoring import score

REGISTRY = load_registry()
T0 = datetime(2026, 6, 1, 11, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Expected:  # the shape of simulators.scenarios.ExpectedIncident
    site: str
    kind: str
    onset: datetime
    end: datetime | None
    sensors: frozenset[str] = frozenset()
    gateways: frozenset[str] = frozenset()
    note: str = ""


def incident(iid: str, kind: str, opened: datetime, site: str = "thong-nhat", alerts: int = 1,
             sensors: tuple[str, ...] = (), merged_into: str | None = None) -> Incident:
    return Incident(id=iid, site=site, kind=kind, severity="warning", state="open", title_vi="", title_en="",
                    opened_at=opened, acknowledged_at=None, resolved_at=None, updated_at=opened, group=site,
                    alert_ids=tuple(f"{iid}-a{i}" for i in range(alerts)), active_alert_ids=(),
                    sensors=sensors, gateways=(), merged_into=merged_into)


def test_precision_recall_compression_and_time_to_detect() -> None:
    expected = [Expected("thong-nhat", "flooding", T0, T0 + timedelta(hours=2), frozenset({"tn-flood-01"})),
                Expected("an-xa", "gas_leak", T0, None),
                Expected("quang-trung", "noise", T0, T0 + timedelta(hours=1))]
    produced = [
        incident("f1", "flooding", T0 + timedelta(minutes=4), alerts=8,
                 sensors=("tn-flood-01", "tn-rain-01")),
        incident("f2", "flooding", T0 + timedelta(minutes=30), alerts=2),   # fragment of the same flood
        incident("g1", "gas_leak", T0 + timedelta(seconds=20), site="an-xa", alerts=2),
        incident("x1", "bin_full", T0, alerts=1),                           # not in the ground truth
        incident("m1", "gateway_offline", T0, merged_into="area"),         # absorbed: not counted
    ]
    s = score(expected, produced)
    assert (s.expected, s.produced, s.true_positives) == (3, 4, 2)
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(2 / 3)
    assert s.duplicates == ("f2",) and s.false_positives == ("x1",) and s.missed == (2,)
    assert s.alerts == 14 and s.alerts_per_incident == pytest.approx(14 / 4)
    assert sorted(s.time_to_detect_s) == [20.0, 240.0]
    assert s.mean_time_to_detect_s == pytest.approx(130.0) and s.max_time_to_detect_s == 240.0


def test_matching_respects_the_time_window_and_sensors() -> None:
    exp = [Expected("thong-nhat", "flooding", T0, T0 + timedelta(minutes=30), frozenset({"tn-flood-01"}))]
    assert score(exp, [incident("a", "flooding", T0 + timedelta(hours=3))]).true_positives == 0
    assert score(exp, [incident("b", "flooding", T0, sensors=("qt-flood-01",))]).true_positives == 0
    assert score(exp, [incident("c", "flooding", T0 - timedelta(minutes=5))]).true_positives == 1
    assert score(exp, [incident("d", "flooding", T0 - timedelta(minutes=50))]).true_positives == 1  # early
    assert score(exp, [incident("e", "flooding", T0 - timedelta(hours=3))]).true_positives == 0


def test_empty_runs_score_cleanly() -> None:
    s = score([], [])
    assert (s.precision, s.recall, s.alerts_per_incident, s.mean_time_to_detect_s) == (1.0, 1.0, 0.0, None)


# --- end to end: engine -> manager -> score ---------------------------------------------------------

def test_engine_and_manager_turn_an_evening_flood_and_an_outage_into_two_incidents() -> None:
    engine = RuleEngine(load_rules(registry=REGISTRY), REGISTRY)
    mgr = IncidentManager(REGISTRY, load_patterns())
    alerts: list[AlertChange] = []
    produced = []
    for minute in range(90):
        t = T0 + timedelta(minutes=minute)
        depth = max(0.0, (minute - 10) * 0.8)
        readings: list[Reading] = [("tn-rain-01", "rain_mm_h", t, 45.0 if minute < 60 else 0.0, "good")]
        readings += [(s, "water_level_cm", t, depth, "good") for s in ("tn-flood-01", "tn-flood-02")]
        readings += [("tn-flood-03", "water_level_cm", t, 0.0, "good"),
                     ("tn-drain-01", "drain_freeboard_cm", t, 90.0 - minute * 0.5, "good"),
                     ("tn-drain-01", "pump_on", t, 1.0, "good")]
        changes = engine.ingest(readings, t + timedelta(seconds=2), "tn-gw-02", t)
        for gw in ("qt-gw-01", "qt-gw-03"):
            if minute == 30:
                changes += engine.gateway_status(gw, "offline", t)
        changes += engine.tick(t)
        alerts += changes
        produced += mgr.apply(changes, t) + mgr.tick(t)
    incidents = mgr.incidents()
    assert sorted((i.kind, i.site) for i in incidents) == [("area_outage", "quang-trung"),
                                                            ("flooding", "thong-nhat")]
    expected = [Expected("thong-nhat", "flooding", T0 + timedelta(minutes=35), None,
                         frozenset({"tn-flood-01", "tn-flood-02"})),
                Expected("quang-trung", "area_outage", T0 + timedelta(minutes=30), None,
                         gateways=frozenset({"qt-gw-01", "qt-gw-03"}))]
    s = score(expected, mgr.incidents(include_merged=True), alerts=len({c.alert.id for c in alerts}))
    assert s.precision == 1.0 and s.recall == 1.0
    assert s.alerts_per_incident > 3
    flood = next(d for d in s.detections if d.expected == 0)
    assert flood.detect_s < 0  # rain + fast-rising water warned before the street reached 20 cm
    assert all(d.detect_s <= 600 for d in s.detections)


def test_time_to_detect_is_judged_per_kind_in_reporting_intervals() -> None:
    from simulators.scoring import timing_by_kind

    expected = [Expected("an-xa", "discharge_breach", T0, None, frozenset({"ax-ww-01"})),
                Expected("thong-nhat", "flooding", T0, None, frozenset({"tn-flood-01"})),
                Expected("thong-nhat", "flooding", T0 + timedelta(days=1), None, frozenset({"tn-flood-01"})),
                Expected("quang-trung", "bin_full", T0, None, frozenset({"qt-bin-03"}))]
    produced = [incident("w", "discharge_breach", T0 + timedelta(seconds=600), site="an-xa",
                         sensors=("ax-ww-01",)),
                incident("f1", "flooding", T0 - timedelta(minutes=20), sensors=("tn-flood-01",)),
                incident("f2", "flooding", T0 + timedelta(days=1, seconds=150), sensors=("tn-flood-01",))]
    s = score(expected, produced)
    intervals = {"ax-ww-01": 300.0, "tn-flood-01": 60.0, "qt-bin-03": 300.0}
    timing = {t.kind: t for t in timing_by_kind(s, expected, lambda e: max(intervals[x] for x in e.sensors))}
    assert list(timing) == ["discharge_breach", "flooding", "bin_full"]
    ww, flood, bins = timing["discharge_breach"], timing["flooding"], timing["bin_full"]
    assert ww.detect_s == 600 and ww.intervals == pytest.approx(2.0) and ww.passed  # 2 intervals: in
    assert flood.count == 2 and flood.detect_s == 150 and flood.intervals == pytest.approx(2.5)
    assert not flood.passed                          # the worst of the kind decides
    assert bins.detect_s is None and not bins.passed  # missed
