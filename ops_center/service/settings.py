"""Settings of the ops service (the rule engine's MQTT consumer), env prefix ``SMARTWARD_``.

The shared names of docs/contract.md keep their names (``SMARTWARD_MQTT_URL``,
``SMARTWARD_DB_URL``, ``SMARTWARD_REGISTRY``); the service's own settings are prefixed
``ops_`` (``SMARTWARD_OPS_TICK_INTERVAL_S``...) so they never collide with another
component's in a shared environment. Built in ``main()`` and passed down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mqttlink.ids import host_client_id


class OpsServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMARTWARD_", env_nested_delimiter="__", extra="ignore")

    # A comma-separated list: the service fails over in order (paho has no multi-host).
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    db_url: str = "sqlite:///./smartward.db"
    registry: Path | None = None

    # Rule overlays (comma-separated paths, applied over the bundled defaults in order) and
    # a pattern file replacing the bundled one.
    ops_rules: str = ""
    ops_patterns: Path | None = None

    # MQTT 5: a persistent session (clean_start=False + Session Expiry Interval,
    # MQTT-3.1.2.11.2) so what arrives while the service restarts waits for it; the Receive
    # Maximum (MQTT-3.1.2.11.3) caps the unacknowledged QoS 1 messages the broker has out
    # to us, and so the in-memory queue.
    ops_client_id: str | None = None
    ops_receive_maximum: Annotated[int, Field(ge=2, le=65_535)] = 1000
    ops_session_expiry_s: Annotated[int, Field(ge=0)] = 7 * 86_400
    ops_keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30

    # Timers (wall clock): rule deadlines (silence, gateway timeouts, incident holds).
    ops_tick_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    # Rule state is saved (engine + incident manager + seen seqs) at most this long apart
    # while messages arrive, and whenever this many are processed but unacknowledged: a
    # message is PUBACKed only once a saved snapshot covers it, so a crash replays exactly
    # what the snapshot lacks. Must stay below the Receive Maximum.
    ops_snapshot_interval_s: Annotated[float, Field(gt=0)] = 5.0
    ops_snapshot_max_pending: Annotated[int, Field(ge=1)] = 500
    # Persistence of changes: retry a database that is down with this back-off.
    ops_store_retry_initial_ms: Annotated[int, Field(ge=1)] = 100
    ops_store_retry_max_ms: Annotated[int, Field(ge=1)] = 5_000
    # How long a person's incident action waits for the service to apply it.
    ops_action_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # Maintenance windows are re-read from the store this often. A window set through the
    # API of the same process reaches the service at once (the feed's `maintenance` event);
    # this bounds the delay for one set by another process (a separate API, the database).
    ops_maintenance_refresh_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Seqs remembered above each gateway's contiguous watermark (duplicate detection).
    ops_seq_window: Annotated[int, Field(ge=16)] = 10_000

    # Notifications (issue #13, docs/contract.md "Additions → Notifications and escalation",
    # docs/notifications.md). Without a policy file nobody is notified.
    notify_policy: Path | None = None
    public_url: str = "http://127.0.0.1:8000"  # the screen's address as users reach it
    secret_key: SecretStr | None = None  # signs the acknowledge links (the API's key)
    smtp_url: SecretStr | None = None  # smtp://user:pass@host:port, smtps:// for TLS
    smtp_from: str = "smartward@localhost"
    sms_url: str | None = None  # eSMS.vn's SendMultipleMessage_V4_post_json endpoint
    sms_api_key: SecretStr | None = None
    sms_secret_key: SecretStr | None = None
    sms_brandname: str = ""
    zalo_url: str | None = None  # Zalo ZNS https://business.openapi.zalo.me/message/template
    zalo_access_token: SecretStr | None = None
    zalo_template_id: str = ""
    webhook_secret: SecretStr | None = None  # HMAC-SHA256 key of X-Smartward-Signature
    # Delivery: retried with a doubling backoff capped at notify_retry_max_s (≤ 60 s: a channel
    # that comes back is used within about a minute), until notify_max_attempts, then failed.
    notify_max_attempts: Annotated[int, Field(ge=1, le=10_000)] = 60
    notify_retry_initial_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    notify_retry_max_s: Annotated[float, Field(gt=0, le=60)] = 60.0
    notify_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    # The sender looks for due escalations at least this often (it also wakes on every commit
    # that creates notifications and at the next retry's time).
    notify_poll_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    notify_ack_ttl_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 12 * 3600

    @model_validator(mode="after")
    def _consistent(self) -> OpsServiceSettings:
        if self.ops_snapshot_max_pending >= self.ops_receive_maximum:
            raise ValueError("ops_snapshot_max_pending must be smaller than ops_receive_maximum: "
                             "the broker stops sending once that many messages are unacknowledged")
        return self

    @property
    def mqtt_urls(self) -> list[str]:
        return [u.strip() for u in self.mqtt_url.split(",") if u.strip()]

    @property
    def rule_overlays(self) -> list[Path]:
        return [Path(p.strip()) for p in self.ops_rules.split(",") if p.strip()]

    @property
    def client_id(self) -> str:
        return self.ops_client_id or host_client_id("ops")
