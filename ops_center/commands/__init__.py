"""Operator commands to the devices (docs/contract.md ``cmd`` / ``cmd/result``): the API
process's MQTT link that publishes them and records their results (``link``), and the desk the
HTTP routes use (``desk``). Not HTTP: ``ops_center/api/`` only calls it."""
