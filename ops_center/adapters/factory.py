"""``open_repository``: the one place that picks an ops store adapter for a URL. It imports
the implementations; the ports (ops_center/adapters/ports.py, repository.py) never do.
Each adapter is imported when its URL asks for it: a SQLite store needs no psycopg, and a
command's ``--help`` needs neither."""

from __future__ import annotations

from ops_center.adapters.repository import OpsRepository


def open_repository(url: str, *, pool_min: int = 1, pool_max: int = 16) -> OpsRepository:
    """The adapter for ``url`` (``sqlite:///path`` or ``postgresql://...``), opened."""
    if url.startswith("sqlite:"):
        from ops_center.adapters.sqlite import SqliteOpsRepository

        return SqliteOpsRepository.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from ops_center.adapters.postgres import PostgresOpsRepository

        repo = PostgresOpsRepository(url, min_size=pool_min, max_size=pool_max)
        repo.open()
        return repo
    raise ValueError(f"unsupported SMARTWARD_DB_URL scheme: {url.split(':', 1)[0]!r}")
