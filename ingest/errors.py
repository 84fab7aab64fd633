"""One exception root for the ingest."""

from __future__ import annotations


class IngestError(Exception):
    """Root of every ingest error."""


class StoreUnavailable(IngestError):
    """Transient: the store cannot be reached or timed out. Retry with backoff."""


class StoreError(IngestError):
    """Permanent: the store refused the operation (schema, permissions)."""
