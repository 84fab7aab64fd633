"""The seeded store of the API tests (tests/support/api.py) is what the repository reads: the
helpers fail loudly here if the ingest's schema moves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.support.api import SITES, sqlite_env


def test_seed_is_visible_through_the_repository(tmp_path: Path) -> None:
    for env in sqlite_env(tmp_path / "seed.db"):
        page = env.repo.incidents.list_incidents(None, None, 50, 0)
        assert {i.site for i in page.items} == set(SITES)
        assert env.repo.readings.latest_values([("tn-aq-01", "pm25")], env.seed.now - timedelta(minutes=5))
        assert env.repo.gateways.batch_stats(["tn-gw-01"], env.seed.now - timedelta(hours=1))[0].stored == 9
