"""The composition root of the edge agent: outbox + MQTT publisher + agent, in one place.

Used by the command line, the benchmark and the integration tests, so all three run the
agent exactly as a gateway does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from contract.registry import Registry
from edge.agent import Agent
from edge.clock import Clock
from edge.clockguard import ClockGuard
from edge.commands import CommandHandler
from edge.counters import EdgeStats
from edge.drivers.base import CommandTarget, Driver, LinkProbe
from edge.errors import ConfigError
from edge.mqtt_publisher import MqttPublisher
from edge.outbox import SqliteOutbox
from edge.publisher import EventSink
from edge.settings import EdgeSettings


@contextmanager
def open_agent(
    settings: EdgeSettings,
    registry: Registry,
    gateway: str,
    *,
    clock: Clock,
    driver: Driver,
    link: LinkProbe | None = None,
    on_stats: Callable[[EdgeStats], None] | None = None,
    guard: ClockGuard | None = None,
) -> Iterator[Agent]:
    """An agent for ``gateway`` with its outbox open; ``agent.run()`` connects and runs it."""
    site = registry.site_of(gateway)
    if site is None:
        raise ConfigError(f"gateway {gateway!r} is not in the registry")
    urls = settings.broker_urls

    def connect(sink: EventSink, will: Callable[[], bytes]) -> MqttPublisher:
        return MqttPublisher(
            gateway=gateway, site=site, urls=urls, sink=sink, will=will, window=settings.edge_window,
            keepalive_s=settings.edge_keepalive_s, session_expiry_s=settings.edge_session_expiry_s,
            connect_timeout_s=settings.edge_connect_timeout_s,
            reconnect_min_s=settings.edge_reconnect_min_s, reconnect_max_s=settings.edge_reconnect_max_s,
            rng=random.Random(),
            ca_file=str(settings.edge_mqtt_ca_file) if settings.edge_mqtt_ca_file else None,
        )

    # Commands go to the driver when it has the hook (the simulated driver has); otherwise
    # each is answered "unsupported_command".
    target = driver if isinstance(driver, CommandTarget) else None
    commands = CommandHandler(gateway, (s.id for s in registry.sensors_of(gateway)), target)
    with SqliteOutbox(settings.outbox_dir(gateway), max_bytes=settings.edge_outbox_max_bytes) as outbox:
        yield Agent(settings=settings, gateway=gateway, clock=clock, driver=driver, outbox=outbox,
                    connect=connect, link=link, on_stats=on_stats, commands=commands, guard=guard)
