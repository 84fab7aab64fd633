"""Temporary: the helpers moved to ``tests/support/api.py`` (docs/testing.md). This module only
re-exports them for test files written in parallel with the move; delete it once nothing imports
it (``grep -rn "test_api_support" tests``). It holds no tests."""

from __future__ import annotations

from tests.support.api import (
    FAST_PASSWORDS,
    PASSWORD,
    REG,
    SECRET,
    SITES,
    USERS,
    Env,
    Rows,
    Seed,
    Server,
    add_users,
    auth,
    build_app,
    login,
    migrate_ingest_pg,
    migrate_ingest_sqlite,
    pg_env,
    pg_rows,
    seed,
    settings,
    sqlite_env,
    sqlite_rows,
)

__all__ = [
    "FAST_PASSWORDS", "PASSWORD", "REG", "SECRET", "SITES", "USERS", "Env", "Rows", "Seed", "Server",
    "add_users", "auth", "build_app", "login", "migrate_ingest_pg", "migrate_ingest_sqlite", "pg_env",
    "pg_rows", "seed", "settings", "sqlite_env", "sqlite_rows"
]
