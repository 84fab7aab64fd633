"""Load the notification policy file (``SMARTWARD_NOTIFY_POLICY``): YAML validated with
pydantic, errors naming the line (the registry's line-numbered composition, reused).

Unknown keys, duplicate ids, a policy naming an unknown contact or site, an unknown channel or
severity, a malformed time of day or escalation steps out of order are errors. Without a file
the policy notifies nobody (the bundled default).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contract.models import SLUG_PATTERN
from contract.registry import Registry
from contract.yamlines import YamlLinesError, YamlPath, clean_loc, compose_with_lines, line_for
from ops_center.domain.alerts import Severity
from ops_center.domain.notify import (
    Channel,
    Contact,
    EscalationStep,
    NotifyPolicy,
    Policy,
    QuietHours,
    RateLimit,
)

SlugStr = Annotated[str, Field(pattern=SLUG_PATTERN)]
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_PHONE = r"^\+?[0-9]{8,15}$"
_EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}$"


class PolicyError(ValueError):
    """The policy file is invalid; ``line`` is 1-based when known."""

    def __init__(self, message: str, *, source: str = "<policy>", line: int | None = None) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")
        self.source, self.line, self.message = source, line, message


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _RateLimit(_Strict):
    max_messages: int = Field(default=10, ge=1, le=10_000)
    window_min: int = Field(default=10, ge=1, le=24 * 60)


class _Contact(_Strict):
    id: SlugStr
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, pattern=_EMAIL)
    phone: str | None = Field(default=None, pattern=_PHONE)
    url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=2000)
    sites: tuple[SlugStr, ...] = ()
    rate_limit: _RateLimit | None = None


class _Step(_Strict):
    after_min: float = Field(gt=0, le=7 * 24 * 60)
    notify: tuple[SlugStr, ...] = Field(min_length=1)


class _Quiet(_Strict):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    start: str = Field(alias="from")
    to: str
    min_severity: Severity = "emergency"

    @field_validator("start", "to")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"time of day must be HH:MM (24 h, Vietnam time), got {value!r}")
        return value


class _Policy(_Strict):
    id: SlugStr
    sites: tuple[SlugStr, ...] = ()
    min_severity: Severity = "critical"
    kinds: tuple[str, ...] = ()
    channels: tuple[Literal["email", "sms", "zalo", "webhook"], ...] = Field(min_length=1)
    notify: tuple[SlugStr, ...] = Field(min_length=1)
    escalate: tuple[_Step, ...] = ()
    quiet_hours: _Quiet | None = None

    @field_validator("escalate")
    @classmethod
    def _ordered(cls, steps: tuple[_Step, ...]) -> tuple[_Step, ...]:
        for a, b in itertools.pairwise(steps):
            if b.after_min <= a.after_min:
                raise ValueError("escalation steps must have increasing after_min")
        return steps


class _File(_Strict):
    version: Literal[1]
    rate_limit: _RateLimit = Field(default_factory=_RateLimit)
    contacts: tuple[_Contact, ...] = ()
    policies: tuple[_Policy, ...] = ()


def _hm(value: str) -> time:
    h, m = value.split(":")
    return time(int(h), int(m))


def parse_policy(text: str, *, source: str = "<policy>", registry: Registry | None = None) -> NotifyPolicy:
    try:
        data, lines = compose_with_lines(text)
    except YamlLinesError as exc:
        raise PolicyError(exc.message, source=source, line=exc.line) from exc
    try:
        spec = _File.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = clean_loc(err["loc"])
        raise PolicyError(
            f"{'.'.join(str(p) for p in loc)}: {err['msg']}", source=source, line=line_for(loc, lines)
        ) from exc
    _check_refs(spec, lines, source, registry)
    contacts = {
        c.id: Contact(
            c.id,
            c.name,
            c.sites,
            c.email,
            c.phone,
            c.url,
            RateLimit(c.rate_limit.max_messages, c.rate_limit.window_min) if c.rate_limit else None,
        )
        for c in spec.contacts
    }
    policies = tuple(
        Policy(
            p.id,
            p.sites,
            p.min_severity,
            p.kinds,
            tuple[Channel, ...](p.channels),
            p.notify,
            tuple(EscalationStep(s.after_min, s.notify) for s in p.escalate),
            QuietHours(_hm(p.quiet_hours.start), _hm(p.quiet_hours.to), p.quiet_hours.min_severity)
            if p.quiet_hours is not None
            else None,
        )
        for p in spec.policies
    )
    return NotifyPolicy(
        contacts, policies, RateLimit(spec.rate_limit.max_messages, spec.rate_limit.window_min)
    )


def _check_refs(spec: _File, lines: Mapping[YamlPath, int], source: str, registry: Registry | None) -> None:
    def fail(message: str, path: YamlPath) -> PolicyError:
        return PolicyError(message, source=source, line=line_for(path, lines))

    first: dict[str, int] = {}
    for ci, c in enumerate(spec.contacts):
        if c.id in first:
            raise fail(f"duplicate contact id {c.id!r} (first on line {first[c.id]})", ("contacts", ci, "id"))
        first[c.id] = lines.get(("contacts", ci, "id"), 0)
        if c.email is None and c.phone is None and c.url is None:
            raise fail(f"contact {c.id!r} has no email, phone or url", ("contacts", ci))
        for si, site in enumerate(c.sites):
            if registry is not None and site not in registry.sites:
                raise fail(f"unknown site {site!r}", ("contacts", ci, "sites", si))
    seen: set[str] = set()
    for pi, p in enumerate(spec.policies):
        if p.id in seen:
            raise fail(f"duplicate policy id {p.id!r}", ("policies", pi, "id"))
        seen.add(p.id)
        for si, site in enumerate(p.sites):
            if registry is not None and site not in registry.sites:
                raise fail(f"unknown site {site!r}", ("policies", pi, "sites", si))
        refs: list[tuple[str, YamlPath]] = [
            (c, ("policies", pi, "notify", k)) for k, c in enumerate(p.notify)
        ]
        for k, step in enumerate(p.escalate):
            refs += [(c, ("policies", pi, "escalate", k, "notify", j)) for j, c in enumerate(step.notify)]
        for cid, path in refs:
            if cid not in first:
                raise fail(f"unknown contact {cid!r}", path)


def load_policy(path: str | Path | None, *, registry: Registry | None = None) -> NotifyPolicy:
    """The policy in ``path``; the empty policy (nobody notified) when ``path`` is None."""
    if path is None:
        return NotifyPolicy.empty()
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the notification policy: {exc}", source=str(p)) from exc
    return parse_policy(text, source=str(p), registry=registry)
