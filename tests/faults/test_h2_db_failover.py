"""H2: the database primary dies, pg_auto_failover promotes the standby, nothing is lost.

Everything real: a pg_auto_failover monitor with a TimescaleDB primary and a synchronous
standby (tests/servers/pg_failover.py), the shipped Mosquitto configuration, ``smartward ingest
run`` and ``smartward ops serve`` as processes on the multi-host URL
``postgresql://…@127.0.0.1:p1,127.0.0.1:p2/smartward?target_session_attrs=read-write``, and three
edge agents (the synthetic driver as ground truth) publishing through it all.

While they publish, the primary's machine dies: ``kill -9`` of its pg_autoctl keeper and its
PostgreSQL together (PostgreSQL alone would be restarted in place by its keeper). The monitor
notices, waits for the old primary to demote (it cannot) and promotes the standby. Pass when:

- no ack watermark covers a batch that was not committed when the primary died (the ingest
  stops acking; the edges keep their outboxes), and the ingest's readiness turns red;
- the ingest commits on the new primary by itself and every edge drains: every batch stored
  exactly once with every reading the driver produced, no dead letter, no seq gap;
- the ops center writes on the new primary by itself: the incident opened before the kill is
  resolved after it, and a new one opens;
- the dead machine, started again, rejoins by itself as the new primary's synchronous standby
  and holds what the primary commits.

The figures (kill → promotion, kill → first commit on the new primary, kill → first ops write)
are printed and recorded in docs/reliability.md (H2) and docs/scale-out.md.
``SMARTWARD_H2_SECONDS`` (default 60) sets how long the edges publish, ``SMARTWARD_H2_SPEED``
(default 60) how fast their clocks run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from contract import topics
from contract.registry import load_registry
from edge.agent import Agent
from edge.drivers.synthetic import SyntheticDriver
from tests.integration.test_edge_mqtt import T0, drained, edge_agent
from tests.integration.test_ingest_faults import workers
from tests.integration.test_ops_service import Publisher, batch
from tests.servers._proc import free_port, log_tail_message, start_process, stop_process, wait_for_port
from tests.servers.mosquitto import MosquittoFactory
from tests.servers.pg_failover import DBNAME, FailoverCluster, pg_failover
from tests.support.accounting import assert_every_batch_stored_once
from tests.support.ingest import AckWatcher
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(600)]
__all__ = ["pg_failover", "workers"]

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry()
RUN_S = float(os.environ.get("SMARTWARD_H2_SECONDS", "60"))
KILL_AFTER_S = 15.0  # of publishing, before the primary dies
GATEWAYS = ("tn-gw-01", "qt-gw-01", "tn-gw-02")  # the edges; an-xa is kept for the incidents
# Simulated seconds per real second. These gateways' sensors report every minute: a batch a
# simulated minute, one a second per gateway at 60×, so ten of each pile up in the failover.
SPEED = float(os.environ.get("SMARTWARD_H2_SPEED", "60"))
SECRET = "h2-failover-secret-key-0123456789abcdef"
INCIDENT_GW, INCIDENT_SITE = "ax-gw-02", "an-xa"


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=2) as conn:
        return [tuple(r) for r in conn.execute(query.encode(), params).fetchall()]


def committed(url: str) -> dict[str, int]:
    """Per edge gateway: the highest seq below which every batch is stored."""
    rows = sql(url, "SELECT gateway, seq FROM ingest_batches WHERE gateway = ANY(%s)", list(GATEWAYS))
    seqs: dict[str, set[int]] = {gw: set() for gw in GATEWAYS}
    for gw, seq in rows:
        seqs[str(gw)].add(int(seq))
    out = {}
    for gw, have in seqs.items():
        n = 0
        while n + 1 in have:
            n += 1
        out[gw] = n
    return out


def incidents(url: str) -> list[tuple[str, str]]:
    """The gas leaks of the incident gateway's site, oldest first: (id, state). Other kinds
    may open there too (its sensors that never report go silent when a run is long)."""
    return [(str(i), str(s)) for i, s in sql(
        url, "SELECT id, state FROM incidents WHERE site = %s AND kind = 'gas_leak' ORDER BY opened_at",
        INCIDENT_SITE)]


class Ops:
    """``smartward ops serve`` as a process on the cluster's multi-host URL."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = tmp / "ops.log"
        argv = [sys.executable, "-m", "smartward.cli", "ops", "serve", "--port", str(self.port)]
        self.proc = start_process(argv, self.log, env=env, cwd=ROOT)
        wait_for_port("127.0.0.1", self.port, proc=self.proc, timeout_s=90, log_path=self.log)

    def ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def diagnosis(self) -> str:
        """For a failure message: the service's counters and the end of its log."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError as exc:
            text = f"no metrics: {exc}"
        counters = "\n".join(line for line in text.splitlines() if line.startswith("smartward_ops"))
        return f"\n--- ops metrics ---\n{counters}{log_tail_message(self.log)}"

    def close(self) -> None:
        stop_process(self.proc, timeout_s=30)


@contextlib.contextmanager
def agents(tmp_path: Path, url: str, end: datetime) -> Iterator[dict[str, Agent]]:
    with contextlib.ExitStack() as stack:
        out = {}
        for gw in GATEWAYS:
            driver = SyntheticDriver(REGISTRY.sensors_of(gw), start=T0, end=end)
            out[gw] = stack.enter_context(edge_agent(tmp_path / gw, url, speed=SPEED, end=end,
                                                     driver=driver, gateway=gw))
        yield out


def failover(cluster: FailoverCluster, acks: AckWatcher, ingest: Any,
             meanwhile: Callable[[], None]) -> tuple[float, dict[str, float]]:
    """Kill the primary's machine, run ``meanwhile``, and watch the standby take over. Returns
    when it was killed (monotonic) and the figures; checks on the way that no ack got ahead of
    what the dead primary had committed, and that the ingest's readiness turned red."""
    old, new = cluster.nodes
    assert cluster.primary() is old
    standby = new.url_for(DBNAME)
    killed = time.monotonic()
    old.kill9()
    meanwhile()
    # The standby holds every acknowledged commit (synchronous replication); wait until it has
    # replayed what it received, then read what was committed when the primary died.
    wait_until(lambda: sql(standby, "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()")[0][0],
               10, "the standby replays what it received")
    at_kill = committed(standby)
    count_at_kill = int(sql(standby, "SELECT count(*) FROM ingest_batches")[0][0])
    figures: dict[str, float] = {}
    red = False
    deadline = killed + 120
    while "first_commit_s" not in figures:
        assert time.monotonic() < deadline, f"no commit on the new primary; {cluster.states()}"
        if "promoted_s" not in figures:
            with acks.cond:
                marks = dict(acks.marks)
            if cluster.writable() is new:
                figures["promoted_s"] = time.monotonic() - killed
            else:
                # Nothing can commit now: an ack past the dead primary's commits is a lie.
                for gw in GATEWAYS:
                    assert marks.get(gw, 0) <= at_kill[gw], (gw, marks.get(gw), at_kill[gw])
                red = red or not ingest.ready()
        else:
            if int(sql(standby, "SELECT count(*) FROM ingest_batches")[0][0]) > count_at_kill:
                figures["first_commit_s"] = time.monotonic() - killed
        time.sleep(0.1)  # polling another process's database: no event to wait on
    assert red, "the ingest stayed ready while no database took writes"
    return killed, figures


