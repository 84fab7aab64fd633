"""Composition of the notification parts (ops_center/notify/) from the ops service's settings:
the service wires them, so notify/ never imports the service (docs/design.md, "Layers and
import rules")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from contract.registry import Registry
from ops_center.adapters.factory import open_notification_store
from ops_center.adapters.repository import OpsRepository
from ops_center.notify.channels import Channel, SmtpChannel, WebhookChannel
from ops_center.notify.gateways import EsmsChannel, ZaloZnsChannel
from ops_center.notify.loader import load_policy
from ops_center.notify.planner import NotificationPlanner
from ops_center.notify.sender import NotificationSender, SenderConfig
from ops_center.service.settings import OpsServiceSettings


@dataclass(frozen=True, slots=True)
class Notifier:
    planner: NotificationPlanner
    sender: NotificationSender


def _secret(value: object) -> str:
    get = getattr(value, "get_secret_value", None)
    return str(get()) if get is not None else ""


def build_channels(settings: OpsServiceSettings) -> dict[str, Channel]:
    """The channels the settings configure (a channel without settings is absent: its
    notifications fail with "channel not configured" after their attempts)."""
    t = settings.notify_timeout_s
    out: dict[str, Channel] = {}
    if settings.smtp_url is not None:
        out["email"] = SmtpChannel(_secret(settings.smtp_url), settings.smtp_from, timeout_s=t)
    if settings.sms_url:
        out["sms"] = EsmsChannel(
            settings.sms_url,
            _secret(settings.sms_api_key),
            _secret(settings.sms_secret_key),
            settings.sms_brandname,
            timeout_s=t,
        )
    if settings.zalo_url:
        out["zalo"] = ZaloZnsChannel(
            settings.zalo_url, _secret(settings.zalo_access_token), settings.zalo_template_id, timeout_s=t
        )
    if settings.webhook_secret is not None:
        out["webhook"] = WebhookChannel(_secret(settings.webhook_secret).encode(), timeout_s=t)
    return out


def build_notifier(
    settings: OpsServiceSettings,
    registry: Registry,
    repo: OpsRepository,
    *,
    channels: dict[str, Channel] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Notifier | None:
    """The planner and the sender for ``settings.notify_policy``; None without a policy (or
    on a store that is not SQL). Raises ``PolicyError`` for an invalid policy file."""
    policy = load_policy(settings.notify_policy, registry=registry)
    store = open_notification_store(repo)
    if not policy.active or store is None:
        return None
    secret = _secret(settings.secret_key) or None
    config = SenderConfig(
        public_url=settings.public_url,
        ack_secret=secret,
        ack_ttl_s=settings.notify_ack_ttl_s,
        max_attempts=settings.notify_max_attempts,
        retry_initial_s=settings.notify_retry_initial_s,
        retry_max_s=settings.notify_retry_max_s,
        poll_s=settings.notify_poll_s,
        claim_s=max(60.0, settings.notify_timeout_s * 3),
    )
    sender = NotificationSender(
        store,
        repo.incidents,
        policy,
        registry,
        channels if channels is not None else build_channels(settings),
        config,
        clock=clock,
    )
    return Notifier(NotificationPlanner(policy, registry, settings.public_url), sender)


__all__ = ["Notifier", "build_channels", "build_notifier"]
