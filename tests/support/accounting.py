"""End-to-end accounting of a fault test (docs/reliability.md: "lost" counted from the edge to
the store): every batch each edge created is stored once, with every reading its synthetic
driver made, no dead letter and no sequence gap."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

import psycopg

from contract.registry import Registry
from edge.counters import EdgeStats
from edge.drivers.synthetic import SyntheticDriver
from ingest.stores import open_store


def assert_every_batch_stored_once(db_url: str, finals: Mapping[str, EdgeStats], registry: Registry, *,
                                   start: datetime, end: datetime,
                                   gap_gateways: Collection[str] | None = None) -> None:
    """``finals``: each edge's last stats once drained; readings made from ``start`` to ``end``.
    ``gap_gateways``: whose sequence gaps count (None: every gateway's)."""
    store = open_store(db_url)
    try:
        gaps = [g for g in store.seq_gaps() if gap_gateways is None or g.gateway in gap_gateways]
    finally:
        store.close()
    with psycopg.connect(db_url) as conn:
        for gw, stats in finals.items():
            assert stats.outbox.dropped_batches == 0
            n = stats.outbox.last_seq
            seqs = [int(r[0]) for r in conn.execute(
                "SELECT seq FROM ingest_batches WHERE gateway = %s ORDER BY seq", (gw,)).fetchall()]
            assert len(seqs) == len(set(seqs)), f"{gw}: duplicate batches"
            lost = sorted(set(range(1, n + 1)) - set(seqs))
            assert seqs == list(range(1, n + 1)), f"{gw}: lost {len(lost)} batches, e.g. {lost[:10]}"
            expected = len(SyntheticDriver(registry.sensors_of(gw), start=start, end=end).poll(end))
            row = conn.execute("SELECT count(*), count(DISTINCT (sensor, metric, time)) FROM readings "
                               "WHERE gateway = %s", (gw,)).fetchone()
            assert row is not None and (row[0], row[1]) == (expected, expected), (gw, row, expected)
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        assert dead is not None and dead[0] == 0
    assert gaps == []
