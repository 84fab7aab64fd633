"""The publisher port: what the agent hands sealed batches to, and the events it hears back.

The agent talks to a :class:`Publisher` and hears back through events (:data:`Event`) put on
its queue, so all agent state stays on the agent's thread. The MQTT adapter is
:class:`edge.mqtt_publisher.MqttPublisher`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from contract.brokers import BrokerUrl, BrokerUrlError
from contract.brokers import parse_broker_urls as _parse_broker_urls
from edge.errors import ConfigError

# --- events: publisher -> agent ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    url: str
    session_present: bool


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    url: str
    reason: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    url: str
    reason: str


@dataclass(frozen=True, slots=True)
class Published:
    """PUBACK for a batch. ``ok`` is False when the broker refused it (MQTT 5 reason >= 0x80)."""

    seq: int
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WatermarkReceived:
    seq: int


@dataclass(frozen=True, slots=True)
class BadAck:
    detail: str


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """A message on our own ``cmd`` topic, undecoded: the agent's command handler judges it."""

    payload: bytes


Event = Connected | ConnectFailed | Disconnected | Published | WatermarkReceived | BadAck | CommandReceived
EventSink = Callable[[Event], None]


class Publisher(Protocol):
    """Where sealed batches go. Methods are called from the agent's thread only."""

    def __enter__(self) -> Publisher: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def set_link(self, up: bool) -> None:
        """Whether the uplink may be used. Nothing connects before the first ``set_link(True)``."""
        ...

    def publish_batch(self, seq: int, payload: bytes) -> bool:
        """Hand one batch to the network (QoS 1); False when not connected. A :class:`Published`
        event follows a True."""
        ...

    def publish_status(self, payload: bytes) -> bool:
        """Publish the retained status; False when not connected."""
        ...

    def publish_result(self, payload: bytes) -> bool:
        """Publish a command result (QoS 1, not retained); False when not connected."""
        ...

    def close(self, *, final_status: bytes | None = None, timeout_s: float = 5.0) -> bool:
        """Publish ``final_status`` (retained, waiting up to ``timeout_s`` for its PUBACK), then
        disconnect and stop. True when the final status was acknowledged."""
        ...


# --- broker URLs -----------------------------------------------------------------------------


def parse_broker_urls(text: str) -> list[BrokerUrl]:
    """``SMARTWARD_MQTT_URL``: one URL or a comma-separated list for failover."""
    try:
        return _parse_broker_urls(text)
    except BrokerUrlError as exc:
        raise ConfigError(str(exc)) from exc
