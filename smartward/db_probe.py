"""Read-only commands never create a database.

Opening ``sqlite:///./smartward.db`` creates the file, and a store or repository built on a
URL that names no database would report an empty one as if it were real. A read-only
command (``ingest status``, ``users list``...) asks ``missing_database(url)`` first: when it
answers a message, the command prints it, exits non-zero and creates nothing.

It lives beside ``smartward db`` (db_cli.py) because its users are the components' command
lines (ingest, ops): the components do not import each other, ``contract/`` has no I/O, and a
probe that prints for a person belongs to the commands, not to a store adapter.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

# PostgreSQL's SQLSTATE invalid_catalog_name ("database ... does not exist").
_INVALID_CATALOG_NAME: Final = "3D000"
_SQLITE_PREFIX: Final = "sqlite:///"


def redact(url: str) -> str:
    """The URL without its password (``postgresql://user:***@host/db``)."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"


def _missing(url: str, detail_vi: str, detail_en: str) -> str:
    return (f"Không có cơ sở dữ liệu tại {redact(url)} ({detail_vi}); tạo bằng `smartward db migrate` "
            f"(SMARTWARD_DB_URL) / no database at {redact(url)} ({detail_en}); create it with "
            f"`smartward db migrate`")


def missing_database(url: str, *, timeout_s: float = 5.0) -> str | None:
    """None when ``url`` names an existing database that answers, else why not (Vietnamese
    first): no such database, or a server that does not answer.

    SQLite: the file must exist (it is never opened here). PostgreSQL: one connection with
    ``connect_timeout``, nothing else."""
    if url.startswith("sqlite:"):
        path = url[len(_SQLITE_PREFIX):] if url.startswith(_SQLITE_PREFIX) else ""
        if not path:
            return None  # a malformed URL: the store reports it
        if not Path(path).is_file():
            return _missing(url, f"không có tệp {path}", f"no file {path}")
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        return None
    try:
        import psycopg
    except ModuleNotFoundError:
        return ("Thiếu thư viện psycopg cho PostgreSQL: pip install 'smartward[ingest]' / "
                "psycopg is not installed: pip install 'smartward[ingest]'")
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout_s))):
            return None
    except psycopg.OperationalError as exc:
        # psycopg may leave sqlstate unset on a failed connection: the server's text then.
        if exc.sqlstate == _INVALID_CATALOG_NAME or re.search(r'database ".*" does not exist', str(exc)):
            return _missing(url, "máy chủ trả lời nhưng không có cơ sở dữ liệu này",
                            "the server answers but has no such database")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"Máy chủ cơ sở dữ liệu tại {redact(url)} không trả lời / the database server at "
                f"{redact(url)} does not answer: {reason}")
