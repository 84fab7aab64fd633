"""Settings of the operations center (environment ``SMARTWARD_*``, nested with ``__``).

Built once in ``main()`` (``smartward ops serve``, ``smartward demo``, the ``users`` and
``mqtt`` commands) and passed down; never a module-level instance.

The secret that signs access tokens is required outside ``demo``/``local``: a missing,
short or well-known placeholder value is refused at start (as the full-stack FastAPI
template refuses ``changethis`` outside local), because anyone who knows it can mint a
token for any role and site.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ops_center.security.proxies import TrustedProxies

Environment = Literal["local", "demo", "production"]

# Values seen in templates, tutorials and our own docs; never acceptable as a real key.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changethis",
        "change-me",
        "changeme",
        "secret",
        "secret-key",
        "your-secret-key",
        "smartward",
        "please-change",
        "dev",
        "development",
        "test",
        "password",
        "xxx",
    }
)
MIN_SECRET_CHARS = 32


class SecretKeyError(ValueError):
    """The signing key is missing or a placeholder where a real one is required."""


class OpsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMARTWARD_", env_nested_delimiter="__", extra="ignore")

    environment: Environment = "production"
    db_url: str = "sqlite:///./smartward.db"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    # The API's command link (ops_center/commands/link.py), with its own broker account
    # (`ops-api` in the generated ACL); unset: commands cannot be sent (503).
    commands_mqtt_url: SecretStr | None = None
    # How long the broker keeps the command link's session, and the command results queued in
    # it, while no API process is connected (MQTT 5 Session Expiry Interval); 1 h covers the
    # longest command TTL. MQTT 3.1.1 has no such interval: the broker's own applies.
    commands_session_expiry_s: int = Field(default=3600, ge=0, le=0xFFFF_FFFF)
    registry: Path | None = None
    # Several `ops serve` on one PostgreSQL store (docs/scale-out.md): one evaluator elected by
    # an advisory lock, the live stream fed from the store's change feed. Ignored on SQLite.
    ops_ha: bool = False
    secret_key: SecretStr | None = None
    # The Mosquitto log file (with `log_type debug`: deploy/mosquitto/smartward.conf) whose
    # refusals and ACL denials become security events; unset: not followed.
    broker_log: Path | None = None
    # CAP 1.2 `sender` of the incidents' alerts (ops_center/api/cap.py), e.g. ioc@namdinh.gov.vn;
    # unset: smartward@<the host the API is reached at>.
    cap_sender: str | None = None
    # The map tiles' attribution (the tile URL template is `map_tiles` below).
    map_tiles_attribution: str = ""

    # Tokens (RFC 7519 claims checked on every request).
    jwt_issuer: str = "smartward"
    jwt_audience: str = "smartward-api"
    access_token_ttl_s: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_s: int = Field(default=8 * 3600, ge=300, le=30 * 86_400)

    # Abuse limits (docs/reliability.md S8).
    login_attempts_per_ip: int = Field(default=20, ge=1)
    login_failures_per_user: int = Field(default=5, ge=1)
    login_window_s: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Reverse proxies whose X-Forwarded-For is believed (comma-separated IPs/CIDRs; none by
    # default): the per-IP login limit and the audit log use the client it names only when
    # the peer is one of these (docs/security.md).
    trusted_proxies: str = ""
    # The map's tile URL template; its origin is allowed in the screen's CSP img-src.
    map_tiles: str | None = None
    raw_range_max_s: int = Field(default=6 * 3600, ge=60)
    rollup_1m_range_max_s: int = Field(default=7 * 86_400, ge=3600)
    readings_range_max_s: int = Field(default=400 * 86_400, ge=86_400)
    readings_points_max: int = Field(default=10_000, ge=100)

    # KPIs and the live stream.
    completeness_window_s: int = Field(default=24 * 3600, ge=3600)
    latest_lookback_s: int = Field(default=24 * 3600, ge=600)
    kpi_interval_s: float = Field(default=10.0, gt=0)
    stream_queue_max: int = Field(default=256, ge=8)
    stream_ring_size: int = Field(default=2048, ge=16)
    stream_keepalive_s: float = Field(default=15.0, gt=0)
    overview_cache_s: float = Field(default=2.0, ge=0)
    # How stale a user row (disable, role, token version) and a list page may be
    # (ops_center/api/principals.py, pagecache.py); 0: read on every request.
    principal_cache_s: float = Field(default=1.0, ge=0)
    list_cache_s: float = Field(default=1.0, ge=0)

    # Notifications (issue #13): the policy the ops service follows (the API lists its contacts)
    # and the screen's address as users reach it (links in messages and acknowledge pages).
    notify_policy: Path | None = None
    public_url: str = "http://127.0.0.1:8000"

    # PostgreSQL pool.
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=16, ge=1)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        TrustedProxies.parse(value)  # raises (ValueError) at start, naming the bad entry
        return value

    @model_validator(mode="after")
    def _secret_required_outside_demo(self) -> OpsSettings:
        if self.environment in ("local", "demo"):
            return self
        value = self.secret_key.get_secret_value() if self.secret_key is not None else ""
        if value.strip().lower() in PLACEHOLDER_SECRETS:
            raise SecretKeyError(
                "SMARTWARD_SECRET_KEY chưa đặt hoặc là giá trị mẫu / is missing or a placeholder: "
                "set a random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        if len(value) < MIN_SECRET_CHARS:
            raise SecretKeyError(
                f"SMARTWARD_SECRET_KEY quá ngắn / is too short: at least {MIN_SECRET_CHARS} characters"
            )
        return self

    def signing_key(self) -> str:
        """The key that signs tokens. In demo/local without an acceptable key, a random one
        per process (tokens then die with the process, which is what a demo wants)."""
        value = self.secret_key.get_secret_value() if self.secret_key is not None else ""
        if value.strip().lower() not in PLACEHOLDER_SECRETS and len(value) >= MIN_SECRET_CHARS:
            return value
        key = secrets.token_urlsafe(48)
        self.secret_key = SecretStr(key)
        return key