def test_primary_killed_standby_promoted_ingest_and_ops_resume_losing_nothing(
    tmp_path: Path, mosquitto: MosquittoFactory, pg_failover: FailoverCluster, workers: Any,
) -> None:
    cluster = pg_failover
    broker = mosquitto()
    url = cluster.url
    ingest = workers(broker.url, url, "h2-ingest")
    ingest.start()
    wait_until(ingest.ready, 90, "ingest ready")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SMARTWARD_DB_URL": url, "SMARTWARD_MQTT_URL": broker.url,
           "SMARTWARD_COMMANDS_MQTT_URL": broker.url, "SMARTWARD_SECRET_KEY": SECRET,
           "SMARTWARD_OPS_CLIENT_ID": "h2-ops", "SMARTWARD_LOG_LEVEL": "INFO"}
    ops = Ops(tmp_path, env)
    gas = Publisher(broker.url)
    acks = AckWatcher(broker.url, client_id="h2-acks")
    end = T0 + timedelta(seconds=RUN_S * SPEED)
    t1 = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    telemetry = topics.telemetry(INCIDENT_SITE, INCIDENT_GW)
    try:
        wait_until(ops.ready, 60, "ops ready")
        with agents(tmp_path, broker.url, end) as running:
            # Before the kill: gas on ax-gas-01 opens incident A.
            gas.send(telemetry, batch(1, t1, 25.0))
            wait_until(lambda: [s for _, s in incidents(url)] == ["open"], 60, "incident A open")
            (incident_a, _), = incidents(url)
            started = time.monotonic()
            wait_until(lambda: min(committed(url).values()) >= 3, 60, "every edge committing")
            time.sleep(max(0.0, KILL_AFTER_S - (time.monotonic() - started)))  # publishing goes on

            def gas_clears_then_leaks_again() -> None:
                """Sent while no database takes writes: the gas clears (120 s of reading
                time), and long after the incident's hold and reopen window a new leak opens
                incident B; A is resolved first. The ops service must hold them until it can
                write."""
                for k in range(2, 22):
                    gas.send(telemetry, batch(k, t1 + timedelta(seconds=10 * (k - 1)), 0.0))
                gas.send(telemetry, batch(22, t1 + timedelta(seconds=6000), 30.0))

            killed_at, figures = failover(cluster, acks, ingest, gas_clears_then_leaks_again)
            try:
                wait_until(lambda: len(incidents(url)) == 2, 120, "incident B opened after the failover")
            except AssertionError as exc:
                every = sql(url, "SELECT kind, state FROM incidents ORDER BY opened_at")
                raise AssertionError(f"{exc}: {every}{ops.diagnosis()}") from exc
            figures["ops_write_s"] = time.monotonic() - killed_at
            wait_until(lambda: incidents(url)[0] == (incident_a, "resolved"), 30, "incident A resolved")
            assert incidents(url)[1][1] == "open"
            wait_until(ingest.ready, 60, "ingest ready after the failover")
            wait_until(ops.ready, 60, "ops ready after the failover")
            finals = {gw: a.wait_until(drained(end), 240) for gw, a in running.items()}
        batches = {gw: stats.outbox.last_seq for gw, stats in finals.items()}
        print(f"H2 figures (s after the kill): {figures}; batches per edge {batches}; "
              f"cluster built in {cluster.build_s:.1f} s")
        for when, what in cluster.events(12):
            print(f"  {when} {what}")
    finally:
        gas.close()
        acks.close()
        ops.close()

    assert cluster.primary() is cluster.nodes[1]
    assert_every_batch_stored_once(url, finals, REGISTRY, start=T0, end=end, gap_gateways=GATEWAYS)
    rejoin_old_primary(cluster)


