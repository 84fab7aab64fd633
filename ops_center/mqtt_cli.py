"""``smartward mqtt credentials --out DIR [--rotate] [--revoke GW ...]``: a Mosquitto password
file, an ACL and a conf snippet for every gateway of the registry plus the service accounts
``ingest`` (``ingest-2`` … with ``--ingest-workers N``), ``ops`` and ``ops-api``
(ops_center/security/mqtt_credentials.py says what each may do).

The shipped deploy/mosquitto/smartward.conf reads ``/etc/mosquitto/smartward/{passwd,acl}``:
``--out /etc/mosquitto/smartward``, then reload the broker (SIGHUP re-reads both files).
``DIR/smartward-auth.conf`` holds the same directives for a broker configured otherwise.
``DIR/rabbitmq-definitions.json``: the same accounts and isolation for RabbitMQ
(``rabbitmqctl import_definitions``; ops_center/security/rabbitmq_credentials.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from contract.errors import RegistryError
from contract.registry import load_registry
from ops_center.security.mqtt_credentials import CONF_FILE, CREDENTIALS_FILE, DEFAULT_INGEST_WORKERS, generate
from ops_center.security.rabbitmq_credentials import write_definitions
from ops_center.settings import OpsSettings


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="smartward mqtt", description="Thông tin xác thực MQTT / broker credentials"
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("credentials", help="password file + ACL from the registry")
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--rotate", action="store_true", help="new passwords for every account")
    c.add_argument("--revoke", action="append", default=[], metavar="GATEWAY", help="leave a gateway out")
    c.add_argument("--ingest-workers", type=int, default=DEFAULT_INGEST_WORKERS, metavar="N",
                   help="tài khoản ingest, ingest-2 … ingest-N / one account per ingest worker "
                        f"(default {DEFAULT_INGEST_WORKERS})")
    args = p.parse_args(list(argv))
    settings = OpsSettings(environment="local")
    try:
        registry = load_registry(settings.registry)
        generated = generate(registry, args.out, rotate=args.rotate, revoke=args.revoke,
                             ingest_workers=args.ingest_workers)
        rabbit = write_definitions(registry, generated.accounts, args.out)
    except (RegistryError, ValueError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{len(generated.accounts)} tài khoản / accounts -> {args.out}")
    print(f"  conf: {args.out / CONF_FILE}")
    print(f"  mật khẩu / passwords: {args.out / CREDENTIALS_FILE} (0600)")
    print(f"  RabbitMQ: {rabbit} (rabbitmqctl import_definitions {rabbit})")
    if generated.revoked:
        print(f"  thu hồi / revoked: {', '.join(generated.revoked)}")
        print("  RabbitMQ: rabbitmqctl delete_user " + " ; rabbitmqctl delete_user ".join(generated.revoked))
    return 0
