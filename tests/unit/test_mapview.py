"""What the screen's map draws (ops_center/api/mapview.py) and how fresh a reading is
(ops_center/service/kpi.py): pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contract.registry import load_registry
from ops_center.api.mapview import convex_hull, gateway_state, outline, site_points, streets
from ops_center.service.kpi import MIN_FRESH_S, is_fresh

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
REG = load_registry()


def ago(s: float) -> datetime:
    return NOW - timedelta(seconds=s)


def test_gateway_states_of_the_contract() -> None:
    assert gateway_state("online", ago(30), 60, NOW) == "online"
    assert gateway_state("online", ago(600), 60, NOW) == "stale"  # online, silent > 3 intervals
    assert gateway_state("online", None, 60, NOW) == "stale"
    assert gateway_state("offline", ago(5), 60, NOW) == "offline"  # the Last Will wins
    assert gateway_state(None, ago(5), 60, NOW) == "online"  # batches, no status yet
    assert gateway_state(None, None, 60, NOW) == "offline"


def test_a_10_s_detector_does_not_flap_between_60_s_batches() -> None:
    # An An Xá gas detector reports every 10 s, its gateway's batches come every 60 s: just
    # before the next batch its newest reading is ~70 s old, and it is still online.
    spec = REG.sensors["ax-gas-01"].spec
    assert spec.interval_s == 10
    assert is_fresh(spec, ago(70), NOW)
    assert not is_fresh(spec, ago(MIN_FRESH_S + 1), NOW)
    assert gateway_state("online", ago(70), 10, NOW) == "online"


def test_site_outline_holds_every_registered_position() -> None:
    site = REG.sites["thong-nhat"]
    pts = site_points(site)
    ring = outline(pts)
    assert len(ring) >= 3
    lat_lo, lat_hi = min(p[0] for p in ring), max(p[0] for p in ring)
    lon_lo, lon_hi = min(p[1] for p in ring), max(p[1] for p in ring)
    assert all(lat_lo < lat < lat_hi and lon_lo < lon < lon_hi for lat, lon in pts)
    triangle = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    assert convex_hull([*triangle, (0.2, 0.2)]) == triangle


def test_streets_come_from_the_registry_attrs() -> None:
    named = {s.name: len(s.points) for s in streets(REG.sites["thong-nhat"])}
    assert named == {"Trần Đăng Ninh": 2, "Văn Cao": 1}
