"""Settings of the edge agent (env prefix ``SMARTWARD_``, docs/style.md rule 5).

The shared names of docs/contract.md keep their names (``SMARTWARD_MQTT_URL``,
``SMARTWARD_REGISTRY``, ``SMARTWARD_EDGE_OUTBOX``); every other edge setting is prefixed
``edge_`` (``SMARTWARD_EDGE_FLUSH_INTERVAL_MS``...) so it never collides with another
component's setting in a shared environment or ``SMARTWARD_CONFIG`` file.

Built in ``cli.main()`` and passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.brokers import BrokerUrl
from contract.models import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_BATCH
from edge.errors import ConfigError
from edge.publisher import parse_broker_urls

AGENT = "smartward-edge/0.1.0"


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMARTWARD_", env_nested_delimiter="__", extra="ignore")

    # mqtt[s]://[user:pass@]host:port, or a comma-separated list: the agent fails over in
    # order. Without a user in the URL the agent logs in as its gateway id.
    mqtt_url: SecretStr = SecretStr("mqtt://127.0.0.1:1883")
    registry: Path | None = None
    # The outbox directory; "{gateway}" is replaced by the gateway id.
    edge_outbox: str = "./outbox/{gateway}"

    # Batching: a batch is cut at this many readings or when its first reading is this old
    # (clock time). Payloads over edge_max_payload_bytes are split before anything is stored.
    edge_batch_max_readings: Annotated[int, Field(ge=1, le=MAX_READINGS_PER_BATCH)] = 500
    edge_flush_interval_ms: Annotated[int, Field(ge=1, le=3_600_000)] = 5_000
    edge_poll_interval_ms: Annotated[int, Field(ge=1, le=3_600_000)] = 1_000
    edge_max_payload_bytes: Annotated[int, Field(ge=4096, le=MAX_PAYLOAD_BYTES)] = MAX_PAYLOAD_BYTES

    # The outbox cap: past it the oldest batches are dropped (counted, reported).
    # 256 MiB hold about a month of a busy ward gateway (1 reading/s at ~100 bytes).
    edge_outbox_max_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024 * 1024

    # Sending: at most edge_window batches await PUBACK (and are held in memory: at most
    # 256 x 256 KiB); the backlog may use all but edge_live_reserve of them, at
    # edge_backlog_batches_per_s.
    edge_window: Annotated[int, Field(ge=2, le=256)] = 32
    edge_live_reserve: Annotated[int, Field(ge=1)] = 8
    edge_backlog_batches_per_s: Annotated[float, Field(gt=0, le=100_000)] = 50.0
    # Re-send what the watermark has not covered when it has not advanced for this long
    # (doubling up to the max while it stays stuck).
    edge_ack_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    edge_ack_timeout_max_s: Annotated[float, Field(gt=0)] = 600.0
    edge_status_interval_s: Annotated[float, Field(gt=0)] = 30.0
    edge_shutdown_timeout_s: Annotated[float, Field(ge=0)] = 5.0

    # mqtts:// verifies the broker against this CA file (PEM); unset: the system's CAs.
    edge_mqtt_ca_file: Path | None = None

    # LoRaWAN: the network server's MQTT integration (ChirpStack v4), read by the `lorawan`
    # driver: its URL (mqtt[s]://user:pass@host:port), the application id (UUID; "+" for
    # every application the login may read) and the CA file for mqtts://.
    edge_lorawan_mqtt_url: SecretStr | None = None
    edge_lorawan_application_id: str = "+"
    edge_lorawan_ca_file: Path | None = None

    # Connection (MQTT 5).
    edge_keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    edge_session_expiry_s: Annotated[int, Field(ge=0)] = 7 * 86_400
    edge_connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    edge_reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    edge_reconnect_max_s: Annotated[float, Field(gt=0)] = 60.0

    @model_validator(mode="after")
    def _consistent(self) -> EdgeSettings:
        if self.edge_live_reserve >= self.edge_window:
            raise ValueError("edge_live_reserve must be smaller than edge_window")
        try:
            parse_broker_urls(self.mqtt_url.get_secret_value())
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self

    @property
    def broker_urls(self) -> list[BrokerUrl]:
        return parse_broker_urls(self.mqtt_url.get_secret_value())

    def outbox_dir(self, gateway: str) -> Path:
        return Path(self.edge_outbox.replace("{gateway}", gateway))
