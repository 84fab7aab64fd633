"""Settings, broker URLs, failover back-off, the synthetic driver, the clock, the CLI's refusals."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from contract.brokers import BrokerUrl, BrokerUrlError
from contract.registry import load_registry
from edge import cli
from edge.clock import ScaledClock
from edge.drivers.synthetic import ScheduledLink, SyntheticDriver
from edge.errors import ConfigError
from edge.mqtt_publisher import MqttPublisher
from edge.publisher import parse_broker_urls
from edge.settings import EdgeSettings

T0 = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


def test_settings_use_the_contract_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTWARD_MQTT_URL", "mqtt://tn-gw-01:s3cret@broker.local:1884,mqtts://b2.local")
    monkeypatch.setenv("SMARTWARD_EDGE_OUTBOX", "/var/lib/smartward/{gateway}")
    monkeypatch.setenv("SMARTWARD_EDGE_FLUSH_INTERVAL_MS", "2500")
    monkeypatch.setenv("SMARTWARD_DB_URL", "postgresql://ignored")  # another component's setting
    s = EdgeSettings()
    assert s.outbox_dir("tn-gw-01") == Path("/var/lib/smartward/tn-gw-01")
    assert s.edge_flush_interval_ms == 2500
    assert [str(u) for u in s.broker_urls] == ["mqtt://tn-gw-01:***@broker.local:1884", "mqtts://b2.local:8883"]
    assert "s3cret" not in repr(s)


def test_settings_refuse_a_live_reserve_as_large_as_the_window() -> None:
    with pytest.raises(ValidationError):
        EdgeSettings(edge_window=8, edge_live_reserve=8)


def test_settings_refuse_a_bad_broker_url() -> None:
    with pytest.raises(ValidationError):
        EdgeSettings(mqtt_url="http://broker")


def test_broker_url_parsing() -> None:
    u = BrokerUrl.parse("mqtt://tn-gw-01:p%40ss@10.0.0.5:1884")
    assert (u.host, u.port, u.tls, u.username, u.password) == ("10.0.0.5", 1884, False, "tn-gw-01", "p@ss")
    assert BrokerUrl.parse("mqtt://h").port == 1883
    assert BrokerUrl.parse("mqtts://h").port == 8883
    for bad in ("tcp://h", "mqtt://", "mqtt://h:notaport", "mqtt://h?protocol=4", "mqtt://h?x=1"):
        with pytest.raises(BrokerUrlError):
            BrokerUrl.parse(bad)
    assert BrokerUrl.parse("mqtt://h:1884?protocol=3.1.1").protocol == "3.1.1"
    assert not BrokerUrl.parse("mqtt://h?protocol=3.1.1").mqtt5
    assert BrokerUrl.parse("mqtt://h").mqtt5
    with pytest.raises(ConfigError):
        parse_broker_urls(" , ")


def _publisher(n_urls: int) -> MqttPublisher:
    urls = [BrokerUrl(f"b{i}", 1883) for i in range(n_urls)]
    return MqttPublisher(gateway="tn-gw-01", site="thong-nhat", urls=urls, sink=lambda e: None,
                         will=lambda: b"", window=8, reconnect_min_s=1.0, reconnect_max_s=8.0,
                         rng=random.Random(1))


def test_failover_tries_the_next_url_at_once_and_backs_off_after_a_full_round() -> None:
    p = _publisher(3)
    assert p._backoff_s(1) == 0.0 and p._backoff_s(2) == 0.0  # next URL, no wait
    delays = [p._backoff_s(3 * r) for r in range(1, 6)]  # after each failed round
    bases = [1.0, 2.0, 4.0, 8.0, 8.0]
    for delay, base in zip(delays, bases, strict=True):
        assert base / 2 <= delay <= base  # exponential, capped, with jitter


def test_synthetic_driver_polls_are_half_open_and_complete() -> None:
    sensors = load_registry().sensors_of("ax-gw-02")
    whole = SyntheticDriver(sensors, start=T0).poll(T0 + timedelta(minutes=10))
    d = SyntheticDriver(sensors, start=T0)
    parts = [r for k in range(1, 61) for r in d.poll(T0 + timedelta(seconds=10 * k - 0.5))]
    parts += d.poll(T0 + timedelta(minutes=10))
    assert sorted(parts, key=lambda r: (r.ts, r.sensor, r.metric)) == \
        sorted(whole, key=lambda r: (r.ts, r.sensor, r.metric))
    assert all(T0 < r.ts <= T0 + timedelta(minutes=10) for r in whole)
    assert len(whole) == pytest.approx(600 * SyntheticDriver(sensors, start=T0).rate_per_s, abs=1)


def test_synthetic_driver_stops_at_its_end() -> None:
    sensors = load_registry().sensors_of("ax-gw-02")
    d = SyntheticDriver(sensors, start=T0, end=T0 + timedelta(seconds=30))
    assert d.poll(T0 + timedelta(hours=1))
    assert d.poll(T0 + timedelta(hours=2)) == []


def test_scheduled_link() -> None:
    link = ScheduledLink([(T0, T0 + timedelta(hours=2))])
    assert link.link_up(T0 - timedelta(seconds=1))
    assert not link.link_up(T0)
    assert link.link_up(T0 + timedelta(hours=2))


def test_scaled_clock_runs_fast_and_converts_waits_to_real_seconds() -> None:
    now = [100.0]
    clock = ScaledClock(speed=60, start=T0, monotonic=lambda: now[0])
    now[0] += 2.0
    assert clock.now() == T0 + timedelta(minutes=2)
    assert clock.real_seconds_until(T0 + timedelta(minutes=3)) == pytest.approx(1.0)


def test_cli_refuses_an_unknown_gateway_and_a_missing_driver(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--gateway", "no-such-gw", "--driver", "synthetic"]) == cli.EXIT_USAGE
    assert "unknown gateway" in capsys.readouterr().err
    assert cli.main(["run", "--gateway", "tn-gw-01"]) == cli.EXIT_USAGE
    assert "--simulate" in capsys.readouterr().err


def test_only_our_own_ack_topic_moves_the_watermark() -> None:
    # A broker may deliver other topics on the ack subscription (amqtt 0.12 replays retained
    # messages of other topics to a new subscriber): another gateway's watermark must never
    # delete from this gateway's outbox.
    from paho.mqtt.client import MQTTMessage

    from edge.publisher import WatermarkReceived

    events: list[object] = []
    p = MqttPublisher(gateway="tn-gw-01", site="thong-nhat", urls=[BrokerUrl("h", 1883)],
                      sink=events.append, will=lambda: b"", window=8, rng=random.Random(1))
    client = p._new_client(BrokerUrl("h", 1883), [])

    def deliver(topic: str, payload: bytes) -> None:
        msg = MQTTMessage(topic=topic.encode())
        msg.payload = payload
        client.on_message(client, None, msg)  # type: ignore[misc]

    deliver("smartward/v1/thong-nhat/tn-gw-02/ack", b'{"v":1,"seq":999}')
    deliver("smartward/v1/thong-nhat/tn-gw-01/status", b'{"v":1,"seq":5}')
    assert events == []
    deliver("smartward/v1/thong-nhat/tn-gw-01/ack", b'{"v":1,"seq":7}')
    assert events == [WatermarkReceived(7)]
