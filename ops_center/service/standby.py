"""Leader or standby: the ops service runs in the process that holds the evaluator lock.

With ``SMARTWARD_OPS_HA`` (docs/scale-out.md) several ``ops serve`` processes share one
PostgreSQL store. Each serves the API; only the leader runs the :class:`OpsService` (MQTT
telemetry → rules → alerts → incidents → store). :class:`EvaluatorGate` owns that decision:

- standby: every ``retry_s`` it tries the lock (:mod:`ops_center.adapters.leadership`); it
  answers readiness as ready (its API serves) and leaves people's actions to the store;
- taking over: it starts the service, which restores the rule state from the snapshot the
  store keeps (``ops_service_state``, written with every step: ``service/state.py``) and
  reconnects to the broker with the shared client id, so the broker's session redelivers
  whatever the old leader had taken but not acknowledged (docs/reliability.md H3);
- leader: it checks every ``retry_s`` that its lock session is alive. A session lost while the
  database answers and another process holds the lock means it is no longer the leader: the
  service is aborted (nothing saved, nothing acknowledged: the new leader replays it) and
  ``fatal`` is set, so ``ops serve`` exits and its supervisor restarts it as a standby. A
  session lost with the database unreachable is retried (nothing can be written meanwhile) for
  ``step_down_after_s``, then the same step down: by then the server may have dropped the
  session and another process may lead (docs/scale-out.md: the server's keepalives).

Without a leadership (SQLite, or HA off) the service simply starts: the single instance is
always the leader, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final, Literal, Protocol

from ops_center.adapters.records import IncidentRecord, TimelineEvent
from ops_center.domain.lifecycle import HumanActionName as ActionName
from ops_center.service.actions import HumanAction
from ops_center.service.service import OpsService

logger = logging.getLogger(__name__)

Role = Literal["leader", "standby", "stopped"]
# Timeline actions (what the store keeps) → the person's action the incident manager applies.
_ADOPTED: Final[dict[str, ActionName]] = {"acknowledged": "acknowledge", "resolved": "resolve",
                                           "annotated": "note"}


class Leadership(Protocol):
    reachable: bool

    @property
    def held(self) -> bool: ...

    def try_acquire(self) -> bool: ...

    def check(self) -> bool: ...

    def release(self) -> None: ...


class LeadershipLost(RuntimeError):
    """Another ops process holds the evaluator lock now: this one stops evaluating."""


class EvaluatorGate:
    def __init__(self, service: OpsService, leadership: Leadership | None, *, retry_s: float = 1.0,
                 step_down_after_s: float = 20.0) -> None:
        self.service = service
        self.leadership = leadership
        self.retry_s = retry_s
        self.step_down_after_s = step_down_after_s
        self.role: Role = "stopped"
        self.fatal: BaseException | None = None
        self.took_over_at: float | None = None  # time.time() when this process became the leader
        self._stop = threading.Event()
        self._stopping = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.leadership is None:
            self._lead()
            return
        self.role = "standby"
        self._thread = threading.Thread(target=self._run, name="ops-leadership", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop evaluating (final snapshot, acknowledgements) and release the lock; idempotent,
        from any thread (``ops serve`` calls it at the signal and again at exit)."""
        with self._stopping:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=10)
            if self.role == "leader":
                self.service.stop()
            self.role = "stopped"
            if self.leadership is not None:
                self.leadership.release()

    # --- what ops serve shows ------------------------------------------------------------------

    @property
    def leader(self) -> bool:
        return self.role == "leader"

    @property
    def broker_ok(self) -> bool:
        """Readiness' broker: a standby has no broker link to be ready with."""
        return self.service.connected if self.leader else self.role == "standby"

    @property
    def ready(self) -> bool:
        """Readiness' rules: a standby serves the API and is ready to take over."""
        if self.fatal is not None:
            return False
        return self.service.ready if self.leader else self.role == "standby"

    def on_action(self, act: HumanAction, record: IncidentRecord) -> None:
        """The API's action hook. Alone (no leadership): the service applies it. In HA every
        process's actions reach the leader once, from the store (:meth:`adopt`)."""
        if self.leadership is None and self.leader:
            self.service.on_action(act, record)

    def adopt(self, record: IncidentRecord, entry: TimelineEvent) -> None:
        """A timeline entry committed by any process (the store's change feed, HA): a
        person's acknowledge, resolve or note reaches the leader's incident manager. Entries
        the rules or the system wrote are the leader's own. A standby ignores them; the
        leader it becomes reads the store at its start (``_reconcile``)."""
        name = _ADOPTED.get(entry.action)
        if not self.leader or name is None or entry.actor == "system" or entry.actor.startswith("rule:"):
            return
        self.service.on_action(HumanAction(entry.incident_id, name, entry.actor, entry.at, entry.detail),
                               record)

    def failure(self) -> BaseException | None:
        """Why this process must stop (the service's error, or the lock lost to another)."""
        return self.fatal or self.service.fatal

    # --- the leadership thread -----------------------------------------------------------------------

    def _run(self) -> None:
        assert self.leadership is not None
        lease = self.leadership
        lost_at: float | None = None
        while not self._stop.is_set():
            if not self.leader:
                if lease.try_acquire() and not self._stop.is_set():
                    self._lead()
            elif lease.check() or lease.try_acquire():
                lost_at = None
            else:
                lost_at = lost_at if lost_at is not None else time.monotonic()
                if lease.reachable:  # the database answers and someone else holds the lock
                    self._step_down("another ops process holds the evaluator lock")
                    return
                if time.monotonic() - lost_at >= self.step_down_after_s:
                    # Cut off longer than this: another process may lead by now (the server
                    # drops our session after its keepalives), and two evaluators would fight
                    # over the broker session. Nothing could be written here meanwhile anyway.
                    self._step_down(f"the evaluator lock unconfirmed for {self.step_down_after_s:.0f} s")
                    return
                logger.warning("evaluator lock: the database is unreachable; still evaluating "
                               "(nothing can be written until it answers)")
            self._stop.wait(self.retry_s)

    def _lead(self) -> None:
        self.took_over_at = time.time()
        logger.info("this ops process is the evaluator (leader)")
        self.role = "leader"
        self.service.start()

    def _step_down(self, why: str) -> None:
        self.fatal = LeadershipLost(why)
        logger.error("evaluator lock lost (%s): stopping the rule service", why)
        self.service.fatal = self.fatal
        self.service.abort()
        self.role = "stopped"
