"""The only place where MQTT topic strings are built and parsed (docs/style.md rule 1)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from contract.errors import TopicError

ROOT = "smartward/v1"
# ``senml``: SenML JSON (RFC 8428) from third-party devices behind a gateway (docs/interfaces.md).
TopicKind = Literal["telemetry", "status", "ack", "cmd", "cmd/result", "senml"]
KINDS: tuple[TopicKind, ...] = ("telemetry", "status", "ack", "cmd", "cmd/result", "senml")

_SLUG = r"[a-z0-9][a-z0-9-]{0,62}"
_TOPIC_RE = re.compile(
    rf"^smartward/v1/(?P<site>{_SLUG})/(?P<gateway>{_SLUG})/(?P<kind>telemetry|status|ack|cmd/result|cmd|senml)$"
)
_SLUG_RE = re.compile(rf"^{_SLUG}$")


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    gateway: str
    kind: TopicKind

    def __str__(self) -> str:
        return build(self.site, self.gateway, self.kind)


def build(site: str, gateway: str, kind: TopicKind) -> str:
    if not _SLUG_RE.match(site) or not _SLUG_RE.match(gateway):
        raise TopicError(f"not a slug: site={site!r} gateway={gateway!r}")
    if kind not in KINDS:
        raise TopicError(f"unknown topic kind {kind!r}")
    return f"{ROOT}/{site}/{gateway}/{kind}"


def parse(topic: str) -> Topic:
    m = _TOPIC_RE.match(topic)
    if m is None:
        raise TopicError(f"not a smartward v1 topic: {topic!r}")
    kind: TopicKind = m["kind"]  # type: ignore[assignment]  # the regex admits only KINDS
    return Topic(m["site"], m["gateway"], kind)


def telemetry(site: str, gateway: str) -> str:
    return build(site, gateway, "telemetry")


def status(site: str, gateway: str) -> str:
    return build(site, gateway, "status")


def ack(site: str, gateway: str) -> str:
    return build(site, gateway, "ack")


def cmd(site: str, gateway: str) -> str:
    return build(site, gateway, "cmd")


def cmd_result(site: str, gateway: str) -> str:
    return build(site, gateway, "cmd/result")


def senml(site: str, gateway: str) -> str:
    return build(site, gateway, "senml")


def subscription(kind: TopicKind, *, share_group: str | None = None) -> str:
    """Wildcard filter for one kind over every site and gateway.

    With ``share_group`` it is an MQTT 5 shared subscription (``$share/{group}/...``,
    MQTT-4.8.2) so several workers split the stream.
    """
    if kind not in KINDS:
        raise TopicError(f"unknown topic kind {kind!r}")
    filt = f"{ROOT}/+/+/{kind}"
    if share_group is not None:
        if not _SLUG_RE.match(share_group):
            raise TopicError(f"not a slug: share group {share_group!r}")
        return f"$share/{share_group}/{filt}"
    return filt
