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
from collections.abc import Callable, Sequence

from contract.errors import RegistryError
from contract.registry import load_registry

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///./smartward.db"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def migrate(url: str, registry_path: str | None,
            progress: Callable[[str], None] = lambda _line: None) -> list[str]:
    """Run every migration against ``url``; returns the tables put under row-level security.
    ``progress`` is told each step (the CLI prints it on stderr)."""
    postgres = url.startswith(("postgresql://", "postgres://"))
    steps = 3 if postgres else 2
    from ingest.housekeeping import sync_registry
    from ingest.stores import open_store
    from ops_center.adapters.factory import open_repository

    registry = load_registry(registry_path)
    progress(f"[1/{steps}] kho số đo và sổ đăng ký / readings store and registry")
    store = open_store(url)
    try:
        store.migrate()
        sync_registry(store, registry)
    finally:
        store.close()
    progress(f"[2/{steps}] trung tâm điều hành / operations center")
    repo = open_repository(url)
    try:
        repo.migrate()
    finally:
        repo.close()
    if not postgres:
        return []
    progress(f"[3/{steps}] bảo mật theo hàng / row-level security")
    import psycopg

    from ops_center.security.rls import apply_rls

    with psycopg.connect(url) as conn:
        tables = apply_rls(conn)
        conn.commit()
    return tables


def grant_readonly_main(argv: Sequence[str]) -> int:
    """``smartward db grant-readonly (--site S | --all-sites) [--url URL]``: prints the role
    and password (ops_center/security/rls.py)."""
    p = argparse.ArgumentParser(
        prog="smartward db grant-readonly",
        description="Vai trò chỉ đọc cho một địa bàn hoặc toàn thành phố / "
        "a read-only role for one site or for every site",
    )
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--site", help="một phường/cụm / one ward or cluster")
    scope.add_argument(
        "--all-sites",
        action="store_true",
        help="mọi địa bàn, kể cả địa bàn thêm sau (smartward_ro_city) / "
        "every site, including sites added later (smartward_ro_city)",
    )
    p.add_argument("--url", help="mặc định / default: SMARTWARD_DB_URL")
    args = p.parse_args(list(argv))
    # psycopg (ingest/ops extras) only now: --help works without it.
    import psycopg

    from ops_center.security.rls import RlsError, grant_all_sites, grant_readonly
    from ops_center.settings import OpsSettings

    url = args.url or OpsSettings(environment="local").db_url
    if not url.startswith(("postgresql://", "postgres://")):
        print("Cần PostgreSQL / needs a postgresql:// database (SQLite has no roles)", file=sys.stderr)
        return 1
    try:
        role, password = grant_all_sites(url) if args.all_sites else grant_readonly(url, args.site)
    except (ValueError, RlsError, psycopg.Error) as exc:
        print(f"Không tạo được vai trò / cannot create the role: {exc}", file=sys.stderr)
        return 1
    print(f"role={role}\npassword={password}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["grant-readonly"]:
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
        tables = migrate(url, os.environ.get("SMARTWARD_REGISTRY"), progress=_stderr)
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
