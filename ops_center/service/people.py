"""People's incident actions reaching the ops service: the API's hook after a commit
(:meth:`PeopleActions.on_action`), applied by the worker like everything else. The incident
manager adopts the lifecycle the store holds (the store is the truth; ops_center/domain/
lifecycle.py), also for what people did while the service was away (``_reconcile``)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from ops_center.adapters.records import IncidentRecord
from ops_center.adapters.repository import OpsRepository, RepositoryError
from ops_center.domain.incidents import Incident, IncidentManager
from ops_center.domain.lifecycle import TIMELINE_ACTION, IncidentAction
from ops_center.service.actions import HumanAction
from ops_center.service.errors import ServiceStopped
from ops_center.service.model import Command, Item, ServiceCounters
from ops_center.service.persist import ChangeWriter
from ops_center.service.settings import OpsServiceSettings

logger = logging.getLogger(__name__)


class PeopleActions:
    """A part of ``OpsService`` (ops_center/service/service.py)."""

    settings: OpsServiceSettings
    repo: OpsRepository
    manager: IncidentManager
    writer: ChangeWriter
    counters: ServiceCounters
    _thread: threading.Thread
    _queue: queue.Queue[Item]
    _open: set[str]
    _deferred: dict[str, IncidentRecord]
    _overflow: dict[str, tuple[HumanAction, IncidentRecord]]
    _overflow_lock: threading.Lock

    # Defined by another part (annotations only: the MRO finds the real ones).
    _flush: Callable[[], bool]

    def on_action(self, act: HumanAction, record: IncidentRecord) -> None:
        """The API's ``ActionHook``: a person's committed action. The worker adopts what the
        store holds (the store is the truth; the manager never refuses it). Waits (at most
        ``ops_action_timeout_s``) so a following read agrees."""
        cmd = Command(lambda: self._apply_action(act, record))
        if not self._thread.is_alive():
            raise ServiceStopped("the ops service is not running; the action is applied at its next start")
        try:
            self._queue.put(cmd, timeout=self.settings.ops_action_timeout_s)
        except queue.Full:
            # Not lost: the worker takes it after its current work (one per incident, the last).
            with self._overflow_lock:
                self._overflow[act.incident_id] = (act, record)
            logger.warning("ops service busy: %s of %s applied to the rule state later", act.action,
                           act.incident_id)
            return
        if not cmd.done.wait(self.settings.ops_action_timeout_s):
            logger.warning("ops service slow: %s of %s queued, not applied yet", act.action, act.incident_id)

    def _apply_action(self, act: HumanAction, record: IncidentRecord) -> None:
        """Adopt the incident's lifecycle as stored once this service's own earlier writes have
        landed (they may have moved it on: an auto-resolve, a merge, a recurrence). With the
        store down, the committed record stands in until the next commit, then the stored row
        is adopted again (``_readopt``)."""
        stored: IncidentRecord = record
        if self.writer.pending and not self._flush():
            self._deferred[act.incident_id] = record
        else:
            stored = self._stored(act.incident_id) or record
        change = self.manager.adopt(act.incident_id, stored, action=TIMELINE_ACTION[act.action],
                                    by=act.by, at=act.at, note=act.note or "")
        if change is None:
            self.counters.actions_unknown += 1
            logger.info("incident %s: %s by %s: the rule state no longer tracks it", act.incident_id,
                        act.action, act.by)
            return
        self.counters.actions += 1
        self._track_open(change.incident)
        if act.action == "resolve" and change.incident.state == "resolved":
            # Whoever was told of it hears it is resolved (committed with the next step; the
            # key makes the API's own insert of the same notice a no-op).
            self.writer.resolved_by_person(change.incident)

    def _read_back(self, incident_id: str) -> IncidentRecord | None:
        """The incident as stored (None: no such row); RepositoryError when not readable."""
        detail = self.repo.incidents.get_incident(incident_id)
        return detail.incident if detail is not None else None

    def _stored(self, incident_id: str) -> IncidentRecord | None:
        try:
            return self._read_back(incident_id)
        except RepositoryError as exc:
            logger.info("incident %s not read back (%s): adopting the committed record", incident_id, exc)
            return None

    def _catch_up(self) -> None:
        """The worker, with its writes committed: actions that found the queue full, then the
        ones adopted while the store was down, adopted again as stored."""
        if self._overflow:
            with self._overflow_lock:
                late, self._overflow = list(self._overflow.values()), {}
            for act, record in late:
                self._apply_action(act, record)
        if self._deferred:
            self._readopt()

    def _readopt(self) -> None:
        for iid in list(self._deferred):
            try:
                stored = self._read_back(iid)
            except RepositoryError:
                return  # still not answering: after the next commit
            del self._deferred[iid]
            if stored is None:
                continue
            self.manager.adopt(iid, stored, action="annotated", by="system", at=stored.updated_at,
                               note="", quiet=True)
            view = self.manager.find(iid)
            if view is not None:
                self._track_open(view)

    def _track_open(self, inc: Incident) -> None:
        if inc.state != "resolved" and inc.merged_into is None:
            self._open.add(inc.id)
        else:
            self._open.discard(inc.id)


    def _reconcile(self) -> None:
        """Actions people took while the service was away (the API stores them even then): the
        live incidents of the rule state take the lifecycle the store holds."""
        try:
            stored = {i.id: i for i in self.repo.incidents.open_incidents()}
        except RepositoryError as exc:
            logger.warning("incident states not reconciled at start: %s", exc)
            return
        for inc in self.manager.incidents():
            if inc.state == "resolved":
                continue
            row = stored.get(inc.id) or self._stored(inc.id)
            if row is None or row.state == inc.state:
                continue
            action: IncidentAction = "resolved" if row.state == "resolved" else "acknowledged"
            at = (row.resolved_at if row.state == "resolved" else row.acknowledged_at) or row.updated_at
            self.manager.adopt(inc.id, row, action=action, by="api", at=at,
                               note="trong lúc dịch vụ dừng / while the service was away")
