"""``smartward db migrate | grant-readonly``: the schema of every component, in one place.

``migrate`` creates or upgrades, idempotently: the ingest's tables (readings, rollups,
batches, dead letters, registry), the registry rows, the ops center's tables (alerts,
incidents, timeline, users, audit...), then row-level security on PostgreSQL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import psycopg

from contract.errors import RegistryError
from contract.registry import load_registry

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///./smartward.db"


def migrate(url: str, registry_path: str | None) -> list[str]:
    """Run every migration against ``url``; returns the tables put under row-level security."""
    from ingest.housekeeping import sync_registry
    from ingest.stores import open_store
    from ops_center.adapters.repository import open_repository

    registry = load_registry(registry_path)
    store = open_store(url)
    try:
        store.migrate()
        sync_registry(store, registry)
    finally:
        store.close()
    repo = open_repository(url)
    try:
        repo.migrate()
    finally:
        repo.close()
    if not url.startswith(("postgresql://", "postgres://")):
        return []
    from ops_center.security.rls import apply_rls

    with psycopg.connect(url) as conn:
        tables = apply_rls(conn)
        conn.commit()
    return tables


def main(argv: list[str]) -> int:
    if argv[:1] == ["grant-readonly"]:
        from ops_center.security.rls import grant_readonly_main

        return grant_readonly_main(argv[1:])
    parser = argparse.ArgumentParser(prog="smartward db",
                                     description="Cơ sở dữ liệu / database schema and roles")
    sub = parser.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="tạo/nâng cấp lược đồ / create or upgrade the schema")
    mig.add_argument("--url", help="mặc định / default: SMARTWARD_DB_URL")
    sub.add_parser("grant-readonly", help="vai trò chỉ đọc cho một địa bàn hoặc toàn thành phố / "
                                          "read-only role for a site or every site "
                                          "(--site S | --all-sites [--url URL])")
    args = parser.parse_args(argv)
    url = args.url or os.environ.get("SMARTWARD_DB_URL", DEFAULT_DB_URL)
    try:
        tables = migrate(url, os.environ.get("SMARTWARD_REGISTRY"))
    except RegistryError as exc:
        print(f"Sổ đăng ký sai / invalid registry: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the command's top: report any failure in one clear line
        logger.debug("migrate failed", exc_info=True)
        print(f"Không nâng cấp được lược đồ / migration failed: {exc}", file=sys.stderr)
        return 1
    print("Lược đồ đã cập nhật / schema up to date" +
          (f"; RLS: {', '.join(tables)}" if tables else ""))
    return 0
