"""The rule engine: late data, redelivery, data quality, freshness, gateways, snapshots."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bench.rule_engine import measure_rules
from contract.registry import load_registry
from ops_center.domain.alerts import AlertChange
from ops_center.domain.engine import Reading, RuleEngine
from ops_center.domain.maintenance import MaintenanceCalendar, MaintenanceWindow
from ops_center.rulebook.loader import load_rules

REGISTRY = load_registry()
RULES = load_rules(registry=REGISTRY)
T0 = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 10:00 local
DRAIN_GW = "tn-gw-02"
QUIET = {"rain_mm_h": 0.0, "water_level_cm": 0.0, "drain_freeboard_cm": 90.0, "pump_on": 0.0}


def batch(t: datetime, overrides: dict[tuple[str, str], float] | None = None,
          skip: frozenset[str] = frozenset(), gateway: str = DRAIN_GW) -> list[Reading]:
    out: list[Reading] = []
    for spec in REGISTRY.sensors_of(gateway):
        if spec.id in skip:
            continue
        for m in spec.metrics:
            v = (overrides or {}).get((spec.id, m), QUIET.get(m, 0.0))
            out.append((spec.id, m, t, v, "good"))
    return out


def feed_minutes(engine: RuleEngine, start: datetime, n: int,
                 overrides: dict[tuple[str, str], float] | None = None,
                 skip: frozenset[str] = frozenset()) -> list[AlertChange]:
    changes: list[AlertChange] = []
    for i in range(n):
        t = start + timedelta(minutes=i)
        changes += engine.ingest(batch(t, overrides, skip), t + timedelta(seconds=1), DRAIN_GW, t)
    return changes


def rules_of(changes: list[AlertChange]) -> list[tuple[str, str | None, str]]:
    return [(c.alert.rule, c.alert.sensor, c.action) for c in changes]


DEEP = {("tn-flood-01", "water_level_cm"): 35.0}


def test_live_readings_raise_a_paging_alert() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    changes = feed_minutes(engine, T0, 5, DEEP)
    flood = [c for c in changes if c.alert.rule == "flood-depth"]
    assert [(c.action, c.alert.severity) for c in flood] == [("raised", "critical")]
    assert flood[0].at == T0 + timedelta(minutes=2)  # raise_after_s 120, on reading time
    assert flood[0].notify and not flood[0].late


def test_late_readings_raise_but_do_not_page() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    sent = T0 + timedelta(hours=2)  # a gateway draining its backlog after an outage
    changes: list[AlertChange] = []
    for i in range(5):
        t = T0 + timedelta(minutes=i)
        changes += engine.ingest(batch(t, DEEP), sent, DRAIN_GW, sent)
    flood = [c for c in changes if c.alert.rule == "flood-depth"]
    assert len(flood) == 1 and flood[0].late and flood[0].alert.late
    assert not flood[0].notify
    assert flood[0].alert.opened_at == T0 + timedelta(minutes=2)


def test_a_fast_simulated_clock_in_the_past_is_live() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    past = datetime(2020, 1, 1, tzinfo=UTC)
    wall = datetime(2026, 11, 28, tzinfo=UTC)
    changes: list[AlertChange] = []
    for i in range(5):
        t = past + timedelta(minutes=i)
        changes += engine.ingest(batch(t, DEEP), t + timedelta(seconds=1), DRAIN_GW, wall)
    flood = [c for c in changes if c.alert.rule == "flood-depth"]
    assert len(flood) == 1 and not flood[0].late and flood[0].notify


def test_redelivered_and_out_of_order_readings_are_not_evaluated_twice() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    first = feed_minutes(engine, T0, 5, DEEP)
    assert any(c.alert.rule == "flood-depth" for c in first)
    again = feed_minutes(engine, T0, 5, DEEP)  # the same batches again (at-least-once)
    assert again == []
    assert engine.stats.out_of_order > 0


def test_readings_out_of_order_within_a_batch_are_sorted() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    readings = [("tn-flood-01", "water_level_cm", T0 + timedelta(minutes=i), 35.0, "good")
                for i in (3, 0, 2, 1)]
    changes = engine.ingest(readings, T0 + timedelta(minutes=4), DRAIN_GW, T0)
    assert [(c.alert.rule, c.at) for c in changes] == [("flood-depth", T0 + timedelta(minutes=2))]


def test_impossible_values_are_a_data_quality_alert_not_a_flood() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    changes = feed_minutes(engine, T0, 5, {("tn-flood-01", "water_level_cm"): 999.0})
    assert rules_of(changes) == [("out-of-bounds", "tn-flood-01", "raised")]
    assert changes[0].alert.category == "data_quality"
    assert engine.stats.withheld == 5
    # Back to plausible values: cleared after 3 good readings.
    later = feed_minutes(engine, T0 + timedelta(minutes=5), 3)
    assert rules_of(later) == [("out-of-bounds", "tn-flood-01", "cleared")]


def test_readings_from_the_future_are_clock_skew_and_withheld() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    t = T0 + timedelta(hours=1)
    readings = [("tn-flood-01", "water_level_cm", t, 35.0, "good")]
    changes = engine.ingest(readings, T0, DRAIN_GW, T0)
    assert rules_of(changes) == [("clock-skew", "tn-flood-01", "raised")]
    assert changes[0].alert.category == "data_quality"
    # The skewed reading did not advance the series: on-time readings are still evaluated.
    ok = feed_minutes(engine, T0, 4, DEEP)
    assert ("flood-depth", "tn-flood-01", "raised") in rules_of(ok)


def test_quality_flags_skip_value_rules_but_prove_the_sensor_talks() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    changes: list[AlertChange] = []
    for i in range(10):
        t = T0 + timedelta(minutes=i)
        readings = [(s, m, t, v, "calibrating" if s == "tn-flood-01" else q)
                    for s, m, _, v, q in batch(t, DEEP)]
        changes += engine.ingest(readings, t, DRAIN_GW, t)
    assert changes == []
    assert engine.stats.skipped_quality == 10


def test_a_sensor_silent_while_its_gateway_talks_is_sensor_silent() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    feed_minutes(engine, T0, 3)
    changes = feed_minutes(engine, T0 + timedelta(minutes=3), 6, skip=frozenset({"tn-flood-03"}))
    silent = [c for c in changes if c.alert.rule == "sensor-silent"]
    assert {c.alert.sensor for c in silent} == {"tn-flood-03"}
    assert all(c.alert.rule_kind == "freshness" and c.action == "raised" for c in silent)
    # 3 × 60 s after its last reading at T0 + 2 min.
    assert silent[0].at == T0 + timedelta(minutes=5)
    back = feed_minutes(engine, T0 + timedelta(minutes=9), 1)
    assert rules_of(back) == [("sensor-silent", "tn-flood-03", "cleared")]


def test_a_gateway_offline_is_one_gateway_alert_not_sensor_silence() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    feed_minutes(engine, T0, 3)
    changes = engine.gateway_status(DRAIN_GW, "offline", T0 + timedelta(minutes=3))
    assert [(c.alert.rule, c.alert.sensor, c.alert.metric) for c in changes] == [
        ("gateway-offline", None, None)]
    for k in range(1, 20):
        assert engine.tick(T0 + timedelta(minutes=3 + k)) == []
    back = engine.gateway_status(DRAIN_GW, "online", T0 + timedelta(minutes=30))
    assert rules_of(back) == [("gateway-offline", None, "cleared")]


def test_a_gateway_that_stops_sending_is_gateway_silent() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    feed_minutes(engine, T0, 3)
    assert not [c for c in engine.tick(T0 + timedelta(minutes=6)) if c.alert.rule == "gateway-silent"]
    changes = engine.tick(T0 + timedelta(minutes=8))
    assert ("gateway-silent", None, "raised") in rules_of(changes)
    back = feed_minutes(engine, T0 + timedelta(minutes=9), 1)
    assert ("gateway-silent", None, "cleared") in rules_of(back)


def test_a_backlog_drain_raises_no_silence() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    feed_minutes(engine, T0, 3)
    sent = T0 + timedelta(hours=2)
    changes: list[AlertChange] = []
    for i in range(3, 60):  # readings from the outage, all sent late
        t = T0 + timedelta(minutes=i)
        changes += engine.ingest(batch(t, skip=frozenset({"tn-flood-03"})), sent, DRAIN_GW, sent)
    assert [c for c in changes if c.alert.rule == "sensor-silent"] == []


def test_maintenance_suppresses_alerts_and_pauses_freshness() -> None:
    cal = MaintenanceCalendar()
    cal.add(MaintenanceWindow("m1", "sensor", "tn-flood-01", T0, "ky-thuat-1",
                              "thay cảm biến / replacing the sensor", ends_at=T0 + timedelta(hours=1)))
    engine = RuleEngine(RULES, REGISTRY, cal)
    changes = feed_minutes(engine, T0, 10, DEEP)
    assert changes == []
    assert engine.stats.in_maintenance == 10
    cal.add(MaintenanceWindow("m2", "gateway", DRAIN_GW, T0, "ky-thuat-1", "bảo trì tủ"))
    assert engine.gateway_status(DRAIN_GW, "offline", T0 + timedelta(minutes=11)) == []
    cal.remove("m2")
    after = engine.tick(T0 + timedelta(minutes=12))
    assert ("gateway-offline", None, "raised") in rules_of(after)


def test_a_flapping_alert_is_reopened_not_raised_again() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    up = feed_minutes(engine, T0, 3, {("tn-flood-01", "water_level_cm"): 25.0})
    down = feed_minutes(engine, T0 + timedelta(minutes=3), 11)
    again = feed_minutes(engine, T0 + timedelta(minutes=14), 3, {("tn-flood-01", "water_level_cm"): 25.0})
    raised = next(c for c in up if c.alert.rule == "flood-depth")
    cleared = next(c for c in down if c.alert.rule == "flood-depth")
    reopened = next(c for c in again if c.alert.rule == "flood-depth")
    assert cleared.action == "cleared" and reopened.action == "reopened"
    assert reopened.alert.id == raised.alert.id and reopened.alert.flaps == 1
    assert not reopened.notify


def test_snapshot_and_restore_do_not_re_raise() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    first = feed_minutes(engine, T0, 5, DEEP)
    raised = next(c for c in first if c.alert.rule == "flood-depth")
    snap = json.loads(json.dumps(engine.snapshot()))
    restarted = RuleEngine(RULES, REGISTRY)
    restarted.restore(snap)
    assert feed_minutes(restarted, T0 + timedelta(minutes=5), 5, DEEP) == []
    cleared = feed_minutes(restarted, T0 + timedelta(minutes=10), 12)
    flood = [c for c in cleared if c.alert.rule == "flood-depth"]
    assert [c.action for c in flood] == ["cleared"] and flood[0].alert.id == raised.alert.id


def test_restore_refuses_an_unknown_snapshot_version() -> None:
    with pytest.raises(ValueError, match="version"):
        RuleEngine(RULES, REGISTRY).restore({"v": 99})


def test_unknown_gateways_and_sensors_are_counted_not_evaluated() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    assert engine.ingest([("tn-flood-01", "water_level_cm", T0, 50.0, "good")], T0, "nope", T0) == []
    assert engine.ingest([("tn-aq-01", "pm25", T0, 50.0, "good")], T0, DRAIN_GW, T0) == []
    assert engine.stats.unknown == 2


def test_measure_rules_reports_a_rate() -> None:
    assert measure_rules(2_000) > 0


def test_evaluate_one_rule_on_a_stored_window() -> None:
    from ops_center.domain.engine import evaluate

    rule = RULES.get("flood-depth")
    ref = REGISTRY.sensors["tn-flood-01"]
    window = [(T0 + timedelta(minutes=i), 25.0) for i in range(10)]
    change = evaluate(rule, ref, "water_level_cm", window, T0 + timedelta(minutes=5))
    assert change is not None and change.action == "raised" and change.alert.severity == "warning"
    assert evaluate(rule, ref, "water_level_cm", window, T0 + timedelta(minutes=1)) is None


@pytest.mark.parametrize(
    ("mm_h", "severity", "words"),
    [(20.0, "warning", "Mưa to — tn-rain-01"), (40.0, "critical", "Mưa rất to — tn-rain-01")],
)
def test_rain_alerts_use_the_forecast_classes(mm_h: float, severity: str, words: str) -> None:
    # docs/domain-facts.md §3.1: "mưa to", "mưa rất to" (not "mưa lớn"); the level's own title.
    engine = RuleEngine(RULES, REGISTRY)
    changes = feed_minutes(engine, T0, 8, {("tn-rain-01", "rain_mm_h"): mm_h})
    rain = [c for c in changes if c.alert.rule == "rain-heavy"]
    assert [(c.action, c.alert.severity) for c in rain] == [("raised", severity)]
    assert rain[0].alert.message_vi.startswith(words), rain[0].alert.message_vi
    assert f"= {mm_h:.0f} mm/h (ngưỡng" in rain[0].alert.message_vi


def test_qcvn_05_2023_24_hour_and_8_hour_limits_are_rules() -> None:
    # docs/domain-facts.md §2.1: SO₂ 125 and NO₂ 100 µg/m³ over 24 h, CO 10 000 µg/m³ over 8 h.
    from ops_center.domain.rules.rolling_mean import RollingMeanRule

    expected = {"so2-24h": ("so2", 86400.0, 125.0), "no2-24h": ("no2", 86400.0, 100.0),
                "co-8h": ("co", 28800.0, 10000.0)}
    for rule_id, (metric, window_s, limit) in expected.items():
        rule = RULES.get(rule_id)
        assert isinstance(rule, RollingMeanRule)
        assert (rule.metrics, rule.window_s, rule.levels[0].at) == ((metric,), window_s, limit)
        assert "QCVN 05:2023" in rule.title.vi
    assert {r.id for r in RULES.resolve(REGISTRY.sensors["tn-aq-01"])} >= set(expected)


def test_an_8_hour_co_mean_above_10000_raises() -> None:
    engine = RuleEngine(RULES, REGISTRY)
    spec = REGISTRY.sensors["tn-aq-01"].spec
    changes: list[AlertChange] = []
    for i in range(5 * 60):  # five hours of CO at 12 000 µg/m³ (half the window), one batch a minute
        t = T0 + timedelta(minutes=i)
        readings = [("tn-aq-01", m, t, 12000.0 if m == "co" else 20.0, "good") for m in spec.metrics]
        changes += engine.ingest(readings, t + timedelta(seconds=1), "tn-gw-01", t)
    co8 = [c for c in changes if c.alert.rule == "co-8h"]
    assert [c.action for c in co8] == ["raised"], rules_of(changes)
    assert co8[0].alert.message_vi.endswith("= 12000 µg/m³ (ngưỡng 10000)")
