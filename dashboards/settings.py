"""Settings of ``smartward dashboards`` (env prefix ``SMARTWARD_``; a dotenv file named by
``SMARTWARD_CONFIG`` also works)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMARTWARD_", env_nested_delimiter="__", extra="ignore")

    grafana_url: str = "http://127.0.0.1:3000"
    # A Grafana service-account token (Editor, or Admin to create folders), sent as Bearer.
    grafana_token: SecretStr | None = None
    grafana_timeout_s: float = 10.0
