"""The same accounts as the Mosquitto files, for a RabbitMQ broker: a definitions file.

``rabbitmq-definitions.json`` (mode 0600) holds users (salted SHA-256 hashes, RabbitMQ's
``rabbit_password_hashing_sha256``), vhost permissions and topic permissions on ``amq.topic``
(where the MQTT plugin publishes; ``/`` in a topic is ``.`` in a routing key). Load it with
``rabbitmqctl import_definitions FILE`` on any node (the cluster shares it); importing again
updates passwords and permissions. A revoked account is not in the file: ``rabbitmqctl
delete_user NAME`` removes it from the broker.

The isolation is the Mosquitto ACL's (ops_center/security/mqtt_credentials.py): a gateway
publishes only under its own ``{site}/{gateway}`` (telemetry, senml, status, cmd/result) and
reads only its own ``ack`` and ``cmd``. Its MQTT session queue is named after its client id
(``mqtt-subscription-{client id}qos1``), and it may create only the one named after itself.
The ingest accounts may also declare, bind and consume the quorum queue of the AMQP source
(docs/scale-out.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from contract.registry import Registry

DEFINITIONS_FILE: Final = "rabbitmq-definitions.json"
DEFAULT_QUEUE: Final = "smartward.telemetry"
KEY_ROOT: Final = r"^smartward\.v1\."
ANY: Final = r"[^.]+"


def rabbitmq_hash(password: str, *, salt: bytes | None = None) -> str:
    """RabbitMQ's stored form: base64(salt(4) + sha256(salt + password))."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode()


def _session_queue(client: str) -> str:
    return rf"mqtt-subscription-{client}qos[01]"


def gateway_permissions(site: str, gateway: str) -> tuple[dict[str, str], dict[str, str]]:
    """(vhost permissions, topic permissions on amq.topic) of one gateway."""
    own = rf"{KEY_ROOT}{re.escape(site)}\.{re.escape(gateway)}\."
    queue = _session_queue(re.escape(gateway))
    return ({"configure": f"^{queue}$", "write": rf"^(amq\.topic|{queue})$",
             "read": rf"^(amq\.topic|{queue})$"},
            {"write": rf"{own}(telemetry|senml|status|cmd\.result)$", "read": rf"{own}(ack|cmd)$"})


def service_permissions(account: str, queue: str = DEFAULT_QUEUE) -> tuple[dict[str, str], dict[str, str]]:
    """(vhost permissions, topic permissions) of ``ingest``/``ingest-N``, ``ops``, ``ops-api``."""
    sessions = r"mqtt-subscription-.*"
    every = rf"{KEY_ROOT}{ANY}\.{ANY}\."
    if account == "ingest" or account.startswith("ingest-"):
        q = re.escape(queue)
        return ({"configure": rf"^({q}|{sessions})$", "write": rf"^(amq\.topic|{q}|{sessions})$",
                 "read": rf"^(amq\.topic|{q}|{sessions})$"},
                {"write": rf"{every}ack$", "read": rf"{every}(telemetry|senml|status)$"})
    vhost = {"configure": f"^{sessions}$", "write": rf"^(amq\.topic|{sessions})$",
             "read": rf"^(amq\.topic|{sessions})$"}
    if account == "ops":
        return vhost, {"write": rf"{every}cmd$", "read": rf"{every}(telemetry|senml|status|cmd\.result)$"}
    if account == "ops-api":
        return vhost, {"write": rf"{every}cmd$", "read": rf"{every}cmd\.result$"}
    raise ValueError(f"unknown service account {account!r}")


def definitions(registry: Registry, accounts: Mapping[str, str], *, vhost: str = "/",
                queue: str = DEFAULT_QUEUE) -> dict[str, Any]:
    """The definitions document for ``accounts`` (user → password, as generated)."""
    site_of = {gw.id: site.id for site, gw in registry.iter_gateways()}
    users, perms, topic_perms = [], [], []
    for user, password in accounts.items():
        if user in site_of:
            vperm, tperm = gateway_permissions(site_of[user], user)
        else:
            vperm, tperm = service_permissions(user, queue)
        users.append({"name": user, "password_hash": rabbitmq_hash(password),
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
        perms.append({"user": user, "vhost": vhost, **vperm})
        topic_perms.append({"user": user, "vhost": vhost, "exchange": "amq.topic", **tperm})
    return {"users": users, "vhosts": [{"name": vhost}], "permissions": perms,
            "topic_permissions": topic_perms}


def write_definitions(registry: Registry, accounts: Mapping[str, str], out: Path, *,
                      vhost: str = "/", queue: str = DEFAULT_QUEUE) -> Path:
    path = out / DEFINITIONS_FILE
    text = json.dumps(definitions(registry, accounts, vhost=vhost, queue=queue), indent=1)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)
    return path
