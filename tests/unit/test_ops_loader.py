"""Rule and pattern files: defaults for every sensor kind, overrides, line-numbered errors."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from contract.catalog import SENSOR_KINDS
from contract.registry import load_registry
from ops_center.domain.errors import RuleError
from ops_center.domain.rules import VALUE_KINDS
from ops_center.rulebook.loader import load_patterns, load_rules, parse_patterns, parse_rules

REGISTRY = load_registry()
DEFAULTS = resources.files("ops_center.rulebook").joinpath("defaults.yaml").read_text("utf-8")
INCIDENT_KINDS = {"flooding", "fire_risk", "gas_leak", "discharge_breach", "emission_breach", "air_quality",
                  "noise", "lighting_fault", "sensor_fault", "bin_full"}


def test_every_sensor_kind_of_the_demo_registry_has_value_rules() -> None:
    rules = load_rules(registry=REGISTRY)
    kinds_in_registry = {ref.spec.kind for ref in REGISTRY.sensors.values()}
    assert kinds_in_registry == set(SENSOR_KINDS)
    for kind in kinds_in_registry:
        ref = next(r for r in REGISTRY.sensors.values() if r.spec.kind == kind)
        value_rules = [r for r in rules.resolve(ref) if getattr(r, "kind", "") in VALUE_KINDS
                       and r.category not in ("data_quality",)]
        assert value_rules, f"no value rule for sensor kind {kind}"
        assert {r.id for r in rules.resolve(ref)} >= {"out-of-bounds", "clock-skew", "sensor-silent"}


def test_regulatory_defaults_are_marked_for_verification() -> None:
    for text in ("verify against QCVN 40:2025", "verify against", "QCVN 19:2024", "QCVN 26:2025"):
        assert text in DEFAULTS
    rules = load_rules()
    assert rules.get("pm25-24h-rolling").title.vi.endswith("(ước tính)")  # a rolling proxy, labelled


def test_overrides_by_site_attrs_and_sensor(tmp_path: Path) -> None:
    overlay = tmp_path / "quang-trung.yaml"
    overlay.write_text(
        "version: 1\n"
        "settings: {lateness_s: 300}\n"
        "overrides:\n"
        "  - rule: flood-depth\n"
        "    select: {site: quang-trung, attrs: {street: 'Hàng Sắt'}}\n"
        "    set: {raise_after_s: 30}\n"
        "  - rule: stuck-value\n"
        "    select: {sensor: [tn-aq-02]}\n"
        "    enabled: false\n"
        "  - rule: noise-laeq-1h\n"
        "    select: {attrs: {noise_zone: special}}\n"
        "    set: {limits: {special: {day: 50, night: 40}}}\n",
        encoding="utf-8")
    rules = load_rules([overlay], registry=REGISTRY)
    assert rules.settings.lateness_s == 300

    def rule(sensor: str, rule_id: str) -> Any:
        return next((r for r in rules.resolve(REGISTRY.sensors[sensor]) if r.id == rule_id), None)

    assert rule("qt-flood-01", "flood-depth").raise_after_s == 30
    assert rule("tn-flood-01", "flood-depth").raise_after_s == 120
    assert rule("tn-aq-02", "stuck-value") is None and rule("tn-aq-01", "stuck-value") is not None
    special = rule("tn-noise-01", "noise-laeq-1h").limits
    assert special["special"].day == 50 and special["normal"].day == 70  # deep-merged


def test_an_overlay_replaces_a_rule_by_id() -> None:
    overlay = ("version: 1\nrules:\n  - id: bin-full\n    kind: threshold\n    category: waste\n"
               "    title: {vi: Đầy, en: Full}\n    select: {kind: waste_bin}\n"
               "    levels: [{at: 70, severity: info}]\n")
    rules = parse_rules([(DEFAULTS, "defaults.yaml"), (overlay, "site.yaml")])
    bin_full: Any = rules.get("bin-full")
    assert [lv.at for lv in bin_full.levels] == [70]


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("version: 1\nrules:\n  - id: x\n    kind: threshold\n    category: t\n    title: {vi: a, en: b}\n"
     "    levels: [{at: 1, severity: info}]\n    colour: red\n", 8, "colour"),
    ("version: 1\nrules:\n  - id: x\n    kind: threshold\n    category: t\n    title: {vi: a, en: b}\n"
     "    levels:\n      - {at: 1, severity: loud}\n", 8, "severity"),
    ("version: 1\nrules:\n  - id: x\n    kind: nonsense\n    category: t\n", 4, "kind"),
    ("version: 1\nrules:\n  - id: x\n    id: y\n", 4, "duplicate key"),
    ("version: 1\noverrides:\n  - rule: nope\n    set: {}\n", 3, "unknown rule"),
    ("version: 2\n", 1, "version"),
    ("version: 1\nrules: [\n", 3, "YAML"),
])
def test_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules([(text, "bad.yaml")])
    assert info.value.line == line, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"bad.yaml:{line}:")


def test_an_invalid_override_names_its_line() -> None:
    overlay = "version: 1\noverrides:\n  - rule: flood-depth\n    set:\n      raise_after_s: -5\n"
    with pytest.raises(RuleError) as info:
        parse_rules([(DEFAULTS, "defaults.yaml"), (overlay, "site.yaml")])
    assert info.value.source == "site.yaml" and info.value.line == 5


def test_duplicate_rule_ids_in_a_file_are_refused() -> None:
    rule = "  - id: x\n    kind: freshness\n    category: c\n    title: {vi: a, en: b}\n"
    with pytest.raises(RuleError, match="duplicate rule id"):
        parse_rules([("version: 1\nrules:\n" + rule + rule, "dup.yaml")])


def test_patterns_have_exactly_the_shared_incident_kinds() -> None:
    kinds = {p.kind for p in load_patterns().patterns}
    assert kinds >= INCIDENT_KINDS
    assert kinds - INCIDENT_KINDS <= {"anomaly"}


def test_pattern_errors_name_the_line() -> None:
    bad = ("version: 1\npatterns:\n  - kind: x\n    title: {vi: 'Tại {street', en: y}\n"
           "    members: [{category: a}]\n    opens: [{all_of: [{category: a}]}]\n")
    with pytest.raises(RuleError) as info:
        parse_patterns(bad, source="p.yaml")
    assert info.value.line == 4
    bad2 = ("version: 1\npatterns:\n  - kind: x\n    title: {vi: a, en: b}\n    group_by: street\n"
            "    members: [{category: a}]\n    opens: [{all_of: [{category: a}]}]\n")
    with pytest.raises(RuleError) as info:
        parse_patterns(bad2, source="p.yaml")
    assert info.value.line == 5 and "group_by" in str(info.value)
