"""The broker's log, followed by the ops center: refusals and ACL denials become security
events in the store and on the live stream (docs/reliability.md S1/S2).

``smartward ops serve`` starts one :class:`BrokerLogWatcher` when ``SMARTWARD_BROKER_LOG``
names the Mosquitto log file. A restarted ops center must neither miss what the broker logged
while it was away nor store it twice: it re-reads the current log file from its start and
skips what the store already holds — every broker event up to the newest stored one's time,
and, within that second (the log's resolution), as many events as are stored for it. Events
in a file rotated away while the ops center was down are not recovered (the rotated file is
the record then).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from contract.registry import Registry
from ops_center.adapters.records import Page, SecurityEventRecord
from ops_center.feed import Feed
from ops_center.security.broker_log import BrokerLogTail

logger = logging.getLogger(__name__)

_RESUME_PAGE = 200


class SecurityEventStore(Protocol):
    def insert_security_event(self, event: SecurityEventRecord) -> int: ...

    def security_events(self, sites: None, limit: int, offset: int) -> Page[SecurityEventRecord]: ...


def resume_point(store: SecurityEventStore) -> tuple[datetime | None, int]:
    """(time of the newest stored broker event, how many broker events share that time)."""
    newest: datetime | None = None
    same = 0
    offset = 0
    while True:
        page = store.security_events(None, _RESUME_PAGE, offset)
        for e in page.items:  # newest first (by id, which follows the log's order)
            if e.source != "broker":
                continue
            if newest is None:
                newest = e.at
            if e.at == newest:
                same += 1
            elif e.at < newest:
                return newest, same
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return newest, same


class BrokerLogWatcher:
    """A thread: log lines → :class:`SecurityEventRecord` → store, then the feed."""

    def __init__(self, path: Path, registry: Registry, store: SecurityEventStore, feed: Feed, *,
                 poll_s: float = 0.5, on_error: Callable[[Exception], None] | None = None) -> None:
        self.path = path
        self.registry = registry
        self.store = store
        self.feed = feed
        self.poll_s = poll_s
        self.stored = 0
        self.errors = 0
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="broker-log", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff_s = 0.5
        while not self._stop.is_set():
            try:
                self._follow()
                return
            except Exception as exc:  # the loop's top: log, count, retry (STYLE rule 8)
                self.errors += 1
                logger.exception("broker log watcher failed; retrying in %.1f s", backoff_s)
                if self._on_error is not None:
                    self._on_error(exc)
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 30.0)

    def _follow(self) -> None:
        newest, same = resume_point(self.store)
        tail = BrokerLogTail(self.path, self.registry, from_start=True, poll_s=self.poll_s)
        for event in tail.events(self._stop):
            if newest is not None:
                if event.at < newest:
                    continue
                if event.at == newest and same > 0:
                    same -= 1
                    continue
                newest = None  # past the resume point: everything from here on is new
            event_id = self.store.insert_security_event(event)
            self.stored += 1
            self.feed.publish("security", event.site, {
                "id": event_id, "at": event.at.isoformat(), "source": event.source,
                "kind": event.kind, "gateway": event.gateway, "client": event.client,
                "ip": event.ip, "detail": event.detail,
            })
            logger.warning("broker security event: %s %s %s", event.kind, event.client, event.detail)
