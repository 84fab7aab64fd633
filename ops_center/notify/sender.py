"""The sender loop of the ops service: delivers the outbox, creates escalations when due.

One thread. Each cycle:

1. **Escalate**: for every open (unacknowledged) incident somebody was told of, the policy's
   steps due by now (``after_min`` counted from the incident's opening) become outbox rows
   (``escalated``; the key makes a second creation a no-op). An acknowledged or resolved
   incident is no candidate: acknowledgement stops escalation.
2. **Deliver** what is due, grouped per (contact, channel), within the contact's rate limit:
   when more are waiting than the window allows, the last free message is one digest of all
   of them (``allowance``). Each attempt is recorded: sent (and a ``notified`` entry on the
   incident's timeline, in the same transaction), or retried later with a doubling backoff
   capped at 60 s, or — permanent error or last attempt — ``failed``.

Everything lives in the store, so a restart (or ``kill -9``) resumes where the rows say.
A message whose sending succeeded but whose row was not yet marked sent when the process died
is sent again on restart: delivery is at-least-once at that instant, which the providers'
idempotency keys (eSMS ``RequestId``, Zalo ``tracking_id``, the Message-ID, the webhook's
``X-Smartward-Delivery``) let a receiver fold; every other duplicate is prevented by the key.

The loop waits on an event (set after a step commits new rows) with a deadline: the next
retry, the next escalation, or ``poll_s``. Never a bare sleep.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contract.registry import Registry
from ops_center.adapters.notifications import NotificationStore
from ops_center.adapters.ports import IncidentRepository
from ops_center.adapters.records import NotificationRecord
from ops_center.adapters.repository import RepositoryError
from ops_center.domain.notify import Contact, NotifyPolicy, allowance, backoff_s
from ops_center.notify import acklink
from ops_center.notify.channels import Channel, ChannelError, OutMessage
from ops_center.notify.planner import facts, rows_for
from ops_center.notify.render import ack_line, render_digest

logger = logging.getLogger(__name__)

_BATCH = 500  # due rows read per cycle


@dataclass(slots=True)
class SenderStats:
    sent: int = 0  # messages (a digest counts once)
    notifications_sent: int = 0  # rows (a digest carries several)
    digests: int = 0
    retries: int = 0
    failed: int = 0
    escalations: int = 0
    cycles: int = 0
    loop_errors: int = 0


@dataclass(frozen=True, slots=True)
class SenderConfig:
    public_url: str
    ack_secret: str | None
    ack_ttl_s: int = 12 * 3600
    max_attempts: int = 60
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    poll_s: float = 5.0
    claim_s: float = 60.0  # how long one attempt holds its rows (≥ the channel's timeout)


class NotificationSender:
    def __init__(
        self,
        store: NotificationStore,
        incidents: IncidentRepository,
        policy: NotifyPolicy,
        registry: Registry,
        channels: Mapping[str, Channel],
        config: SenderConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.policy = policy
        self.registry = registry
        self.channels = dict(channels)
        self.config = config
        self.stats = SenderStats()
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_escalation: datetime | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> NotificationSender:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="notify-sender", daemon=True)
        self._thread.start()
        logger.info(
            "notification sender started (%d policies, channels: %s)",
            len(self.policy.policies),
            ", ".join(sorted(self.channels)) or "none",
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    def use_ack_secret(self, secret: str) -> None:
        """Sign acknowledge links with the API's key (a composition root whose API has its own)."""
        self.config = dataclasses.replace(self.config, ack_secret=secret)

    def wake(self) -> None:
        """New rows were committed: look now (any thread)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.cycle()
            except Exception:  # the loop's top: a bug or a store error must not end delivery
                self.stats.loop_errors += 1
                logger.exception("notification sender cycle failed")
            self._wake.wait(self._wait_s())
            self._wake.clear()

    def _wait_s(self) -> float:
        now = self._clock()
        deadline = now + timedelta(seconds=self.config.poll_s)
        try:
            nxt = self.store.next_due()
        except RepositoryError:
            nxt = None
        for t in (nxt, self._next_escalation):
            if t is not None and t < deadline:
                deadline = t
        return max(0.02, (deadline - now).total_seconds())

    # --- one cycle ------------------------------------------------------------------------------

    def cycle(self) -> None:
        self.stats.cycles += 1
        if self.policy.active:
            self.escalate(self._clock())
        self.deliver(self._clock())

    def escalate(self, now: datetime) -> int:
        created = 0
        nxt: datetime | None = None
        for cand in self.store.escalation_candidates():
            f = dataclasses.replace(facts(cand.incident), opened_at=cand.since)
            intents = self.policy.due_escalations(f, now, after_step=cand.step)
            if intents:
                detail = self.incidents.get_incident(cand.incident.id)
                alerts = detail.alerts if detail is not None else []
                rows = rows_for(intents, cand.incident, alerts, self.registry, self.config.public_url, now)
                new = self.store.add(rows)
                created += new
                self.stats.escalations += new
                if new:
                    logger.info(
                        "incident %s unacknowledged: escalated to %s",
                        cand.incident.id,
                        ", ".join(sorted({i.contact for i in intents})),
                    )
            step = max([cand.step, *(i.step for i in intents)])
            t = self.policy.next_escalation(f, after_step=step)
            if t is not None and (nxt is None or t < nxt):
                nxt = t
        self._next_escalation = nxt
        return created

    def deliver(self, now: datetime) -> int:
        due = self.store.due(now, _BATCH)
        groups: dict[tuple[str, str], list[NotificationRecord]] = {}
        for row in due:
            groups.setdefault((row.contact, row.channel), []).append(row)
        sent = 0
        for (contact_id, channel_name), rows in groups.items():
            sent += self._deliver_group(contact_id, channel_name, rows, now)
        return sent

    def _deliver_group(
        self, contact_id: str, channel_name: str, rows: list[NotificationRecord], now: datetime
    ) -> int:
        contact = self.policy.contacts.get(contact_id)
        channel = self.channels.get(channel_name)
        if contact is None or channel is None:
            why = (
                "contact no longer in the policy"
                if contact is None
                else f"channel {channel_name} not configured"
            )
            for row in rows:
                self._failed(row, now, why, final=row.attempts + 1 >= self.config.max_attempts)
            return 0
        limit = self.policy.limit_of(contact_id)
        used = self.store.deliveries_since(contact_id, channel_name, now - limit.window)
        singles, digest = allowance(limit, used, len(rows))
        if not singles and not digest:
            # The window is full: look again when it may have room (never a busy loop).
            self.store.postpone(rows, now + min(limit.window, timedelta(seconds=60)))
            return 0
        # Held for this attempt (a second sender skips them; released by the outcome, or by
        # the lease's end if this process dies).
        lease = now + timedelta(seconds=self.config.claim_s)
        rows = self.store.claim(rows if digest else rows[:singles], now, lease)
        singles, digest = allowance(limit, used, len(rows))
        sent = 0
        for row in rows[:singles]:
            msg = OutMessage(
                row.id, row.subject, self._with_ack(row, now), row.incident_id, row.site, row.reason, now
            )
            if self._send(channel, contact, msg, [row], now):
                sent += 1
        if digest:
            rest = rows[singles:]
            d = render_digest(rest, self.config.public_url, now)
            msg = OutMessage(
                f"digest-{rest[0].id}", d.subject, d.body, None, rest[0].site, "digest", now, count=len(rest)
            )
            if self._send(channel, contact, msg, rest, now):
                sent += 1
                self.stats.digests += 1
        return sent

    def _with_ack(self, row: NotificationRecord, now: datetime) -> str:
        if self.config.ack_secret is None or row.reason == "resolved":
            return row.body
        token = acklink.sign(self.config.ack_secret, row.id, now + timedelta(seconds=self.config.ack_ttl_s))
        return f"{row.body}\n{ack_line(acklink.ack_url(self.config.public_url, token))}"

    def _send(
        self,
        channel: Channel,
        contact: Contact,
        msg: OutMessage,
        rows: list[NotificationRecord],
        now: datetime,
    ) -> bool:
        try:
            channel.send(contact, msg)
        except ChannelError as exc:
            for row in rows:
                self._failed(
                    row,
                    now,
                    str(exc),
                    final=not exc.transient or row.attempts + 1 >= self.config.max_attempts,
                )
            return False
        self.store.mark_sent(rows, now, msg.id if msg.count > 1 else rows[0].id)
        self.stats.sent += 1
        self.stats.notifications_sent += len(rows)
        return True

    def _failed(self, row: NotificationRecord, now: datetime, error: str, *, final: bool) -> None:
        if final:
            self.stats.failed += 1
            logger.warning(
                "notification %s to %s on %s failed for good after %d attempts: %s",
                row.id,
                row.contact,
                row.channel,
                row.attempts + 1,
                error,
            )
            self.store.mark_failed(row, now, error, None)
            return
        self.stats.retries += 1
        delay = backoff_s(
            row.attempts + 1, initial_s=self.config.retry_initial_s, cap_s=self.config.retry_max_s
        )
        logger.debug(
            "notification %s to %s on %s: attempt %d failed (%s); retry in %.1f s",
            row.id,
            row.contact,
            row.channel,
            row.attempts + 1,
            error,
            delay,
        )
        self.store.mark_failed(row, now, error, now + timedelta(seconds=delay))
