"""SMARTWARD_INGEST_SOURCE: the AMQP URL (docs/contract.md "Scale-out and high availability")."""

from __future__ import annotations

import pytest

from ingest.amqp_source import AmqpConfigError, parse_amqp_url, topic_of
from ingest.metrics import IngestMetrics
from ingest.settings import IngestSettings
from ingest.sources import open_source


def test_the_contract_example_names_three_nodes_a_vhost_and_a_queue() -> None:
    u = parse_amqp_url("amqp://user:pass@h1:5672,h2:5672,h3:5672/vhost?queue=smartward.telemetry")
    assert u.hosts == (("h1", 5672), ("h2", 5672), ("h3", 5672))
    assert (u.username, u.password, u.vhost, u.tls) == ("user", "pass", "vhost", False)
    assert u.queue == "smartward.telemetry"
    assert "pass" not in str(u)


def test_vhost_is_url_encoded_and_defaults_fill_in() -> None:
    u = parse_amqp_url("amqp://a%40b:p%3Aw@broker/%2F")
    assert (u.username, u.password, u.vhost, u.queue) == ("a@b", "p:w", "/", "smartward.telemetry")
    assert u.hosts == (("broker", 5672),)
    assert parse_amqp_url("amqps://u:p@h").hosts == (("h", 5671),)
    assert parse_amqp_url("amqp://u:p@h").vhost == "/"


@pytest.mark.parametrize("url", ["mqtt://h", "amqp://u:p@/x", "amqp://u:p@h:port/x",
                                 "amqp://u:p@h:70000/", "amqp://u:p@h/?queue="])
def test_a_bad_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(AmqpConfigError):
        parse_amqp_url(url)


def test_routing_keys_become_mqtt_topics_again() -> None:
    assert topic_of("smartward.v1.tn.tn-gw-01.telemetry") == "smartward/v1/tn/tn-gw-01/telemetry"


def test_the_setting_chooses_the_adapter_and_amqp_keeps_an_mqtt_ack_publisher() -> None:
    m = IngestMetrics()
    src, acks = open_source(IngestSettings(), client_id="x", metrics=m)
    assert src is acks  # one MQTT link for both
    src, acks = open_source(IngestSettings(ingest_source="amqp://u:p@h1,h2/%2F"), client_id="x",
                            metrics=IngestMetrics())
    assert src is not acks
    assert type(src).__name__ == "AmqpSource" and type(acks).__name__ == "MqttLink"


def test_ingest_run_refuses_a_bad_source_before_starting(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest.cli import main

    monkeypatch.setenv("SMARTWARD_INGEST_SOURCE", "amqp://u:p@h:x/")
    assert main(["run", "--workers", "2"]) == 2
    assert "bad port in 'h:x'" in capsys.readouterr().err
