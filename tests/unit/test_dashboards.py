"""The dashboard builders, the provisioning export and the test-side macro expander."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.registry import load_registry
from dashboards import limits
from dashboards.cli import main
from dashboards.definitions import folders
from dashboards.export import ENV_PLACEHOLDERS, export, plan_orgs
from dashboards.model import DATASOURCE_UID, GRID_WIDTH, render
from tests.grafana_sql import expand

REPO = Path(__file__).resolve().parents[2]
# Published uids are links people bookmark: changing one is a breaking change.
UIDS = {
    "smartward-ward": ["smartward-ward-environment", "smartward-ward-infrastructure"],
    "smartward-cluster": ["smartward-cluster-compliance"],
    "smartward-city": ["smartward-city-overview"],
}


def models() -> list[dict[str, Any]]:
    return [render(d) for f in folders() for d in f.dashboards]


def test_uids_are_stable_and_one_folder_per_role() -> None:
    assert {f.uid: [d.uid for d in f.dashboards] for f in folders()} == UIDS
    assert all(d.folder == f.uid for f in folders() for d in f.dashboards)
    assert models() == models()  # rendering is deterministic


def test_every_panel_has_the_datasource_a_unique_id_and_fits_the_grid() -> None:
    for model in models():
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)) and model["id"] is None
        for p in model["panels"]:
            assert p["datasource"] == {"type": "grafana-postgresql-datasource", "uid": DATASOURCE_UID}
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == DATASOURCE_UID and t["rawQuery"] and t["rawSql"].strip()
                assert t["format"] in ("time_series", "table")
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= GRID_WIDTH
        for v in model["templating"]["list"]:
            assert v["datasource"]["uid"] == DATASOURCE_UID


def test_titles_are_vietnamese_first_then_english() -> None:
    for f in folders():
        assert " / " in f.title
    for model in models():
        assert " / " in model["title"]
        for p in model["panels"]:
            vi, en = p["title"].split(" / ", 1)
            assert vi and en and vi != en, p["title"]


def test_queries_read_only_contract_tables_and_use_grafana_time_macros() -> None:
    contract = {"readings", "readings_1m", "readings_1h", "sites", "sensors", "alerts", "incidents",
                "ingest_batches", "gateways", "metrics"}
    for f in folders():
        for d in f.dashboards:
            for p in d.panels:
                for q in p.queries:
                    tables = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_0-9]+)", q.sql))
                    assert tables <= contract | {"LATERAL"}, (p.title, tables)
                    if q.format == "time_series":
                        assert "$__timeFilter(" in q.sql and q.columns[0] == "time", p.title
                        assert q.sql.rstrip().endswith(("ORDER BY 1, 2", "ORDER BY 1")), p.title
                    assert ";" not in q.sql


def test_series_use_raw_readings_for_short_ranges_and_rollups_for_long_ones() -> None:
    pm = folders()[0].dashboards[0].panels[0].queries[0].sql
    assert all(t in pm for t in ("FROM readings r", "FROM readings_1m r", "FROM readings_1h r"))
    now = datetime(2026, 3, 1, tzinfo=UTC)
    sql = expand(pm, start=now - timedelta(hours=1), end=now, variables={"site": "thong-nhat"})
    assert "time_bucket('5s',r.time)" in sql
    assert "'2026-03-01T00:00:00Z'::timestamptz - '2026-02-28T23:00:00Z'::timestamptz" in sql


def _defaults() -> dict[str, Any]:
    rules = yaml.safe_load((REPO / "ops_center" / "rulebook" / "defaults.yaml").read_text(encoding="utf-8"))
    return {r["id"]: r for r in rules["rules"]}


def test_limits_are_the_alert_rules_numbers() -> None:
    rules = _defaults()
    pm25 = rules["pm25-24h-rolling"]
    current = max(pm25["schedule"], key=lambda s: str(s["since"]))
    assert [lv["at"] for lv in current["levels"]] == [limits.PM25_24H_UG_M3]
    assert [lv["at"] for lv in rules["pm10-24h-rolling"]["levels"]] == [limits.PM10_24H_UG_M3]
    assert rules["noise-laeq-1h"]["limits"] == limits.NOISE_LAEQ_DB
    assert tuple(lv["at"] for lv in rules["rain-heavy"]["levels"]) == limits.RAIN_MM_H
    assert tuple(lv["at"] for lv in rules["flood-depth"]["levels"]) == limits.FLOOD_DEPTH_CM
    assert tuple(lv["at"] for lv in rules["drain-freeboard"]["levels"]) == limits.DRAIN_FREEBOARD_CM
    assert tuple(lv["at"] for lv in rules["bin-full"]["levels"]) == limits.BIN_FILL_PCT
    assert [lv["at"] for lv in rules["lamp-out"]["levels"]] == [limits.LAMP_OUT_FRACTION]
    assert rules["sensor-silent"]["intervals"] == limits.SILENT_INTERVALS
    ww = rules["ww-qcvn40"]
    assert {m: {c: v["max"] for c, v in cols.items()} for m, cols in ww["limits"].items()
            if m in limits.QCVN40} == limits.QCVN40
    assert {c: (v["min"], v["max"]) for c, v in ww["limits"]["ww_ph"].items()} == limits.QCVN40_PH
    assert ww["critical_ratio"] == limits.QCVN40_CRITICAL_RATIO
    stack = rules["stack-qcvn19"]
    assert {m: {c: v["max"] for c, v in cols.items()} for m, cols in stack["limits"].items()} == limits.QCVN19
    assert stack["critical_ratio"] == limits.QCVN19_CRITICAL_RATIO
    assert ww["default_column"] == stack["default_column"] == limits.DEFAULT_COLUMN
    assert tuple(lv["at"] for lv in rules["gas-lel"]["levels"]) == limits.GAS_LEL_PCT
    assert tuple(lv["at"] for lv in rules["fire-heat"]["levels"]) == limits.FIRE_TEMP_C


def test_pm_panels_draw_the_qcvn_05_limit() -> None:
    env = folders()[0].dashboards[0]
    steps = {p.title.split(" ")[1]: [s.value for s in p.steps] for p in env.panels[:2]}
    assert steps == {"PM2.5": [None, 45.0], "PM10": [None, 100.0]}


def test_export_writes_provisioning_files_without_secrets(tmp_path: Path) -> None:
    written = export(tmp_path, "/srv/grafana/dashboards")
    jsons = sorted(p.relative_to(tmp_path).as_posix() for p in written if p.suffix == ".json")
    assert jsons == sorted(f"dashboards/{f}/{d}.json" for f, ds in UIDS.items() for d in ds)
    for p in written:
        if p.suffix == ".json":
            model = json.loads(p.read_text(encoding="utf-8"))
            assert model["uid"] == p.stem and model["id"] is None
    provider_file = tmp_path / "provisioning/dashboards/smartward.yaml"
    providers = yaml.safe_load(provider_file.read_text(encoding="utf-8"))
    assert {p["folderUid"]: p["options"]["path"] for p in providers["providers"]} == {
        f: f"/srv/grafana/dashboards/{f}" for f in UIDS
    }
    ds_text = (tmp_path / "provisioning/datasources/smartward.yaml").read_text(encoding="utf-8")
    ds = yaml.safe_load(ds_text)["datasources"][0]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == "grafana-postgresql-datasource"
    assert ds["secureJsonData"] == {"password": "${SMARTWARD_GRAFANA_DB_PASSWORD}"}
    assert ds["user"] == ENV_PLACEHOLDERS["user"] and ds["jsonData"]["timescaledb"] is True
    # Every value that names a server or a credential is a placeholder Grafana expands.
    for value in (ds["url"], ds["user"], ds["jsonData"]["database"], ds["jsonData"]["sslmode"]):
        assert re.fullmatch(r"\$\{SMARTWARD_GRAFANA_DB_[A-Z]+\}", value)
    # Idempotent: a second export writes the same bytes.
    before = {p: p.read_bytes() for p in written}
    export(tmp_path, "/srv/grafana/dashboards")
    assert {p: p.read_bytes() for p in written} == before


def _yaml(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_export_per_org_gives_each_role_its_own_data_source_under_the_one_uid(tmp_path: Path) -> None:
    export(tmp_path, "/srv/d")  # an earlier single-org export into the same directory
    orgs = plan_orgs(["thong-nhat=2", "quang-trung=3", "an-xa=4"], 5, load_registry())
    written = export(tmp_path, "/srv/d", orgs)
    prov = tmp_path / "provisioning"
    keys = ["thong-nhat", "quang-trung", "an-xa", "city"]
    names = sorted(f"smartward-{k}.yaml" for k in keys)
    # The single-org files are gone: no data source is left behind in organisation 1.
    assert sorted(p.name for p in (prov / "datasources").iterdir()) == names
    assert sorted(p.name for p in (prov / "dashboards").iterdir()) == names
    want_org = dict(zip(keys, (2, 3, 4, 5), strict=True))
    want_folders = {"thong-nhat": {"smartward-ward"}, "quang-trung": {"smartward-ward"},
                    "an-xa": {"smartward-cluster"}, "city": set(UIDS)}
    provider_names = []
    for key in keys:
        sources = _yaml(prov / "datasources" / f"smartward-{key}.yaml")["datasources"]
        assert len(sources) == 1, "one data source per organisation: nothing else to pick"
        ds = sources[0]
        suffix = key.upper().replace("-", "_")
        assert ds["orgId"] == want_org[key] and ds["uid"] == DATASOURCE_UID
        assert ds["user"] == f"${{SMARTWARD_GRAFANA_DB_USER_{suffix}}}"
        assert ds["secureJsonData"] == {"password": f"${{SMARTWARD_GRAFANA_DB_PASSWORD_{suffix}}}"}
        assert (ds["url"], ds["jsonData"]["database"], ds["jsonData"]["sslmode"]) == (
            ENV_PLACEHOLDERS["url"], ENV_PLACEHOLDERS["database"], ENV_PLACEHOLDERS["sslmode"])
        providers = _yaml(prov / "dashboards" / f"smartward-{key}.yaml")["providers"]
        assert {p["orgId"] for p in providers} == {want_org[key]}
        assert {p["folderUid"] for p in providers} == want_folders[key]
        assert all(p["options"]["path"] == f"/srv/d/{p['folderUid']}" for p in providers)
        provider_names += [p["name"] for p in providers]
        # Every dashboard this organisation loads names only the data source uid it provisions.
        for folder in want_folders[key]:
            for path in (tmp_path / "dashboards" / folder).glob("*.json"):
                model = json.loads(path.read_text(encoding="utf-8"))
                refs = {p["datasource"]["uid"] for p in model["panels"]}
                refs |= {v["datasource"]["uid"] for v in model["templating"]["list"]}
                assert refs == {ds["uid"]}, path
    assert len(provider_names) == len(set(provider_names))
    # No secret anywhere: every user and password is a placeholder.
    for path in (p for p in written if p.suffix == ".yaml"):
        text = path.read_text(encoding="utf-8")
        for value in re.findall(r"(?:user|password): (.*)", text):
            placeholder = r"\$\{SMARTWARD_GRAFANA_DB_(USER|PASSWORD)_[A-Z_]+\}"
            assert re.fullmatch(placeholder, value.strip("'\"")), value
    before = {p: p.read_bytes() for p in written}
    assert export(tmp_path, "/srv/d", orgs) == written
    assert {p: p.read_bytes() for p in written} == before
    # And back to one organisation: the per-org files go.
    export(tmp_path, "/srv/d")
    assert [p.name for p in (prov / "datasources").iterdir()] == ["smartward.yaml"]


@pytest.mark.parametrize(("pairs", "city", "words"), [
    (["thong-nhat=2", "quang-trung=2"], None, "tổ chức riêng"),
    (["thong-nhat=2"], 2, "tổ chức riêng"),
    (["thong-nhat=0"], None, "tổ chức riêng"),
    (["city=3"], None, "--city-org"),
    (["nowhere=3"], None, "sổ đăng ký"),
    (["thong-nhat"], None, "SITE=ORG_ID"),
    (["thong-nhat=2", "thong-nhat=3"], None, "lặp lại"),
])
def test_plan_orgs_refuses_what_would_mix_roles(pairs: list[str], city: int | None, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        plan_orgs(pairs, city, load_registry())


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out/dashboards/smartward-city/smartward-city-overview.json").exists()
    assert "smartward.yaml" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert main(["export", str(tmp_path / "file")]) == 1
    assert "Không ghi được" in capsys.readouterr().err


def test_smartward_command_dispatches_to_dashboards(tmp_path: Path) -> None:
    from smartward.cli import main as smartward

    assert smartward(["dashboards", "export", str(tmp_path)]) == 0
    assert (tmp_path / "provisioning/datasources/smartward.yaml").exists()


# --- the expander itself (tests/grafana_sql.py) ---------------------------------------------


T1 = datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC)
T2 = datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC)


@pytest.mark.parametrize(("macro", "out"), [
    ("$__time(c)", 'c AS "time"'),
    ("$__timeEpoch(c)", 'extract(epoch from c) as "time"'),
    ("$__timeFilter(c)", "c BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"),
    ("$__timeFrom()", "'2017-04-21T05:01:17Z'"),
    ("$__timeTo()", "'2017-04-21T05:06:17Z'"),
    ("$__timeGroup(c, '5m')", "time_bucket('300s',c)"),
    ("$__timeGroupAlias(c, 5m)", "time_bucket('300s',c) AS \"time\""),
    ("$__timeGroup(c, $__interval)", "time_bucket('1s',c)"),
    ("$__unixEpochFilter(c)", "c >= 1492750877 AND c <= 1492751177"),
])
def test_expander_follows_grafanas_documented_expansions(macro: str, out: str) -> None:
    assert expand(macro, start=T1, end=T2) == out


def test_expander_variables_and_errors() -> None:
    assert expand("site = '$site' OR '${site}' OR '[[site]]'", start=T1, end=T2,
                  variables={"site": "o'x"}) == "site = 'o''x' OR 'o''x' OR 'o''x'"
    assert expand("$__timeGroup(c, $__interval)", start=T1, end=T2, timescaledb=False) == \
        "floor(extract(epoch from c)/1)*1"
    with pytest.raises(KeyError):
        expand("x = '$nope'", start=T1, end=T2)
    with pytest.raises(ValueError, match="unknown macro"):
        expand("$__nope(c)", start=T1, end=T2)
