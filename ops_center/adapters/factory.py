"""``open_repository``: the one place that picks an ops store adapter for a URL, and the
``open_*`` functions that put the stores beside it (commands, notifications, sessions, the
TT 10/2021 upload log) on the same database. It imports the implementations; the ports
(ops_center/adapters/ports.py, repository.py, commands.py, notifications.py, sessions.py)
never do.
Each adapter is imported when its URL asks for it: a SQLite store needs no psycopg, and a
command's ``--help`` needs neither."""

from __future__ import annotations

from ops_center.adapters.commands import CommandStore, MemoryCommandStore
from ops_center.adapters.notifications import NotificationStore
from ops_center.adapters.ports import Tt10Reader
from ops_center.adapters.repository import OpsRepository
from ops_center.adapters.sessions import MemorySessionStore, SessionStore
from ops_center.adapters.sql import SqlOpsRepository
from ops_center.adapters.sql_commands import SqlCommandStore
from ops_center.adapters.sql_notifications import SqlNotificationStore
from ops_center.adapters.sql_sessions import SqlSessionStore
from ops_center.adapters.sql_tt10 import SqlTt10Reader


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


def open_command_store(repo: OpsRepository) -> CommandStore:
    """The commands of ``repo``'s database; in memory for a repository that is not SQL."""
    if isinstance(repo, SqlOpsRepository):
        return SqlCommandStore(repo)
    return MemoryCommandStore()


def open_notification_store(repo: OpsRepository) -> NotificationStore | None:
    """The outbox of ``repo``'s database; None for a repository that is not SQL."""
    if isinstance(repo, SqlOpsRepository):
        return SqlNotificationStore(repo)
    return None


def open_session_store(repo: OpsRepository) -> SessionStore:
    """The sessions of ``repo``'s database; in memory for a repository that is not SQL."""
    if isinstance(repo, SqlOpsRepository):
        return SqlSessionStore(repo)
    return MemorySessionStore()


def open_tt10_reader(repo: OpsRepository) -> Tt10Reader | None:
    """The TT 10/2021 upload log of ``repo``'s database; None for a repository that is not
    SQL (it has no log)."""
    if isinstance(repo, SqlOpsRepository):
        return SqlTt10Reader(repo)
    return None
