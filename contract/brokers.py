"""Broker addresses: ``SMARTWARD_MQTT_URL`` parsed in one place for every component.

``mqtt://[user:pass@]host[:port]`` (``mqtts://`` for TLS), or a comma-separated list for
failover. The platform speaks MQTT 5 (session expiry, Receive Maximum, PUBACK reason
codes); ``?protocol=3.1.1`` selects MQTT 3.1.1 for brokers that only speak it, such as the
embedded broker of ``smartward demo``: persistent sessions then use ``clean_session=False``
and the features MQTT 5 adds are done without.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from contract.errors import ContractError

MqttProtocol = Literal["5", "3.1.1"]


class BrokerUrlError(ContractError):
    """A broker URL that cannot work."""


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    protocol: MqttProtocol = "5"

    @property
    def mqtt5(self) -> bool:
        return self.protocol == "5"

    @classmethod
    def parse(cls, text: str) -> BrokerUrl:
        parts = urlsplit(text.strip())
        if parts.scheme not in ("mqtt", "mqtts"):
            raise BrokerUrlError(f"broker URL must start with mqtt:// or mqtts://: {redact(text)}")
        if not parts.hostname:
            raise BrokerUrlError(f"broker URL has no host: {redact(text)}")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise BrokerUrlError(f"bad port in broker URL {redact(text)}") from exc
        query = parse_qs(parts.query)
        unknown = set(query) - {"protocol"}
        if unknown:
            raise BrokerUrlError(f"unknown broker URL option(s) {sorted(unknown)}: {redact(text)}")
        protocol = query.get("protocol", ["5"])[-1]
        if protocol not in ("5", "3.1.1"):
            raise BrokerUrlError(f"protocol must be 5 or 3.1.1, not {protocol!r}: {redact(text)}")
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            protocol="5" if protocol == "5" else "3.1.1",
        )

    def __str__(self) -> str:  # never the password (docs/style.md rule 9)
        user = f"{self.username}:***@" if self.password is not None else (
            f"{self.username}@" if self.username else "")
        suffix = "" if self.mqtt5 else "?protocol=3.1.1"
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}{suffix}"


def redact(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.password is None:
        return text
    return text.replace(f":{parts.password}@", ":***@")


def parse_broker_urls(text: str) -> list[BrokerUrl]:
    """One URL or a comma-separated list (failover, in order)."""
    urls = [BrokerUrl.parse(u) for u in text.split(",") if u.strip()]
    if not urls:
        raise BrokerUrlError("no broker URL given (SMARTWARD_MQTT_URL)")
    return urls
