"""Broker credentials from the registry: a Mosquitto password file, an ACL and a conf snippet.

- Password file: Mosquitto 2's PBKDF2-SHA512 format, ``user:$7$<iterations>$<salt b64>$<hash b64>``
  (what ``mosquitto_passwd`` writes), computed here so no broker tools are needed.
- ACL: one ``user`` block per gateway with its own topics only (docs/contract.md: a gateway
  publishes only under its own ``{site}/{gateway}`` and reads only its own ``ack`` and
  ``cmd``). Written per user, never with ``pattern``/``%c``: the client id is chosen by the
  client (docs/reliability.md: ACL on the user name + ``use_username_as_clientid true``) and the
  site binding comes from the registry, not from anything the client says.
- Service accounts with what each one subscribes to and publishes: ``ingest`` (and
  ``ingest-2`` … ``ingest-N`` for more workers on the shared subscription), ``ops`` (the ops
  service) and ``ops-api`` (the API's command link). One account per process: with
  ``use_username_as_clientid`` two processes on one account would take each other's session
  over, again and again.
- ``credentials.txt`` (mode 0600): user → password, to provision gateways and services.
  Re-running keeps the passwords already there (``rotate`` replaces them); a revoked
  gateway is left out of both files, so the broker refuses it after a reload.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from contract.registry import Registry

ROOT: Final = "smartward/v1"
PBKDF2_ITERATIONS: Final = 10_000  # mosquitto_passwd uses 101; the broker reads the count from the file
SERVICE_ACCOUNTS: Final = ("ingest", "ops", "ops-api")
DEFAULT_INGEST_WORKERS: Final = 2
PASSWD_FILE: Final = "passwd"
ACL_FILE: Final = "acl"
CONF_FILE: Final = "smartward-auth.conf"
CREDENTIALS_FILE: Final = "credentials.txt"


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_mosquitto_hash(encoded: str, password: str) -> bool:
    _, kind, iterations, salt, digest = encoded.split("$")
    if kind != "7":
        return False
    calc = hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), base64.b64decode(salt), int(iterations), 64
    )
    return secrets.compare_digest(calc, base64.b64decode(digest))


def gateway_acl(site: str, gateway: str) -> list[str]:
    base = f"{ROOT}/{site}/{gateway}"
    return [
        f"user {gateway}",
        f"topic write {base}/telemetry",
        f"topic write {base}/senml",  # SenML (RFC 8428) from third-party devices behind it
        # Retained status and the Last Will (the broker checks the will topic at CONNECT).
        f"topic write {base}/status",
        f"topic write {base}/cmd/result",
        f"topic read {base}/ack",
        f"topic read {base}/cmd",
    ]


def service_accounts(ingest_workers: int = DEFAULT_INGEST_WORKERS) -> tuple[str, ...]:
    """``ingest``, ``ingest-2`` … ``ingest-N``, ``ops``, ``ops-api``."""
    if ingest_workers < 1:
        raise ValueError("at least one ingest worker account")
    extra = tuple(f"ingest-{n}" for n in range(2, ingest_workers + 1))
    return ("ingest", *extra, "ops", "ops-api")


def service_acl(account: str) -> list[str]:
    role = "ingest" if account == "ingest" or account.startswith("ingest-") else account
    if role == "ingest":
        lines = [
            f"user {account}",
            f"topic read {ROOT}/+/+/telemetry",
            f"topic read {ROOT}/+/+/status",
            f"topic read {ROOT}/+/+/senml",
            f"topic read $share/ingest/{ROOT}/+/+/telemetry",
            f"topic read $share/ingest/{ROOT}/+/+/senml",
            f"topic write {ROOT}/+/+/ack",
        ]
    elif role == "ops":
        lines = [
            "user ops",
            f"topic read {ROOT}/+/+/telemetry",
            f"topic read {ROOT}/+/+/senml",
            f"topic read {ROOT}/+/+/status",
            f"topic read {ROOT}/+/+/cmd/result",
            f"topic read $share/ops/{ROOT}/+/+/telemetry",
            f"topic read $share/ops/{ROOT}/+/+/senml",
            f"topic write {ROOT}/+/+/cmd",
        ]
    elif role == "ops-api":
        lines = [
            "user ops-api",
            f"topic write {ROOT}/+/+/cmd",
            f"topic read {ROOT}/+/+/cmd/result",
            f"topic read $share/ops-api/{ROOT}/+/+/cmd/result",
        ]
    else:
        raise ValueError(f"unknown service account {account!r}")
    return lines


@dataclass(frozen=True, slots=True)
class Generated:
    directory: Path
    accounts: dict[str, str]  # user -> password
    revoked: tuple[str, ...]


def read_credentials(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#") and ":" in line:
            user, _, password = line.partition(":")
            out[user.strip()] = password.strip()
    return out


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def generate(
    registry: Registry,
    out: Path,
    *,
    rotate: bool = False,
    revoke: Iterable[str] = (),
    ingest_workers: int = DEFAULT_INGEST_WORKERS,
    broker_user_readable: bool = True,
) -> Generated:
    """Write passwd, acl, smartward-auth.conf and credentials.txt into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    revoked = tuple(sorted(set(revoke)))
    previous = {} if rotate else read_credentials(out / CREDENTIALS_FILE)
    accounts: dict[str, str] = {}
    acl: list[str] = [
        "# Generated by `smartward mqtt credentials` from the registry. Do not edit: re-run it.",
        "",
    ]
    services = service_accounts(ingest_workers)
    for account in services:
        accounts[account] = previous.get(account) or secrets.token_urlsafe(24)
        acl += [*service_acl(account), ""]
    for site, gw in registry.iter_gateways():
        if gw.id in revoked:
            continue
        if gw.id in services:
            raise ValueError(f"gateway id {gw.id!r} clashes with a service account")
        accounts[gw.id] = previous.get(gw.id) or secrets.token_urlsafe(24)
        acl += [*gateway_acl(site.id, gw.id), ""]
    passwd = "".join(f"{user}:{mosquitto_hash(pw)}\n" for user, pw in accounts.items())
    _write_private(out / PASSWD_FILE, passwd)
    (out / ACL_FILE).write_text("\n".join(acl), "utf-8")
    # The broker runs as its own user: it must read the password file (0640 + group is the
    # packaging's job; we leave it 0644 only when asked, e.g. for tests run as root).
    if broker_user_readable:
        os.chmod(out / PASSWD_FILE, 0o644)
    conf = "\n".join(
        [
            "# smartward: authentication and ACL (generated by `smartward mqtt credentials`).",
            "# Per-listener settings off: these apply to every listener.",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {(out / PASSWD_FILE).resolve()}",
            f"acl_file {(out / ACL_FILE).resolve()}",
            "# `%c` in an ACL is chosen by the client: bind the client id to the user name instead.",
            "use_username_as_clientid true",
            "",
        ]
    )
    (out / CONF_FILE).write_text(conf, "utf-8")
    creds = (
        "# user:password — keep secret (mode 0600). Edge: SMARTWARD_MQTT_URL=mqtt://<user>:<password>@host\n"
    )
    creds += "".join(f"{user}:{pw}\n" for user, pw in accounts.items())
    _write_private(out / CREDENTIALS_FILE, creds)
    return Generated(out, accounts, revoked)
