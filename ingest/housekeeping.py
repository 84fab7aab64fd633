"""Background upkeep of a store: rollups kept current, retention applied, registry synced.

Runs beside the ingest worker (one per deployment: the first worker of ``ingest run``), on
its own store connection, so a slow rollup never holds up the write path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

from contract.registry import Registry
from ingest.errors import IngestError
from ingest.retention import RetentionPolicy, RetentionTarget, apply_retention
from ingest.rollup import RollupRunner, RollupSource

logger = logging.getLogger(__name__)


def sync_registry(store: object, registry: Registry) -> None:
    """Copy the registry into the store's ``sites``/``gateways``/``sensors`` tables when it has them."""
    sync: Callable[[Registry], None] | None = getattr(store, "sync_registry", None)
    if sync is not None:
        sync(registry)


def _retention_loop(store: RetentionTarget, policy: RetentionPolicy, interval_s: float,
                    stop: threading.Event) -> None:
    while not stop.wait(interval_s):
        try:
            result = apply_retention(store, policy, datetime.now(UTC))
            logger.info("retention applied: %s", result)
        except IngestError:
            logger.exception("retention failed; retrying in %.0f s", interval_s)


@contextmanager
def running(store: object, *, rollups: bool = True, retention: RetentionPolicy | None = None,
            retention_interval_s: float = 3600.0) -> Iterator[RollupRunner | None]:
    """Rollups (when the store has them) and periodic retention, stopped on exit."""
    with ExitStack() as stack:
        runner: RollupRunner | None = None
        if rollups and callable(getattr(store, "refresh_rollups", None)):
            source: RollupSource = store  # type: ignore[assignment]  # checked just above
            runner = stack.enter_context(RollupRunner(source))
        if retention is not None and callable(getattr(store, "apply_retention", None)):
            target: RetentionTarget = store  # type: ignore[assignment]  # checked just above
            stop = threading.Event()
            thread = threading.Thread(target=_retention_loop, name="retention", daemon=True,
                                      args=(target, retention, retention_interval_s, stop))
            thread.start()
            stack.callback(thread.join, 10.0)
            stack.callback(stop.set)
        yield runner