def rejoin_old_primary(cluster: FailoverCluster) -> None:
    """The dead machine comes back: its keeper, started as before, rewinds it and it follows
    the new primary as the synchronous standby (no operator step); what the new primary
    commits is then on it too."""
    old, new = cluster.nodes
    back = time.monotonic()
    old.start()
    cluster.wait_for(lambda s: s.get(old.name) == ("secondary", "secondary")
                     and s.get(new.name) == ("primary", "primary"), 180,
                     f"{old.name} back as the standby of {new.name}")
    rejoined_s = time.monotonic() - back
    with psycopg.connect(new.url_for(DBNAME), connect_timeout=2) as conn:
        conn.execute("CREATE TABLE h2_rejoin (n int)")
        conn.execute("INSERT INTO h2_rejoin VALUES (1)")
    # The commit (at the block's end) waited for the standby's flush; its replay follows.

    def replayed() -> bool:
        try:
            return bool(sql(old.url_for(DBNAME), "SELECT count(*) FROM h2_rejoin")[0][0] == 1)
        except psycopg.errors.UndefinedTable:
            return False

    wait_until(replayed, 30, "the row committed on the new primary replayed on the old one")
    assert sql(old.url_for(DBNAME), "SELECT pg_is_in_recovery()")[0][0] is True
    assert sql(new.url_for(DBNAME), "SELECT count(*) FROM ingest_batches") == \
        sql(old.url_for(DBNAME), "SELECT count(*) FROM ingest_batches")
    print(f"H2 rejoin: {old.name} back as the standby {rejoined_s:.1f} s after its keeper started")
