"""The schema side of ``PostgresStore``: numbered migrations under an advisory lock, and the
flavor (plain PostgreSQL, TimescaleDB Apache or TSL) chosen once and recorded."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Any, cast

import psycopg

from ingest.errors import StoreError, StoreUnavailable
from ingest.migrations import Flavor, migrations_for
from ingest.stores.postgres_sql import MIGRATE_LOCK

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresSchema:
    """Migrations and flavor of ``PostgresStore``, which supplies the URL, the connection
    settings and the pooled connections."""

    url: str
    _kwargs: dict[str, Any]
    _timescaledb: bool | None
    _flavor: Flavor | None

    def _connection(self, timeout: float | None = None) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def flavor(self) -> Flavor:
        """What ``migrate`` made of this database (read once, then cached)."""
        if self._flavor is None:
            with self._connection() as conn:
                row = None
                if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() != (None,):
                    row = conn.execute(
                        "SELECT flavor FROM schema_migrations ORDER BY version DESC LIMIT 1").fetchone()
            if row is None:
                raise StoreError("postgresql: schema not migrated (run `smartward db migrate`)")
            self._flavor = cast(Flavor, row[0])
        return self._flavor

    # --- migrations --------------------------------------------------------------------------

    def migrate(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, **self._kwargs) as conn:
                conn.execute("SET statement_timeout = 0")
                # Several workers may start at once: one migrates, the others wait and find
                # nothing left to do.
                conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
                try:
                    self._flavor = self._migrate(conn)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"postgresql: migrate: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"postgresql: migrate: {exc}") from exc

    def _migrate(self, conn: Connection) -> Flavor:
        conn.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                flavor     text NOT NULL,
                source     text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )""")
        rows = conn.execute("SELECT version, flavor FROM schema_migrations ORDER BY version").fetchall()
        flavor: Flavor = cast(Flavor, rows[-1][1]) if rows else self._detect_flavor(conn)
        applied = {version for version, _ in rows}
        for m in migrations_for(flavor):
            if m.version in applied:
                continue
            source = f"{m.version:04d}_{m.name}.{m.flavor}.sql"
            with conn.transaction():
                conn.execute(m.sql.encode())
                conn.execute("INSERT INTO schema_migrations (version, name, flavor, source) "
                             "VALUES (%s, %s, %s, %s)", (m.version, m.name, flavor, source))
            logger.info("applied migration %s", source)
        return flavor

    def _detect_flavor(self, conn: Connection) -> Flavor:
        if self._timescaledb is False:
            return "postgresql"
        installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        if installed is None:
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
            if available is None:
                if self._timescaledb:
                    raise StoreError("postgresql: TimescaleDB required but the server does not have it")
                logger.info("TimescaleDB not available: plain PostgreSQL tables")
                return "postgresql"
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            except psycopg.Error as exc:
                # Typically: not in shared_preload_libraries, or no privilege to create it.
                if self._timescaledb:
                    raise
                logger.warning("TimescaleDB available but CREATE EXTENSION failed (%s): plain PostgreSQL "
                               "tables", str(exc).strip())
                return "postgresql"
        row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
        license_ = row[0] if row else None
        logger.info("TimescaleDB present, license %r", license_)
        # 'apache': hypertables, time_bucket, drop_chunks. 'timescale': also continuous aggregates.
        return "timescaledb_tsl" if license_ == "timescale" else "timescaledb"
