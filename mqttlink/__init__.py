"""The MQTT link every component uses: the paho client built in one place, broker-list
failover, subscriptions restored on reconnect, acks bound to the connection that delivered a
message, and a queue that acknowledges in arrival order once each message is handled.

- ``mqttlink.client``: construction (MQTT 5 or 3.1.1 from ``?protocol=``, TLS, credentials,
  the persistent session's CONNECT properties) for long-lived links, the edge publisher, the
  demo's helpers and the benchmark clients;
- ``mqttlink.link``: :class:`~mqttlink.link.Link`, one long-lived subscriber/publisher with
  failover over ``SMARTWARD_MQTT_URL``'s list (the ingest's MQTT source, the ops service's
  subscription, the API's command link);
- ``mqttlink.acks``: :class:`~mqttlink.acks.InOrderAcks`, handle one delivery at a time and
  PUBACK each in arrival order once handled (the command link's results), and ``hand_over``,
  the network thread's bounded hand-over to a worker's queue;
- ``mqttlink.ids``: the default, stable client id of a service's link (no paho import).

It imports ``contract`` (broker URLs) and paho only; the components import it, never the
reverse (docs/design.md "Components").
"""
