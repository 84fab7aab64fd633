"""Settings of the ingest service (env prefix ``SMARTWARD_``, docs/style.md rule 5).

Built in ``cli.main()`` and passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.retention import RetentionPolicy


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMARTWARD_", env_nested_delimiter="__", extra="ignore")

    # A comma-separated list: the worker fails over round-robin (paho has no multi-host).
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    # Where messages come from: ``mqtt`` (a shared subscription on mqtt_url) or
    # ``amqp://user:pass@h1:5672,h2:5672/vhost?queue=smartward.telemetry`` (a RabbitMQ quorum
    # queue; the ack watermarks still go out over mqtt_url). docs/scale-out.md.
    ingest_source: str = "mqtt"
    db_url: str = "sqlite:///./smartward.db"
    registry: Path | None = None

    influx_url: str | None = None
    influx_token: SecretStr | None = None
    influx_org: str = "smartward"
    influx_bucket: str = "smartward"

    # Accepted reading time window, judged against the time the ingest received the batch
    # (docs/reliability.md B3): late data is stored by its own time, up to window_past_s old.
    window_past_s: Annotated[int, Field(ge=1)] = 30 * 86_400
    window_future_s: Annotated[int, Field(ge=0)] = 300

    # One transaction takes up to batch_max_messages MQTT messages or waits batch_max_ms.
    batch_max_messages: Annotated[int, Field(ge=1, le=10_000)] = 200
    batch_max_ms: Annotated[int, Field(ge=1, le=60_000)] = 50
    # MQTT 5 Receive Maximum (MQTT-3.1.2.11.3): the broker never has more unacknowledged
    # QoS 1 messages out to us than this. With manual acks after commit it bounds the
    # in-flight work and the in-memory queue (queue size = this value).
    receive_maximum: Annotated[int, Field(ge=1, le=65_535)] = 1000
    share_group: str | None = None
    client_id: str | None = None
    session_expiry_s: Annotated[int, Field(ge=0)] = 7 * 86_400
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30

    store_retry_initial_ms: Annotated[int, Field(ge=1)] = 100
    store_retry_max_ms: Annotated[int, Field(ge=1)] = 5_000
    # How long a stopping worker keeps retrying a store that is down before it gives up
    # (its messages stay unacknowledged and the broker redelivers them).
    stop_grace_s: Annotated[float, Field(ge=0)] = 10.0
    watermark_pending_max: Annotated[int, Field(ge=16)] = 10_000
    # With a shared subscription a gateway's seqs are split between workers, so a gap in
    # what one worker saw is closed by asking the store (at most this often per gateway).
    gap_check_interval_ms: Annotated[int, Field(ge=0)] = 500
    store_ping_interval_s: Annotated[float, Field(gt=0)] = 2.0
    liveness_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    # Readiness goes red while one store call (a transaction) runs longer than this: a locked
    # table or a saturated disk, when the database still answers pings (docs/reliability.md R7).
    store_stall_s: Annotated[float, Field(gt=0)] = 10.0

    # Retention in days (None keeps forever); TimescaleDB drops whole chunks.
    retention_readings_days: Annotated[float, Field(gt=0)] | None = None
    retention_rollup_1m_days: Annotated[float, Field(gt=0)] | None = None
    retention_rollup_1h_days: Annotated[float, Field(gt=0)] | None = None
    retention_dead_letters_days: Annotated[float, Field(gt=0)] | None = None

    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def retention_policy(self) -> RetentionPolicy | None:
        days = (self.retention_readings_days, self.retention_rollup_1m_days,
                self.retention_rollup_1h_days, self.retention_dead_letters_days)
        if all(d is None for d in days):
            return None
        return RetentionPolicy(*days)

    mirror_batch_rows: Annotated[int, Field(ge=1)] = 5_000

    @property
    def mqtt_urls(self) -> list[str]:
        return [u.strip() for u in self.mqtt_url.split(",") if u.strip()]

    @property
    def window_past(self) -> timedelta:
        return timedelta(seconds=self.window_past_s)

    @property
    def window_future(self) -> timedelta:
        return timedelta(seconds=self.window_future_s)
