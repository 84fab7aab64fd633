"""PostgreSQL clusters for tests: each one initdb'd in a temporary directory, listening on a
free loopback port with trust authentication, stopped and removed at the end.

Fixtures:
    postgres       (session)  PostgresServer of Debian's default PostgreSQL (15 on bookworm)
    postgres_db    (function) URL of a fresh, empty database on `postgres`
    make_postgres  (function) factory of private servers, for tests that crash their database

tests/servers/timescale.py reuses PostgresServer with the TimescaleDB build.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from smartward.pg_binaries import host_bindir
from tests.servers._proc import ServerError, free_port, log_tail_message, missing_server, private_servers, run

HOST = "127.0.0.1"
SUPERUSER = "postgres"

# The project's own test configuration, written to <data>/smartward.conf and included from
# postgresql.conf. fsync and full_page_writes are off because the tests crash processes
# (kill -9, `pg_ctl stop -m immediate`), never the operating system: crash recovery still
# replays the WAL from the page cache, and CI disks make fsync the slowest part of a test.
BASE_SETTINGS: Mapping[str, str] = {
    "listen_addresses": f"'{HOST}'",
    "max_connections": "200",
    "fsync": "off",
    "full_page_writes": "off",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "lc_messages": "'C'",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}


@dataclass(frozen=True)
class PgCommands:
    """How to run the PostgreSQL programs of one installation as the database's OS user.

    `prefix` is put before each command (switch user, or enter the TimescaleDB root);
    `bindir` and `server_dir` are paths as the programs see them, which differ from the
    host's paths inside a chroot.
    """

    prefix: tuple[str, ...]
    bindir: str
    server_dir: str
    env: Mapping[str, str]

    def argv(self, program: str, *args: str) -> list[str]:
        return [*self.prefix, f"{self.bindir}/{program}", *args]


class PostgresServer:
    """One PostgreSQL cluster of its own.

    Attributes: `url` (superuser, database `postgres`), `host`, `port`, `user`, `dir` (the
    host directory with `data/` and `server.log`), `log_path`.
    """

    def __init__(
        self,
        *,
        name: str,
        host_dir: Path,
        port: int,
        commands: PgCommands,
        settings: Mapping[str, str] | None = None,
        keep_logs_in: Path | None = None,
    ) -> None:
        self.name = name
        self.dir = host_dir
        self.host = HOST
        self.port = port
        self.user = SUPERUSER
        self.url = self.url_for("postgres")
        self.log_path = host_dir / "server.log"
        self._commands = commands
        self._settings = {
            **BASE_SETTINGS,
            "port": str(port),
            # The socket sits in the server's own directory: no clash with a system instance.
            "unix_socket_directories": f"'{commands.server_dir}'",
            **(settings or {}),
        }
        self._keep_logs_in = keep_logs_in

    # --- lifecycle ---------------------------------------------------------------------

    def init(self) -> None:
        """initdb with trust authentication (local and 127.0.0.1), UTF-8, C collation."""
        self._pg(
            "initdb",
            "-D", self._inner("data"),
            "-U", SUPERUSER,
            "-A", "trust",
            "-E", "UTF8",
            "--no-locale",
            "--no-sync",  # a throw-away cluster: no need to fsync its files
            what=f"{self.name}: initdb",
        )
        conf = self.dir / "data" / "smartward.conf"
        conf.write_text("".join(f"{key} = {value}\n" for key, value in self._settings.items()))
        conf.chmod(0o644)
        with (self.dir / "data" / "postgresql.conf").open("a") as main_conf:
            main_conf.write("\ninclude 'smartward.conf'\n")

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start the cluster and wait until it accepts connections (`pg_ctl start -w`)."""
        self._pg(
            "pg_ctl",
            "-D", self._inner("data"),
            "-l", self._inner("server.log"),
            "-w", "-t", str(int(timeout_s)),
            "start",
            what=f"{self.name}: pg_ctl start",
            timeout_s=timeout_s + 10,
        )

    def stop(self, *, timeout_s: float = 60.0) -> None:
        """A clean shutdown (`pg_ctl stop -m fast`): sessions are ended, data checkpointed."""
        self._stop("fast", timeout_s)

    def stop_immediate(self) -> None:
        """A crash (`pg_ctl stop -m immediate`): every process quits at once, no checkpoint;
        the next start runs crash recovery."""
        self._stop("immediate", 30.0)

    def restart(self) -> None:
        """Stop cleanly if running, then start on the same port and data."""
        if self.is_running():
            self.stop()
        self.start()

    def ensure_running(self) -> None:
        """Start the server if a test left it stopped."""
        if not self.is_running():
            self.start()

    def is_running(self) -> bool:
        try:
            pid = int((self.dir / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # running under another uid: it exists
            return True
        return True

    def close(self) -> None:
        """Stop at once, keep the log (when asked to), remove the cluster."""
        try:
            if self.is_running():
                self.stop_immediate()
        finally:
            if self._keep_logs_in is not None and self.log_path.exists():
                self._keep_logs_in.mkdir(parents=True, exist_ok=True)
                kept = self._keep_logs_in / f"{self.name}-{self.port}.log"
                shutil.copyfile(self.log_path, kept)
                self.log_path = kept
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- databases ---------------------------------------------------------------------

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def fresh_db(self, prefix: str = "test", *, extensions: Sequence[str] = ()) -> str:
        """Create an empty database with a unique name (and the given extensions); its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = self.url_for(name)
        if extensions:
            with psycopg.connect(url, autocommit=True) as conn:
                for extension in extensions:
                    conn.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(extension)))
        return url

    def server_version(self) -> str:
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return str(row[0])

    # --- internals ---------------------------------------------------------------------

    def _stop(self, mode: str, timeout_s: float) -> None:
        self._pg(
            "pg_ctl",
            "-D", self._inner("data"),
            "-m", mode,
            "-w", "-t", str(int(timeout_s)),
            "stop",
            what=f"{self.name}: pg_ctl stop -m {mode}",
            timeout_s=timeout_s + 10,
        )

    def _inner(self, relative: str) -> str:
        return f"{self._commands.server_dir}/{relative}"

    def _pg(self, program: str, *args: str, what: str, timeout_s: float = 120.0) -> str:
        try:
            return run(
                self._commands.argv(program, *args),
                what=what,
                timeout_s=timeout_s,
                env=self._commands.env,
                cwd=self.dir,
                log_path=self.log_path,
            )
        except ServerError:
            raise
        except OSError as exc:
            raise ServerError(f"{what}: {exc}{log_tail_message(self.log_path)}") from exc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.url}>"


# --- the host's PostgreSQL ---------------------------------------------------------------

def host_commands(bindir: Path, server_dir: Path) -> PgCommands:
    """Run the host's programs as `postgres` when we are root (initdb refuses root)."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(server_dir)}
    if os.getuid() != 0:
        return PgCommands(prefix=(), bindir=str(bindir), server_dir=str(server_dir), env=env)
    try:
        account = pwd.getpwnam(SUPERUSER)
    except KeyError:
        missing_server("PostgreSQL", "running as root and there is no `postgres` user to run the server as")
    os.chown(server_dir, account.pw_uid, account.pw_gid)
    # setpriv (util-linux) switches user without PAM or a login shell.
    prefix = ("setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", "--")
    return PgCommands(prefix=prefix, bindir=str(bindir), server_dir=str(server_dir), env=env)


def start_host_postgres(name: str, keep_logs_in: Path | None) -> PostgresServer:
    bindir = host_bindir()
    if bindir is None:
        where = os.environ.get("SMARTWARD_PG_BINDIR") or "/usr/lib/postgresql/*/bin"
        missing_server("PostgreSQL", f"no initdb in {where} (Debian package: postgresql)")
    host_dir = Path(tempfile.mkdtemp(prefix=f"smartward-{name}-"))
    server = PostgresServer(
        name=name,
        host_dir=host_dir,
        port=free_port(),
        commands=host_commands(bindir, host_dir),
        keep_logs_in=keep_logs_in,
    )
    try:
        server.init()
        server.start()
    except BaseException:
        server.close()
        raise
    return server


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A plain PostgreSQL server shared by the session. A test that stops it must start it
    again (`postgres_db` does so for the next test); crash tests use `make_postgres`."""
    server = start_host_postgres("postgres", tmp_path_factory.mktemp("postgres-logs"))
    yield server
    server.close()


@pytest.fixture
def postgres_db(postgres: PostgresServer) -> str:
    """URL of a fresh, empty database on the shared `postgres` server."""
    postgres.ensure_running()
    return postgres.fresh_db()


@pytest.fixture
def make_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], PostgresServer]]:
    """Factory of private PostgreSQL servers, removed when the test ends."""
    yield from private_servers(tmp_path_factory, "postgres", start_host_postgres)
