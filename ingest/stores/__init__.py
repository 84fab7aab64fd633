"""Store adapters, chosen by the URL's scheme (docs/contract.md, ``SMARTWARD_DB_URL``):

- ``sqlite:///path.db``: ``SqliteStore`` (the embedded default, ``sqlite:///./smartward.db``);
- ``postgresql://...`` (or ``postgres://``): ``PostgresStore``, with TimescaleDB when the
  server has it.

``MemoryStore`` (``ingest/stores/memory.py``) is the fake for unit tests. Adapters are
imported only when opened, so SQLite alone never loads the PostgreSQL driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.stores.postgres import PostgresStore
    from ingest.stores.sqlite import SqliteStore


def open_store(url: str, **options: Any) -> PostgresStore | SqliteStore:
    """The store for ``url``; ``options`` go to the adapter's constructor."""
    if url.startswith("sqlite:"):
        from ingest.stores.sqlite import SqliteStore, path_from_url

        return SqliteStore(path_from_url(url), **options)
    if url.startswith(("postgresql://", "postgres://")):
        from ingest.stores.postgres import PostgresStore

        return PostgresStore(url, **options)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use sqlite:///path or postgresql://...")
