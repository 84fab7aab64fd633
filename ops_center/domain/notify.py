"""Notification policy: who hears of an incident change, on which channel, and when.

Pure (no I/O, the clock is an argument). docs/contract.md "Additions → Notifications and
escalation" fixes the file format; the loader is ops_center/notify/loader.py.

- A policy matches an incident by site, kind (empty = every kind) and ``min_severity``, which
  includes every higher severity.
- Its first tier (``notify``) hears of an opening and of a rise in severity; each
  ``escalate`` step hears only once the incident has stayed unacknowledged ``after_min``
  minutes, counted from the incident's opening (not from the previous step).
- Quiet hours (Vietnam time, may wrap midnight) hold back everything below their own
  ``min_severity``.
- A contact hears only of its own sites (empty = every site) and only on the channels it
  has an address for (email; phone → sms and zalo; url → webhook).
- The per-contact rate limit (:func:`allowance`) lets at most ``max_messages`` messages per
  window through; when more are waiting, the last free message is one digest of all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from ops_center.domain.alerts import Severity, severity_rank

Channel = Literal["email", "sms", "zalo", "webhook"]
Reason = Literal["opened", "escalated", "severity", "resolved"]
CHANNELS: Final[tuple[Channel, ...]] = ("email", "sms", "zalo", "webhook")
REASONS: Final[tuple[Reason, ...]] = ("opened", "escalated", "severity", "resolved")
VIETNAM: Final = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass(frozen=True, slots=True)
class RateLimit:
    max_messages: int = 10
    window_min: int = 10

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_min)


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    name: str
    sites: tuple[str, ...] = ()  # empty: every site
    email: str | None = None
    phone: str | None = None
    url: str | None = None  # webhook
    rate_limit: RateLimit | None = None  # None: the file's default

    def reaches(self, channel: Channel) -> bool:
        if channel == "email":
            return self.email is not None
        if channel in ("sms", "zalo"):
            return self.phone is not None
        return self.url is not None

    def covers(self, site: str) -> bool:
        return not self.sites or site in self.sites


@dataclass(frozen=True, slots=True)
class EscalationStep:
    after_min: float
    notify: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time  # Vietnam time
    end: time
    min_severity: Severity

    def holds_back(self, at: datetime, severity: Severity) -> bool:
        """True when ``at`` is inside the quiet hours and ``severity`` is below the override."""
        local = at.astimezone(VIETNAM).time()
        inside = (
            (self.start <= local < self.end)
            if self.start <= self.end
            else (local >= self.start or local < self.end)
        )
        return inside and severity_rank(severity) < severity_rank(self.min_severity)


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    sites: tuple[str, ...]  # empty: every site
    min_severity: Severity
    kinds: tuple[str, ...]  # empty: every kind
    channels: tuple[Channel, ...]
    notify: tuple[str, ...]
    escalate: tuple[EscalationStep, ...] = ()
    quiet_hours: QuietHours | None = None

    def matches(self, site: str, kind: str, severity: Severity) -> bool:
        return (
            (not self.sites or site in self.sites)
            and (not self.kinds or kind in self.kinds)
            and severity_rank(severity) >= severity_rank(self.min_severity)
        )


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What the policy looks at."""

    id: str
    site: str
    kind: str
    severity: Severity
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class Intent:
    """One notification to create: (incident, contact, channel, reason) is its key."""

    incident_id: str
    contact: str
    channel: Channel
    reason: Reason
    policy: str
    step: int  # 0: the first tier; k: the k-th escalation step


@dataclass(frozen=True, slots=True)
class NotifyPolicy:
    contacts: dict[str, Contact]
    policies: tuple[Policy, ...]
    rate_limit: RateLimit = RateLimit()

    @classmethod
    def empty(cls) -> NotifyPolicy:
        """The bundled default: notifies nobody."""
        return cls({}, ())

    @property
    def active(self) -> bool:
        return bool(self.policies)

    def limit_of(self, contact: str) -> RateLimit:
        c = self.contacts.get(contact)
        return c.rate_limit if c is not None and c.rate_limit is not None else self.rate_limit

    # --- decisions --------------------------------------------------------------------------

    def on_change(
        self, inc: IncidentFacts, reason: Literal["opened", "severity"], now: datetime
    ) -> list[Intent]:
        """The first tier of every matching policy, for an opening or a rise in severity."""
        out: list[Intent] = []
        for p in self._matching(inc, now):
            out += self._intents(inc, p, p.notify, reason, 0)
        return _unique(out)

    def due_escalations(self, inc: IncidentFacts, now: datetime, *, after_step: int = 0) -> list[Intent]:
        """Escalation steps (numbered from 1) due at ``now`` for an unacknowledged incident,
        beyond ``after_step`` (the highest step already created)."""
        out: list[Intent] = []
        for p in self._matching(inc, now):
            for k, step in enumerate(p.escalate, start=1):
                if k > after_step and now >= inc.opened_at + timedelta(minutes=step.after_min):
                    out += self._intents(inc, p, step.notify, "escalated", k)
        return _unique(out)

    def next_escalation(self, inc: IncidentFacts, *, after_step: int = 0) -> datetime | None:
        """When the next escalation step of ``inc`` falls due (None: no step left)."""
        times = [
            inc.opened_at + timedelta(minutes=step.after_min)
            for p in self.policies
            if p.matches(inc.site, inc.kind, inc.severity)
            for k, step in enumerate(p.escalate, start=1)
            if k > after_step
        ]
        return min(times, default=None)

    def _matching(self, inc: IncidentFacts, now: datetime) -> Iterable[Policy]:
        for p in self.policies:
            if not p.matches(inc.site, inc.kind, inc.severity):
                continue
            if p.quiet_hours is not None and p.quiet_hours.holds_back(now, inc.severity):
                continue
            yield p

    def _intents(
        self, inc: IncidentFacts, p: Policy, contacts: Sequence[str], reason: Reason, step: int
    ) -> list[Intent]:
        out: list[Intent] = []
        for cid in contacts:
            c = self.contacts.get(cid)
            if c is None or not c.covers(inc.site):
                continue
            out += [Intent(inc.id, cid, ch, reason, p.id, step) for ch in p.channels if c.reaches(ch)]
        return out


def _unique(intents: list[Intent]) -> list[Intent]:
    """One intent per key (two policies naming one contact send one message)."""
    seen: dict[tuple[str, str, str, str], Intent] = {}
    for i in intents:
        seen.setdefault((i.incident_id, i.contact, i.channel, i.reason), i)
    return list(seen.values())


def allowance(limit: RateLimit, sent_in_window: int, waiting: int) -> tuple[int, bool]:
    """How many of ``waiting`` messages go out one by one now, and whether the rest are
    folded into one digest (which uses the last free message of the window)."""
    free = limit.max_messages - sent_in_window
    if free <= 0 or waiting <= 0:
        return 0, False
    if waiting <= free:
        return waiting, False
    return free - 1, True


def backoff_s(attempts: int, *, initial_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Delay before the next attempt after ``attempts`` failed ones (doubling, capped)."""
    return float(min(cap_s, initial_s * 2 ** max(attempts - 1, 0)))
