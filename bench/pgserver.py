"""A private, throw-away PostgreSQL or TimescaleDB server for ``smartward bench ingest``.

``--timescale`` / ``--postgres`` start one the way the test fixtures do (tests/servers/): a
cluster initdb'd in a temporary directory, on a free loopback port, trust authentication,
removed afterwards. TimescaleDB comes from the host (a ``timescaledb.control`` next to a
PostgreSQL) or, on Debian 12, from the Debian 13 root that scripts/timescaledb-root.sh builds
(entered through scripts/in-timescaledb-root.sh; needs root).

Unlike the test fixtures the bench keeps ``fsync`` and ``full_page_writes`` ON: the ingest
acknowledges a message only after its transaction is durable, so that is what is measured.
The other settings are the ones docs/performance.md recommends for the store
(``STORE_SETTINGS``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import free_port
from smartward.pg_binaries import host_bindir, native_timescale_bindir

_REPO = Path(__file__).resolve().parents[1]
_IN_ROOT = _REPO / "scripts" / "in-timescaledb-root.sh"
_ROOT_BINDIR = "/usr/lib/postgresql/17/bin"
_ROOT_SERVER_DIR = "/srv/smartward"

# Settings we recommend for an ingest store (see docs/performance.md, "Ingest"). None of them
# weakens durability: synchronous_commit stays on, fsync stays on.
STORE_SETTINGS: Mapping[str, str] = {
    # Checkpoints every few GB of WAL, not every 1 GB (the default max_wal_size): each one
    # writes full-page images again for every page touched after it, which doubles the WAL
    # of an index-heavy insert load just after a checkpoint.
    "max_wal_size": "'8GB'",
    "min_wal_size": "'1GB'",
    "checkpoint_timeout": "'15min'",
    "checkpoint_completion_target": "0.9",
    # Fewer, larger WAL writes under concurrent commits.
    "wal_buffers": "'64MB'",
    "wal_compression": "'lz4'",
    "shared_buffers": "'1GB'",
}

_BASE: Mapping[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "50",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "lc_messages": "'C'",
}


class BenchServerError(RuntimeError):
    pass


@dataclass
class BenchServer:
    """One running cluster: ``url`` is the superuser's URL of database ``postgres``."""

    kind: str  # "timescaledb" or "postgresql"
    port: int
    host_dir: Path
    prefix: tuple[str, ...]
    bindir: str
    server_dir: str
    env: dict[str, str] = field(default_factory=dict)
    version: str = ""

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, program: str, *args: str, timeout_s: float = 120) -> None:
        argv = [*self.prefix, f"{self.bindir}/{program}", *args]
        proc = subprocess.run(argv, env=self.env, cwd=self.host_dir, capture_output=True, timeout=timeout_s,
                              check=False)
        if proc.returncode != 0:
            raise BenchServerError(f"{program} failed ({proc.returncode}): "
                                   f"{proc.stderr.decode(errors='replace')[-2000:]}")

    def start(self, settings: Mapping[str, str]) -> None:
        data = f"{self.server_dir}/data"
        self._run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale",
                  "--no-sync")
        conf = {**_BASE, "port": str(self.port), "unix_socket_directories": f"'{self.server_dir}'",
                **settings}
        if self.kind == "timescaledb":
            conf |= {"shared_preload_libraries": "'timescaledb'", "timescaledb.telemetry_level": "off"}
        text = "".join(f"{k} = {v}\n" for k, v in conf.items())
        (self.host_dir / "data" / "smartward.conf").write_text(text)
        with (self.host_dir / "data" / "postgresql.conf").open("a") as f:
            f.write("\ninclude 'smartward.conf'\n")
        self._run("pg_ctl", "-D", data, "-l", f"{self.server_dir}/server.log", "-w", "-t", "60", "start")

    def postmaster_pid(self) -> int:
        return int((self.host_dir / "data" / "postmaster.pid").read_text().split("\n", 1)[0])

    def create_db(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            row = conn.execute("SHOW server_version").fetchone()
            self.version = str(row[0]) if row else "?"
        url = self.url_for(name)
        if self.kind == "timescaledb":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                row = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
                self.version += f" + TimescaleDB {row[0] if row else '?'}"
        return url

    def close(self) -> None:
        with contextlib.suppress(BenchServerError, OSError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", f"{self.server_dir}/data", "-m", "immediate", "-w", "stop",
                      timeout_s=60)
        shutil.rmtree(self.host_dir, ignore_errors=True)


def start_bench_server(kind: str, settings: Mapping[str, str] | None = None,
                       extra: Sequence[str] = ()) -> BenchServer:
    """Start a private ``timescaledb`` or ``postgresql`` server. ``extra``: more
    ``name=value`` settings (e.g. from ``--pg-setting``)."""
    host_dir = Path(tempfile.mkdtemp(prefix=f"smartward-bench-{kind}-"))
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(host_dir)}
    bindir = native_timescale_bindir() if kind == "timescaledb" else host_bindir()
    if bindir is not None:
        prefix: tuple[str, ...] = ()
        if os.getuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(host_dir, account.pw_uid, account.pw_gid)
            prefix = ("setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups",
                      "--")
        server = BenchServer(kind, free_port(), host_dir, prefix, str(bindir), str(host_dir), env)
    elif kind == "timescaledb":
        root = Path(os.environ.get("SMARTWARD_CACHE", "/var/cache/smartward")) / "trixie-timescaledb"
        if not (root / ".smartward-complete").exists() or os.getuid() != 0:
            shutil.rmtree(host_dir, ignore_errors=True)
            raise BenchServerError(f"no timescaledb on this host, and the root {root} is missing or we are "
                                   "not root (scripts/install-test-deps.sh builds it)")
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "SMARTWARD_CACHE": str(root.parent)}
        server = BenchServer(kind, free_port(), host_dir, (str(_IN_ROOT), str(host_dir)), _ROOT_BINDIR,
                             _ROOT_SERVER_DIR, env)
    else:
        shutil.rmtree(host_dir, ignore_errors=True)
        raise BenchServerError("no PostgreSQL (initdb) under /usr/lib/postgresql")
    conf = dict(STORE_SETTINGS if settings is None else settings)
    for item in extra:
        name, _, value = item.partition("=")
        conf[name.strip()] = value.strip()
    try:
        server.start(conf)
    except BaseException:
        server.close()
        raise
    return server
