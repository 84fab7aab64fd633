"""The pg_auto_failover settings (deploy/postgres): what the failover's safety rests on.

The files run for real in tests/faults/test_h2_db_failover.py (through
tests/servers/pg_failover.py); here, the promises a reader of the files relies on."""

from __future__ import annotations

from pathlib import Path

DEPLOY = Path(__file__).parents[2] / "deploy" / "postgres"
# pg_autoctl's keeper default (timeout.network_partition_timeout), in seconds.
KEEPER_PARTITION_TIMEOUT_S = 20


def settings(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in (DEPLOY / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def test_the_standby_is_promoted_only_after_a_cut_off_primary_has_demoted_itself() -> None:
    monitor = settings("monitor.conf")
    assert int(monitor["pgautofailover.primary_demote_timeout"]) > KEEPER_PARTITION_TIMEOUT_S * 1000


def test_the_data_nodes_preload_timescaledb_and_keep_what_pg_autoctl_preloads() -> None:
    libraries = settings("node.conf")["shared_preload_libraries"].strip("'").split(",")
    assert libraries == ["timescaledb", "pg_stat_statements"]
    assert settings("node.conf")["timezone"] == "'UTC'"
