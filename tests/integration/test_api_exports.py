"""CSV exports against a real (SQLite) store with seeded rows: scoped like the list routes,
bounded, Excel-friendly (BOM, bilingual header), streamed page by page, audited."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from ops_center.api.routes import exports
from tests.support.api import Env, auth, sqlite_env

pytestmark = pytest.mark.integration

V1 = "/api/v1/exports"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path / "exports.db")


def window(env: Env, hours: float = 3) -> dict[str, str]:
    end = env.seed.now + timedelta(minutes=1)
    return {"start": (end - timedelta(hours=hours)).isoformat(), "end": end.isoformat()}


def rows(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff"), "no byte-order mark: Excel would garble Vietnamese"
    return list(csv.reader(io.StringIO(text[1:])))


def test_readings_export_is_csv_with_bom_and_bilingual_header(env: Env) -> None:
    r = env.client.get(f"{V1}/readings.csv", params={"sensor": "tn-aq-01", "metric": "no2", **window(env)},
                       headers=auth(env.tokens["tn-staff"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    table = rows(r.content.decode("utf-8"))
    assert table[0][4] == "Cảm biến / sensor" and table[0][6] == "Giá trị / value"
    body = table[1:]
    # One no2 value a minute for 2 h, and the "latest" reading of every sensor (42.0).
    expected = sorted([float(k) for k in range(120)] + [42.0])
    assert len(body) == 121
    assert {tuple(row[2:6]) for row in body} == {("thong-nhat", "tn-gw-01", "tn-aq-01", "no2")}
    assert sorted(float(row[6]) for row in body) == expected
    assert body[0][0].endswith("Z") and body[0][1] != body[0][0]  # UTC, and Vietnam's local time


def test_readings_export_pages_through_long_series(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "PAGE_ROWS", 7)
    r = env.client.get(f"{V1}/readings.csv", params={"sensor": "tn-aq-01", "metric": "no2", **window(env)},
                       headers=auth(env.tokens["tn-staff"]))
    body = rows(r.text)[1:]
    expected = sorted([float(k) for k in range(120)] + [42.0])
    assert sorted(float(row[6]) for row in body) == expected  # none lost, none twice


def test_exports_stay_within_the_users_sites(env: Env) -> None:
    staff = auth(env.tokens["tn-staff"])
    # No site: only the user's own rows.
    r = env.client.get(f"{V1}/readings.csv", params=window(env), headers=staff)
    assert r.status_code == 200
    sites = {row[2] for row in rows(r.text)[1:]}
    assert sites == {"thong-nhat"}
    assert "qt-" not in r.text and "ax-" not in r.text
    # Another site, or a sensor of another site: 404, as every scoped resource.
    foreign = ({"site": "quang-trung"}, {"sensor": "qt-aq-01"}, {"site": "thong-nhat", "sensor": "qt-aq-01"})
    for params in foreign:
        for route in ("readings.csv", "incidents.csv"):
            if route == "incidents.csv" and "sensor" in params:
                continue
            r = env.client.get(f"{V1}/{route}", params={**params, **window(env)}, headers=staff)
            assert r.status_code == 404, (route, params, r.text)
    r = env.client.get(f"{V1}/incidents.csv", params=window(env, hours=24 * 30), headers=staff)
    assert r.status_code == 200
    incidents = rows(r.text)[1:]
    assert incidents and {row[1] for row in incidents} == {"thong-nhat"}
    # A city leader exports every site.
    r = env.client.get(f"{V1}/incidents.csv", params=window(env, hours=24 * 30),
                       headers=auth(env.tokens["leader"]))
    assert {row[1] for row in rows(r.text)[1:]} == {"thong-nhat", "quang-trung", "an-xa"}
    # Each export, and each refusal, is in the audit log.
    audit = env.repo.users.audit_entries(1000, 0).items
    assert any(a.actor == "tn-staff" and a.action == "export.readings" and a.outcome == "ok" for a in audit)
    assert any(a.actor == "leader" and a.action == "export.incidents" for a in audit)
    assert any(a.actor == "tn-staff" and a.action == "scope_denied" and a.site == "quang-trung"
               for a in audit)


def test_export_range_is_required_and_capped_and_may_be_empty(env: Env) -> None:
    staff = auth(env.tokens["tn-staff"])
    end = env.seed.now
    too_long = {"start": (end - timedelta(days=32)).isoformat(), "end": end.isoformat()}
    backwards = {"start": end.isoformat(), "end": (end - timedelta(hours=1)).isoformat()}
    for route in ("readings.csv", "incidents.csv"):
        for params, code in (({}, "validation"), (too_long, "range_too_long")):
            r = env.client.get(f"{V1}/{route}", params=params, headers=staff)
            assert (r.status_code, r.json()["error"]) == (422, code), (route, params)
        # An empty range is an empty export, not an error.
        r = env.client.get(f"{V1}/{route}", params=backwards, headers=staff)
        assert r.status_code == 200 and len(rows(r.text)) == 1
    r = env.client.get(f"{V1}/readings.csv", params={"sensor": "tn-aq-01", "metric": "lamp_power_w",
                                                     **window(env)}, headers=staff)
    assert (r.status_code, r.json()["error"]) == (422, "unknown_metric")
