"""Builds the ingest's source and ack publisher from the settings (``SMARTWARD_INGEST_SOURCE``).

``mqtt`` (the default): one MQTT link, a shared subscription on ``SMARTWARD_MQTT_URL``, that also
publishes the ack watermarks. An ``amqp://`` URL: the RabbitMQ quorum queue (ingest/amqp_source.py)
plus a publish-only MQTT link on ``SMARTWARD_MQTT_URL`` for the watermarks, which always go back
to the gateways over MQTT (docs/contract.md "Scale-out and high availability").
"""

from __future__ import annotations

from contract import topics
from ingest.metrics import IngestMetrics
from ingest.mqtt_source import ConfigError, MqttLink, parse_broker_url
from ingest.settings import IngestSettings
from ingest.source import AckPublisher, Source


def mqtt_subscriptions(share_group: str | None) -> list[str]:
    return [
        topics.subscription("telemetry", share_group=share_group),
        topics.subscription("senml", share_group=share_group),  # ingest/senml.py
        # Status is retained, and retained messages are not sent to shared subscriptions
        # (MQTT-4.8.2): every worker reads every status; record_dropped is idempotent.
        topics.subscription("status"),
    ]


def open_source(settings: IngestSettings, *, client_id: str,
                metrics: IngestMetrics) -> tuple[Source, AckPublisher]:
    """The source and the ack publisher (the same object for MQTT). Nothing connects yet."""
    def mqtt_link(cid: str, subscriptions: list[str], gauge: bool) -> MqttLink:
        return MqttLink(settings.mqtt_urls, client_id=cid, subscriptions=subscriptions,
                        receive_maximum=settings.receive_maximum,
                        session_expiry_s=settings.session_expiry_s,
                        keepalive_s=settings.keepalive_s, metrics=metrics, connection_gauge=gauge)

    kind = settings.ingest_source.strip()
    if kind.lower() == "mqtt":
        link = mqtt_link(client_id, mqtt_subscriptions(settings.share_group), True)
        return link, link
    from ingest.amqp_source import AmqpSource, parse_amqp_url

    source = AmqpSource(parse_amqp_url(kind), prefetch=settings.receive_maximum,
                        heartbeat_s=settings.keepalive_s, metrics=metrics)
    return source, mqtt_link(f"{client_id}-acks", [], False)


def check_settings(settings: IngestSettings) -> None:
    """Raise ``IngestError`` (with the reason) for broker or source URLs that cannot work, before
    any process is started for them."""
    if not settings.mqtt_urls:
        raise ConfigError("no MQTT URL (SMARTWARD_MQTT_URL)")
    for url in settings.mqtt_urls:
        parse_broker_url(url)
    if settings.ingest_source.strip().lower() != "mqtt":
        from ingest.amqp_source import parse_amqp_url

        parse_amqp_url(settings.ingest_source)
