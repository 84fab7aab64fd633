"""``smartward bench gateways`` in miniature: 200 gateways, a broker restart, nothing lost.

The real run (10 000 gateways, a batch a minute) is a benchmark: docs/performance.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import gateways as bench_gateways
from bench.gateways_env import write_registry
from contract.registry import load_registry
from tests.servers.mosquitto import mosquitto_binary

pytestmark = pytest.mark.integration


def test_two_hundred_gateways_survive_a_broker_restart(capsys: pytest.CaptureFixture[str]) -> None:
    mosquitto_binary()  # a skip here, a failure under CI, when the broker is not installed
    rc = bench_gateways.main(["--gateways", "200", "--interval", "2", "--steady", "4", "--outage", "2",
                              "--reconnect-max", "2", "--drain-timeout", "60", "--connect-timeout", "60",
                              "--idle", "1"])
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.strip())
    assert rc == 0, out
    assert int(out["max_connections_held"]) == 200
    assert int(out["lost_batches"]) == 0 and int(out["duplicate_batches"]) == 0
    assert int(out["batches_stored"]) == int(out["batches_made"]) > 400
    assert int(out["backlog_batches_at_restart"]) > 0  # the restart really left backlogs to drain


def test_the_generated_registry_loads(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    spec = write_registry(path, 250, 2)
    registry = load_registry(path)
    assert len(list(registry.iter_gateways())) == 250 == len(spec)
    site, gw, pairs = spec[-1]
    assert registry.site_of(gw) == site and all(registry.allows(gw, s, m) for s, m in pairs)
