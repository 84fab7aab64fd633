"""What the command routes use (ops_center/api/routes/commands.py): the command store, the
command link (ops_center/commands/link.py; None: commands cannot be sent), the feed that tells
live screens, the clock."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry

from contract.models import CommandResult
from mqttlink.ids import host_client_id
from ops_center.adapters.commands import CommandRecord, CommandStore
from ops_center.adapters.factory import open_command_store
from ops_center.adapters.repository import OpsRepository
from ops_center.commands.link import CommandLink
from ops_center.feed import Feed
from ops_center.settings import OpsSettings

logger = logging.getLogger(__name__)


class CommandDesk:
    """What the command routes use: the store, the link (None: commands cannot be sent), the
    feed that tells live screens, the clock."""

    def __init__(self, store: CommandStore, feed: Feed, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.feed = feed
        self.clock = clock
        self.link: CommandLink | None = None

    @classmethod
    def build(cls, settings: OpsSettings, repo: OpsRepository, feed: Feed,
              clock: Callable[[], datetime]) -> CommandDesk:
        desk = cls(open_command_store(repo), feed, clock)
        url = settings.commands_mqtt_url
        if url is not None:
            # Stable across restarts, so a restarted API resumes its persistent session (and the
            # results queued in it) instead of leaving it behind (see the module docstring).
            client_id = host_client_id("ops-api")[:64]
            desk.link = CommandLink(url.get_secret_value(), client_id=client_id, on_result=desk.on_result,
                                    session_expiry_s=settings.commands_session_expiry_s)
        return desk

    def start(self) -> None:
        if self.link is not None:
            self.link.start()

    def stop(self) -> None:
        if self.link is not None:
            self.link.stop()

    def readiness(self, base: Callable[[], Mapping[str, bool]]) -> Callable[[], Mapping[str, bool]]:
        """``base``'s checks, plus the command link's connection when there is one."""
        link = self.link
        if link is None:
            return base

        def checks() -> Mapping[str, bool]:
            return {**base(), "commands": link.connected}

        return checks

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """The command link's gauges in the app's metrics registry (nothing without a link)."""
        if self.link is not None:
            self.link.register_metrics(registry)

    def on_result(self, site: str, gateway: str, result: CommandResult) -> None:
        """A result from the broker (the link's worker thread): record it, tell the live
        screens. ``RepositoryError`` propagates: the link keeps the result unacknowledged and
        tries again while it is ``RepositoryUnavailable``, else counts and acknowledges it."""
        updated = self.store.record_result(result.id, gateway, result.ok, result.detail, result.ts)
        if updated is None:
            logger.debug("command result %s from %s changed nothing (unknown, redelivered or late)",
                         result.id, gateway)
            return
        if updated.site != site:
            logger.warning("command %s answered on %s's topic, but it is of %s",
                           result.id, site, updated.site)
        self.publish_event(updated)

    def publish_event(self, c: CommandRecord) -> None:
        self.feed.publish("command", c.site, {
            "id": c.id, "sensor": c.sensor, "gateway": c.gateway, "name": c.name, "state": c.state,
            "detail": c.detail, "by": c.created_by,
        })
