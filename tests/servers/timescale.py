"""PostgreSQL 17 + TimescaleDB (Apache edition) for tests, with the API of PostgresServer.

Debian 12 does not package TimescaleDB, so there the server runs from the Debian 13 root
that scripts/timescaledb-root.sh builds (through scripts/in-timescaledb-root.sh; needs
root). On a host with the extension installed natively (Debian 13:
postgresql-17-timescaledb) the host's programs are used directly.

Fixtures:
    timescale       (session)  TimescaleServer; `timescaledb.license` in `.license`
    timescale_db    (function) URL of a fresh, empty database (CREATE EXTENSION is left to
                               the code under test; `fresh_db(extensions=["timescaledb"])`
                               gives one with the extension)
    make_timescale  (function) factory of private servers, for tests that crash their database
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from smartward.pg_binaries import native_timescale_bindir
from tests.servers._proc import free_port, missing_server, private_servers
from tests.servers.postgres import PgCommands, PostgresServer, host_commands

REPO = Path(__file__).resolve().parents[2]
IN_ROOT = REPO / "scripts" / "in-timescaledb-root.sh"
ROOT_BINDIR = "/usr/lib/postgresql/17/bin"
ROOT_SERVER_DIR = "/srv/smartward"  # where in-timescaledb-root.sh mounts the server's directory

SETTINGS: Mapping[str, str] = {
    "shared_preload_libraries": "'timescaledb'",
    # The extension would otherwise report usage to Timescale over the network.
    "timescaledb.telemetry_level": "off",
}


def cache_dir() -> Path:
    return Path(os.environ.get("SMARTWARD_CACHE", "/var/cache/smartward"))


def chroot_root() -> Path:
    return cache_dir() / "trixie-timescaledb"


class TimescaleServer(PostgresServer):
    """A PostgresServer with TimescaleDB preloaded. `license` and `timescaledb_version` are
    read from the server when it first starts (`SHOW timescaledb.license` works only in a
    database where the extension exists, so a scratch database is used and dropped)."""

    license = ""
    timescaledb_version = ""
    mode = ""  # "native" (host packages) or "chroot" (the Debian 13 root)

    def probe(self) -> None:
        name = "smartward_probe"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            with psycopg.connect(self.url_for(name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION timescaledb")
                row = conn.execute(
                    "SELECT current_setting('timescaledb.license'), extversion"
                    " FROM pg_extension WHERE extname = 'timescaledb'"
                ).fetchone()
            assert row is not None
            self.license, self.timescaledb_version = str(row[0]), str(row[1])
        finally:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def start_timescale(name: str, keep_logs_in: Path | None) -> TimescaleServer:
    host_dir = Path(tempfile.mkdtemp(prefix=f"smartward-{name}-"))
    bindir = native_timescale_bindir()
    if bindir is not None:
        mode = "native"
        commands = host_commands(bindir, host_dir)
    else:
        mode = "chroot"
        if not (chroot_root() / ".smartward-complete").exists():
            host_dir.rmdir()
            missing_server(
                "TimescaleDB",
                f"no timescaledb extension on this host and no root at {chroot_root()}",
            )
        if os.getuid() != 0:
            host_dir.rmdir()
            missing_server("TimescaleDB", f"entering the root at {chroot_root()} (chroot) needs root")
        commands = PgCommands(
            prefix=(str(IN_ROOT), str(host_dir)),
            bindir=ROOT_BINDIR,
            server_dir=ROOT_SERVER_DIR,
            env={
                "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "SMARTWARD_CACHE": str(cache_dir()),
            },
        )
    server = TimescaleServer(
        name=name,
        host_dir=host_dir,
        port=free_port(),
        commands=commands,
        settings=SETTINGS,
        keep_logs_in=keep_logs_in,
    )
    server.mode = mode
    try:
        server.init()
        server.start()
        server.probe()
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def timescale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimescaleServer]:
    """A TimescaleDB server shared by the session. A test that stops it must start it again
    (`timescale_db` does so for the next test); crash tests use `make_timescale`."""
    server = start_timescale("timescale", tmp_path_factory.mktemp("timescale-logs"))
    yield server
    server.close()


@pytest.fixture
def timescale_db(timescale: TimescaleServer) -> str:
    """URL of a fresh, empty database on the shared `timescale` server."""
    timescale.ensure_running()
    return timescale.fresh_db()


@pytest.fixture
def make_timescale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], TimescaleServer]]:
    """Factory of private TimescaleDB servers, removed when the test ends."""
    yield from private_servers(tmp_path_factory, "timescale", start_timescale)
