"""The live stream fed from the store's change feed (PostgreSQL ``LISTEN``; docs/scale-out.md).

With ``SMARTWARD_OPS_HA`` several ``ops serve`` share one store and only the leader evaluates,
yet a browser on any of them must see every alert, incident and gateway change once. The
store announces each committed change with ``NOTIFY smartward_feed`` (ops migration 0008:
triggers, in the writing transaction, payload kind + ids); every process listens
(:class:`ChangeFeedListener`), loads the rows through its repository and publishes them into
its own :class:`StoreFedFeed`. Local publishes of those kinds (the service's writer, the API's
incident actions) are dropped there, so each change reaches the stream exactly once per
process, from the store. Other kinds (KPIs, maintenance, commands, security) stay local.

Notifications are delivered after commit, in commit order (two writers committing at once may
commit their numbers out of order: a client resuming exactly between them could miss the
earlier one). One lost while the listening session is down (the database restarting) is not
replayed: a client resuming from before the gap is told to resync, as after a restart. All
the loading is in :func:`render`; the events carry the records, which the stream route renders
(ops_center/api/render.py) as for every other event.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

import psycopg

from ops_center.adapters.ports import GatewayRepository, IncidentRepository
from ops_center.adapters.records import AlertRecord, IncidentRecord, TimelineEvent
from ops_center.adapters.repository import RepositoryError
from ops_center.feed import Accept, EventKind, Feed, FeedEvent, _Replay

logger = logging.getLogger(__name__)

CHANNEL: Final = "smartward_feed"
STORE_KINDS: Final[frozenset[EventKind]] = frozenset({"alert", "incident", "gateway"})
_NOTIFY_ACTIONS: Final = frozenset({"opened", "reopened", "escalated"})
# As IncidentChange.notify with patterns.yaml's notify_min_severity (warning). The store keeps
# neither an incident's lateness nor which incident a merged one went into: a merged or late
# change is flagged as the stored row allows (an approximation of the in-process feed).
_NOTIFY_SEVERITIES: Final = frozenset({"warning", "critical", "emergency"})
_ALERT_REF = re.compile(r"\[alert ([^\]]+)\]$")
_LOCAL_BITS: Final = 20  # room for a million local events between two store changes
_LOCAL_MAX: Final = (1 << _LOCAL_BITS) - 1
_LIST_SCAN: Final = 500  # an alert without incident is looked up among its site's newest


class StoreFedFeed(Feed):
    """A :class:`Feed` whose alert, incident and gateway events come from the store only.

    Event ids are the same in every process: ``store-<seq>`` where a store change numbered
    ``n`` (the trigger's sequence) is ``n << 20`` and a local event (KPIs...) is numbered
    after the last change heard. A client resumes with its Last-Event-ID on any process that
    has heard every change after it; else it is told to resync, as after a restart."""

    def __init__(self, *, ring_size: int = 2048, queue_max: int = 256) -> None:
        super().__init__(ring_size=ring_size, queue_max=queue_max)
        self.boot = "store"
        self._numbers = threading.Lock()
        self._store_n = 0  # the newest change number heard
        self._local = 0  # local events since it
        self._floor: int | None = None  # every change numbered above this one was heard

    def publish(self, kind: EventKind, site: str | None, data: Mapping[str, object]) -> FeedEvent:
        if kind in STORE_KINDS:
            # Announced by the store's trigger and published by the listener instead.
            return FeedEvent(f"{self.boot}-0", 0, kind, site, data, self._clock())
        with self._numbers:
            self._local = min(self._local + 1, _LOCAL_MAX)
            seq = (self._store_n << _LOCAL_BITS) + self._local
        return self._publish(kind, site, data, seq)

    def publish_from_store(self, n: int, kind: EventKind, site: str | None,
                           data: Mapping[str, object]) -> FeedEvent:
        with self._numbers:
            if n > self._store_n:
                self._store_n, self._local = n, 0
        return self._publish(kind, site, data, n << _LOCAL_BITS)

    def heard_from(self, n: int) -> None:
        """The listener (re)started: every change numbered above ``n`` will be heard."""
        with self._numbers:
            self._floor = n if self._floor is None else max(self._floor, n)
            self._store_n = max(self._store_n, n)

    def _replay(self, last_event_id: str, accept: Accept) -> _Replay:
        boot, _, seq_text = last_event_id.rpartition("-")
        if boot != self.boot or not (seq_text.isascii() and seq_text.isdigit()):
            return _Replay(resync=True)
        seq = int(seq_text)
        with self._numbers:
            floor = self._floor
        ring = self._ring
        if floor is None or (seq >> _LOCAL_BITS) < floor or (
                len(ring) == self.ring_size and seq < ring[0].seq):
            return _Replay(resync=True)  # changes after it may not all be in this ring
        return _Replay([e for e in ring if e.seq > seq and accept(e.site)])


def render(kind: str, note: Mapping[str, Any], incidents: IncidentRepository,
           gateways: GatewayRepository) -> tuple[EventKind, str | None, dict[str, Any]] | None:
    """The stream event for one notification, from the rows it names (None: gone meanwhile)."""
    if kind == "incident":
        detail = incidents.get_incident(str(note["id"]))
        if detail is None:
            return None
        entry = next((e for e in detail.timeline if e.id == note.get("e")), None)
        return "incident", detail.incident.site, _incident_data(detail.incident, entry)
    if kind == "alert":
        alert = _load_alert(incidents, str(note["id"]), note.get("i"), note.get("s"))
        if alert is None:
            return None
        action = str(note.get("a") or "raised")
        return "alert", alert.site, {"action": action, "late": alert.late,
                                     "notify": not alert.late and action in ("raised", "escalated"),
                                     "alert": alert}
    if kind == "gateway":
        site = str(note.get("s") or "")
        status = next((g for g in gateways.list_gateway_status((site,)) if g.gateway == note["id"]), None)
        if status is None:
            return None
        return "gateway", status.site, {"gateway": status}
    return None


def _incident_data(inc: IncidentRecord, entry: TimelineEvent | None) -> dict[str, Any]:
    action = entry.action if entry is not None else "updated"
    alert_ref = _ALERT_REF.search(entry.detail or "") if entry is not None else None
    at = entry.at if entry is not None else inc.updated_at
    return {"action": action, "by": entry.actor if entry is not None else "system",
            "notify": action in _NOTIFY_ACTIONS and inc.severity in _NOTIFY_SEVERITIES,
            "merged_into": None,
            "entry_at": at.isoformat().replace("+00:00", "Z"),
            "alert_id": alert_ref.group(1) if alert_ref else None,
            "incident": inc}


def _load_alert(incidents: IncidentRepository, alert_id: str, incident_id: object,
                site: object) -> AlertRecord | None:
    if isinstance(incident_id, str):
        detail = incidents.get_incident(incident_id)
        if detail is not None:
            found = next((a for a in detail.alerts if a.id == alert_id), None)
            if found is not None:
                return found
    if isinstance(site, str):
        page = incidents.list_alerts((site,), None, _LIST_SCAN, 0)
        return next((a for a in page.items if a.id == alert_id), None)
    return None



class ChangeFeedListener:
    """A thread with its own session: ``LISTEN smartward_feed``, load, publish. Reconnects
    with back-off (a multi-host URL follows the primary after a failover)."""

    def __init__(self, url: str, incidents: IncidentRepository, gateways: GatewayRepository,
                 feed: StoreFedFeed, *, poll_s: float = 0.5) -> None:
        self.url = url
        self.incidents = incidents
        self.gateways = gateways
        self.feed = feed
        self.poll_s = poll_s
        # Told of every incident timeline entry committed (HA: the leader adopts people's
        # actions taken through any process; ops_center/service/standby.py).
        self.on_incident: Callable[[IncidentRecord, TimelineEvent], None] | None = None
        self.received = 0
        self.published = 0
        self.sessions = 0  # LISTEN sessions opened (a reconnect adds one)
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ops-change-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=3, keepalives=1,
                                     keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                                     application_name="smartward-ops-feed") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    row = conn.execute("SELECT last_value, is_called FROM smartward_feed_seq").fetchone()
                    if row is not None:
                        self.feed.heard_from(int(row[0]) if row[1] else int(row[0]) - 1)
                    self.sessions += 1
                    self.listening.set()
                    delay = 0.5
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=self.poll_s):
                            self._handle(n.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                logger.warning("change feed: not listening (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        self.listening.clear()

    def _handle(self, payload: str) -> None:
        self.received += 1
        try:
            note = json.loads(payload)
            kind = str(note["k"])
            if kind == "incident" and self.on_incident is not None:
                self._adopt(note)
            out = render(kind, note, self.incidents, self.gateways)
        except (ValueError, KeyError, TypeError, RepositoryError) as exc:
            logger.warning("change feed: %s not published: %s", payload[:200], exc)
            return
        if out is not None:
            self.feed.publish_from_store(int(note["n"]), *out)
            self.published += 1

    def _adopt(self, note: Mapping[str, Any]) -> None:
        assert self.on_incident is not None
        detail = self.incidents.get_incident(str(note["id"]))
        entry = next((e for e in detail.timeline if e.id == note.get("e")), None) if detail else None
        if detail is not None and entry is not None:
            try:
                self.on_incident(detail.incident, entry)
            except Exception:  # the stream goes on; the leader reads the store at its next start
                logger.exception("change feed: incident %s's %s not adopted", entry.incident_id, entry.action)
