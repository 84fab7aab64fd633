"""A PostgreSQL 17 + TimescaleDB cluster with automatic failover by pg_auto_failover.

Three processes of ``pg_autoctl`` (Debian's ``postgresql-17-auto-failover``), each with its own
free loopback port, data directory and ``HOME`` (its pg_autoctl configuration):

- the *monitor* (a PostgreSQL with the ``pgautofailover`` extension) that holds the state
  machine and decides a failover;
- two *keepers*, each running one PostgreSQL: ``node1`` starts as the primary, ``node2`` is
  cloned from it with ``pg_basebackup`` and streams from it as a synchronous standby
  (``synchronous_standby_names = 'ANY 1 (...)'``, set by pg_auto_failover): a commit the
  primary acknowledged is on the standby too.

TimescaleDB is preloaded on both data nodes, and the project's migrations (``smartward db
migrate``'s ``migrate``) are applied to the database ``smartward`` through the multi-host URL.
On a Debian 12 host everything runs inside the Debian 13 root of scripts/timescaledb-root.sh
(needs root); on Debian 13 the host's programs run as ``postgres``.

The nodes run with the shipped settings (deploy/postgres/node.conf, monitor.conf) plus small
test values (``TEST_SETTINGS``); the monitor's timers are shortened (``MONITOR_TEST_SETTINGS``):
a dead primary is noticed within about 3 s and the standby is promoted about 5 s later. The
defaults, and why they are longer, are in deploy/postgres/monitor.conf;
``SMARTWARD_PGAF_SHIPPED_TIMERS=1`` keeps them.

Fixture:
    pg_failover  (function) a started ``FailoverCluster``, removed when the test ends
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from smartward.pg_binaries import native_timescale_bindir
from tests.servers._proc import (
    ServerError,
    free_port,
    kill9,
    log_tail_message,
    missing_server,
    run,
    start_process,
    stop_process,
    wait_until,
)
from tests.servers.postgres import HOST, PgCommands, host_commands
from tests.servers.timescale import (
    IN_ROOT,
    ROOT_BINDIR,
    ROOT_SERVER_DIR,
    cache_dir,
    chroot_root,
)

DBNAME = "smartward"
PG_AUTOCTL = "/usr/bin/pg_autoctl"  # Debian's pg-auto-failover-cli, on the host or in the root
SUPERUSER = "postgres"

# The shipped settings (deploy/postgres/): written to <pgdata>/smartward.conf and included
# last from postgresql.conf, so they win over pg_autoctl's own file. The standby is a
# pg_basebackup copy of the primary: it gets the same file. Test-only values are appended.
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "postgres"

# What a test machine needs on top: small memory (pg_autoctl sizes shared_buffers to a quarter
# of the machine, for each of three instances), and no fsync: the tests crash processes,
# never the operating system (tests/servers/postgres.py).
TEST_SETTINGS: Mapping[str, str] = {
    "shared_buffers": "'128MB'",
    "work_mem": "'8MB'",
    "maintenance_work_mem": "'64MB'",
    "effective_cache_size": "'1GB'",
    "wal_keep_size": "'256MB'",
    "fsync": "off",
    "full_page_writes": "off",
    "lc_messages": "'C'",
    "logging_collector": "off",  # the server's log goes to the node's pg_autoctl.log
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}

# The monitor's timers for tests (deploy/postgres/monitor.conf has the defaults): health check
# every 1 s with a 1 s timeout, 1 retry after 0.5 s; unhealthy after 3 s without a keeper
# report; promotion 5 s after the old primary was asked to demote and did not answer.
MONITOR_TEST_SETTINGS: Mapping[str, str] = {
    **TEST_SETTINGS,
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "1000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "500",
    "pgautofailover.node_considered_unhealthy_timeout": "3000",
    "pgautofailover.primary_demote_timeout": "5000",
}
# A keeper that reaches neither the monitor nor its standby for this long demotes its own
# primary; it must stay below the monitor's primary_demote_timeout (no two primaries).
KEEPER_PARTITION_TIMEOUT_S = 3


def shipped_timers() -> bool:
    """``SMARTWARD_PGAF_SHIPPED_TIMERS=1``: keep deploy/postgres/monitor.conf's timers (and the
    keeper's default partition timeout, 20 s), to measure a failover as deployed."""
    return os.environ.get("SMARTWARD_PGAF_SHIPPED_TIMERS", "") == "1"


