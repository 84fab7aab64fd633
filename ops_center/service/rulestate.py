"""The ops service's rule state: saved with the step it covers (the engine, the incident
manager, the seqs seen, the gateways' clocks), restored at start, and the maintenance windows
re-read from the store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from contract.registry import Registry
from ops_center.adapters.repository import (
    OpsRepository,
    RepositoryError,
    RepositoryUnavailable,
    ServiceSnapshot,
)
from ops_center.domain.engine import RuleEngine
from ops_center.domain.incidents import IncidentManager
from ops_center.domain.maintenance import MaintenanceCalendar
from ops_center.service.model import GatewayClock, ServiceCounters
from ops_center.service.mqtt import Inbound, OpsMqttLink
from ops_center.service.persist import ChangeWriter
from ops_center.service.seqs import SeqTracker
from ops_center.service.settings import OpsServiceSettings
from ops_center.service.state import pack, unpack

logger = logging.getLogger(__name__)

STATE_VERSION = 1


class RuleStateKeeping:
    """A part of ``OpsService`` (ops_center/service/service.py)."""

    name: str
    settings: OpsServiceSettings
    registry: Registry
    repo: OpsRepository
    engine: RuleEngine
    manager: IncidentManager
    maintenance: MaintenanceCalendar
    seqs: SeqTracker
    writer: ChangeWriter
    link: OpsMqttLink
    counters: ServiceCounters
    _clock: Callable[[], datetime]
    _gw: dict[str, GatewayClock]
    _status_state: dict[str, str]
    _pending: list[Inbound]
    _stop_requested: threading.Event
    _last_snapshot: datetime | None
    _restored: bool
    _open: set[str]

    # Defined by another part (annotations only: the MRO finds the real ones).
    _flush: Callable[[], bool]

    def _state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "engine": self.engine.snapshot(),
            "manager": self.manager.snapshot(),
            "seqs": self.seqs.snapshot(),
            "gateways": {g: [c.last_sent, c.last_received] for g, c in self._gw.items()},
            "status": dict(self._status_state),
        }

    def _snapshot_and_ack(self) -> bool:
        """Save the rule state with the step being recorded (one transaction); the messages it
        covers are acknowledged once it is committed (possibly at a later flush, after the
        database came back). False when not committed yet."""
        covers, self._pending = self._pending, []

        def after(ok: bool) -> None:
            if not ok:
                self.counters.snapshot_failures += 1
                logger.warning("rule state not saved; %d messages stay unacknowledged", len(covers))
                self._pending[:0] = covers
                return
            self.counters.snapshots += 1
            self._last_snapshot = self._clock()
            self.counters.acked += self.link.ack(covers)

        self.writer.checkpoint(ServiceSnapshot(self.name, pack(self._state())), after)
        return self._flush()

    def _restore(self) -> bool:
        delay = self.settings.ops_store_retry_initial_ms / 1000
        while True:
            try:
                blob = self.repo.incidents.load_service_state(self.name)
                break
            except RepositoryUnavailable as exc:
                logger.warning("rule state not readable yet (%s); retrying in %.1f s", exc, delay)
                if self._stop_requested.wait(delay):
                    return False
                delay = min(delay * 2, self.settings.ops_store_retry_max_ms / 1000)
        self._load_maintenance()
        if blob is not None:
            try:
                data = unpack(blob)
                if data.get("v") != STATE_VERSION:
                    raise ValueError(f"unsupported service state version {data.get('v')!r}")
                self.engine.restore(data["engine"])
                self.manager.restore(data["manager"])
                self.seqs.restore(data["seqs"])
                self._gw = {g: GatewayClock(float(a), float(b)) for g, (a, b) in data["gateways"].items()}
                self._status_state = dict(data.get("status", {}))
                logger.info("rule state restored: %d active alerts, %d incidents",
                            len(self.engine.book.active), len(self.manager.incidents()))
            except (ValueError, KeyError, TypeError) as exc:
                # Starting empty re-raises what is active; refusing to start would blind the
                # city. Loud, and the old row is overwritten at the first snapshot.
                logger.error("saved rule state unusable (%s): starting with empty rule state", exc)
                self.engine = RuleEngine(self.engine.rules, self.registry, self.maintenance)
                self.manager = IncidentManager(self.registry, self.manager.patterns, self.maintenance)
                self.seqs = SeqTracker(window=self.settings.ops_seq_window)
                self._gw = {}
        self._open = {i.id for i in self.manager.incidents() if i.state != "resolved"}
        self._restored = True
        return True

    def _load_maintenance(self) -> None:
        try:
            rows = self.repo.maintenance.list_maintenance(None, None)
        except RepositoryError as exc:
            logger.debug("maintenance windows not refreshed: %s", exc)
            return
        current = {w.id for w in self.maintenance.windows()}
        fresh = {r.id for r in rows}
        for wid in current - fresh:
            self.maintenance.remove(wid)
        for r in rows:
            self.maintenance.add(r)  # a stored window is the domain's window, with its site
