"""Settings of the TT 10/2021 feed (environment ``SMARTWARD_*``), built once in ``main()``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Tt10Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMARTWARD_", env_nested_delimiter="__", extra="ignore")

    db_url: str = "sqlite:///./smartward.db"
    registry: Path | None = None
    # ftp://user:pass@host:port/dir or ftps://... (explicit TLS); unset: files are written
    # and kept in the outbox, nothing is sent.
    tt10_ftp_url: SecretStr | None = None
    # The CA (or the receiver's own certificate) that FTPS checks the receiver against;
    # unset: the system's CAs.
    tt10_ftp_ca_file: Path | None = None
    tt10_ftp_timeout_s: float = Field(default=30.0, gt=0, le=600)
    tt10_dir: Path = Path("./tt10")
    # Sent files are kept this long (TT 10/2021 vendors: at least 30 days of local data).
    tt10_keep_days: int = Field(default=30, ge=1, le=3650)
    # A cycle's file is written this long after the cycle ends, so that readings still on
    # their way (an edge sends a batch every few seconds) are in it.
    tt10_delay_s: float = Field(default=60.0, ge=0, le=240)
    # While files wait, the receiver is tried again this often (under one cycle: a receiver
    # that is back gets every waiting file within one cycle).
    tt10_retry_s: float = Field(default=60.0, gt=0, le=300)
    # On start, and every cycle, cycles of this window without a file are written (and sent).
    tt10_backfill_h: float = Field(default=24.0, gt=0, le=24 * 30)