WRITABLE_STATES = frozenset({"single", "wait_primary", "primary"})


@dataclass(frozen=True)
class NodeState:
    name: str
    port: int
    reported: str
    goal: str
    healthy: bool


class AutoctlNode:
    """One ``pg_autoctl`` service (the monitor or a keeper) and the PostgreSQL it runs."""

    def __init__(self, name: str, commands: PgCommands, host_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.dir = host_dir
        self.log_path = host_dir / "pg_autoctl.log"
        self.commands = commands
        # A distinct PGDATA path per node: pg_autoctl keys its pid file on it (in /tmp).
        self.pgdata = f"{commands.server_dir}/{name}-{self.port}"
        self.host_pgdata = host_dir / f"{name}-{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def url_for(self, dbname: str, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@{HOST}:{self.port}/{dbname}"

    def autoctl(self, *args: str, what: str, timeout_s: float = 180.0) -> str:
        return run([*self.commands.prefix, PG_AUTOCTL, *args], what=f"{self.name}: {what}",
                   timeout_s=timeout_s, env=self.commands.env, cwd=self.dir, log_path=self.log_path)

    def include(self, shipped: Path, settings: Mapping[str, str]) -> None:
        """The shipped file, then the test's settings, after pg_autoctl's (the last value of
        a setting wins)."""
        conf = self.host_pgdata / "smartward.conf"
        tests = "".join(f"{key} = {value}\n" for key, value in settings.items())
        conf.write_text(f"{shipped.read_text()}\n# tests/servers/pg_failover.py\n{tests}")
        conf.chmod(0o644)
        with (self.host_pgdata / "postgresql.conf").open("a") as main_conf:
            main_conf.write("\ninclude 'smartward.conf'\n")

    def start(self) -> None:
        """``pg_autoctl run`` in the background: it starts PostgreSQL and keeps it running."""
        argv = [*self.commands.prefix, PG_AUTOCTL, "run", "--pgdata", self.pgdata]
        self.proc = start_process(argv, self.log_path, env=self.commands.env, cwd=self.dir)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """The node's machine dies: ``kill -9`` of pg_autoctl and its PostgreSQL (one process
        group). Killing PostgreSQL alone is not a failover: its keeper restarts it in place."""
        if self.proc is not None:
            kill9(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout_s=30)


class FailoverCluster:
    """The monitor, ``node1`` (first primary) and ``node2`` (first standby).

    ``url`` is the multi-host URL the ingest and the ops center use; ``states()``,
    ``wait_for()`` and ``primary()`` read the monitor; ``events()`` its event log."""

    def __init__(self, host_dir: Path, commands_for: Callable[[Path], PgCommands],
                 keep_logs_in: Path | None) -> None:
        self.dir = host_dir
        self._keep_logs_in = keep_logs_in
        self.build_s = 0.0
        self.monitor = AutoctlNode("monitor", commands_for(host_dir / "monitor"), host_dir / "monitor")
        self.nodes = [AutoctlNode(f"node{i}", commands_for(host_dir / f"node{i}"), host_dir / f"node{i}")
                      for i in (1, 2)]
        self._bindir = self.monitor.commands.bindir
        self._in_root = self.monitor.commands.prefix[:1] == (str(IN_ROOT),)
        hosts = ",".join(f"{HOST}:{n.port}" for n in self.nodes)
        self.url = f"postgresql://{SUPERUSER}@{hosts}/{DBNAME}?target_session_attrs=read-write"
        self.monitor_url = self.monitor.url_for("pg_auto_failover")

    # --- building --------------------------------------------------------------------------

    def build(self) -> None:
        for node in (self.monitor, *self.nodes):
            node.dir.mkdir(parents=True, exist_ok=True)
            if os.getuid() == 0 and not self._in_root:
                os.chown(node.dir, *_owner(self.dir))  # the host's `postgres` (host_commands)
        common = ["--hostname", HOST, "--auth", "trust", "--no-ssl", "--pgctl", f"{self._bindir}/pg_ctl"]
        m = self.monitor
        m.autoctl("create", "monitor", "--pgdata", m.pgdata, "--pgport", str(m.port), *common,
                  what="create monitor")
        m.autoctl("config", "set", "--pgdata", m.pgdata, "postgresql.listen_addresses", HOST,
                  what="monitor listen address")
        m.include(DEPLOY / "monitor.conf", TEST_SETTINGS if shipped_timers() else MONITOR_TEST_SETTINGS)
        m.start()
        self._wait_sql(m.url_for("pg_auto_failover"), m, "monitor accepts connections")
        monitor_uri = f"postgresql://autoctl_node@{HOST}:{m.port}/pg_auto_failover?sslmode=disable"
        for i, node in enumerate(self.nodes):
            # `create` without --run initialises and stops; node2 is cloned from node1 here.
            node.autoctl("create", "postgres", "--pgdata", node.pgdata, "--pgport", str(node.port),
                         "--listen", HOST, "--name", node.name, "--dbname", DBNAME,
                         "--monitor", monitor_uri, *common, what="create postgres")
            if not shipped_timers():
                node.autoctl("config", "set", "--pgdata", node.pgdata, "timeout.network_partition_timeout",
                             str(KEEPER_PARTITION_TIMEOUT_S), what="partition timeout")
            if i == 0:
                node.include(DEPLOY / "node.conf", TEST_SETTINGS)  # the clone copies both
            node.start()
        self.wait_for(lambda s: s.get("node1") == ("primary", "primary")
                      and s.get("node2") == ("secondary", "secondary"), 120, "node1 primary, node2 secondary")
        from smartward.db_cli import migrate

        migrate(self.url, None)

    def _wait_sql(self, url: str, node: AutoctlNode, what: str) -> None:
        def answers() -> bool:
            try:
                with psycopg.connect(url, connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                return False

        wait_until(answers, timeout_s=60, what=what, alive=node.running, log_path=node.log_path)

    # --- reading the monitor ---------------------------------------------------------------

    def states(self) -> list[NodeState]:
        with psycopg.connect(self.monitor_url, connect_timeout=2) as conn:
            rows = conn.execute("SELECT nodename, nodeport, reportedstate::text, goalstate::text, health"
                                " FROM pgautofailover.node ORDER BY nodeid").fetchall()
        return [NodeState(str(r[0]), int(r[1]), str(r[2]), str(r[3]), int(r[4]) == 1) for r in rows]

    def wait_for(self, condition: Callable[[dict[str, tuple[str, str]]], bool], timeout_s: float,
                 what: str) -> None:
        """Until ``condition({name: (reported, goal)})`` holds (the monitor's view)."""
        def check() -> bool:
            try:
                view = {s.name: (s.reported, s.goal) for s in self.states()}
            except psycopg.OperationalError:
                return False
            return condition(view)

        try:
            wait_until(check, timeout_s=timeout_s, what=what, alive=self.monitor.running)
        except ServerError as exc:
            logs = "".join(log_tail_message(n.log_path) for n in (self.monitor, *self.nodes))
            raise ServerError(f"{exc}; states {self.states()}{logs}") from exc

    def writable(self) -> AutoctlNode | None:
        """The node that accepts a read-write session now (as the clients see it), if any."""
        for node in self.nodes:
            try:
                with psycopg.connect(node.url_for(DBNAME), connect_timeout=1,
                                     target_session_attrs="read-write"):
                    return node
            except psycopg.OperationalError:
                continue
        return None

    def primary(self) -> AutoctlNode:
        states = {s.name: s for s in self.states()}
        for node in self.nodes:
            s = states.get(node.name)
            if s is not None and s.reported in WRITABLE_STATES and s.goal in WRITABLE_STATES:
                return node
        raise ServerError(f"no primary: {list(states.values())}")

    def events(self, limit: int = 40) -> list[tuple[str, str]]:
        with psycopg.connect(self.monitor_url, connect_timeout=2) as conn:
            rows = conn.execute("SELECT eventtime::text, description FROM pgautofailover.event"
                                " ORDER BY eventid DESC LIMIT %s", (limit,)).fetchall()
        return [(str(r[0]), str(r[1])) for r in reversed(rows)]

    # --- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        for node in (*self.nodes, self.monitor):
            try:
                node.stop()
            except Exception:  # a teardown: stop the rest whatever happens
                node.kill9()
        if self._keep_logs_in is not None:
            self._keep_logs_in.mkdir(parents=True, exist_ok=True)
            for node in (self.monitor, *self.nodes):
                if node.log_path.exists():
                    shutil.copyfile(node.log_path, self._keep_logs_in / f"{node.name}-{node.port}.log")
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._in_root:
            # pg_autoctl's pid files live in the root's /tmp, keyed on the PGDATA path.
            for node in (self.monitor, *self.nodes):
                shutil.rmtree(chroot_root() / f"tmp/pg_autoctl{node.pgdata}", ignore_errors=True)


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def commands_factory(host_dir: Path) -> Callable[[Path], PgCommands]:
    """How to run pg_autoctl and PostgreSQL 17 for a node directory: the host's (Debian 13,
    as ``postgres``) or the Debian 13 root's (in-timescaledb-root.sh mounts the node's
    directory at /srv/smartward)."""
    bindir = native_timescale_bindir()
    if bindir is not None:
        if not Path(PG_AUTOCTL).exists():
            missing_server("pg_auto_failover", "no pg_autoctl (Debian package: postgresql-17-auto-failover)")
        found = bindir

        def native(node_dir: Path) -> PgCommands:
            node_dir.mkdir(parents=True, exist_ok=True)
            c = host_commands(found, host_dir)
            return PgCommands(prefix=c.prefix, bindir=c.bindir, server_dir=str(node_dir),
                              env={**c.env, "HOME": str(node_dir)})

        return native
    root = chroot_root()
    if not (root / ".smartward-complete").exists():
        missing_server("TimescaleDB", f"no timescaledb extension on this host and no root at {root}")
    if not (root / "usr/bin/pg_autoctl").exists():
        missing_server("pg_auto_failover", f"no pg_autoctl in {root} (scripts/timescaledb-root.sh adds it)")
    if os.getuid() != 0:
        missing_server("pg_auto_failover", f"entering the root at {root} (chroot) needs root")
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "SMARTWARD_CACHE": str(cache_dir())}

    def in_root(node_dir: Path) -> PgCommands:
        return PgCommands(prefix=(str(IN_ROOT), str(node_dir)), bindir=ROOT_BINDIR,
                          server_dir=ROOT_SERVER_DIR, env=env)

    return in_root


def start_failover_cluster(keep_logs_in: Path | None = None) -> FailoverCluster:
    host_dir = Path(tempfile.mkdtemp(prefix="smartward-pgaf-"))
    try:
        commands_for = commands_factory(host_dir)
    except BaseException:
        host_dir.rmdir()
        raise
    cluster = FailoverCluster(host_dir, commands_for, keep_logs_in)
    started = time.monotonic()
    try:
        cluster.build()
    except BaseException:
        cluster.close()
        raise
    cluster.build_s = time.monotonic() - started
    return cluster


@pytest.fixture
def pg_failover(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailoverCluster]:
    """A monitor + primary + standby with TimescaleDB and the project's schema (≈ 40 s here)."""
    cluster = start_failover_cluster(tmp_path_factory.mktemp("pg-failover-logs"))
    yield cluster
    cluster.close()
