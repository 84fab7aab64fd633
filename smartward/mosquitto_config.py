"""The shipped Mosquitto configuration (deploy/mosquitto/smartward.conf) rendered for a private
broker: one loopback listener on a free port, a data directory and a log of its own.

One rendering for every private broker the project starts: the one-process stack and the
benchmarks (smartward/stack_broker.py, bench/gateways_env.py) and the test servers
(tests/servers/mosquitto.py). Text in, text out: the callers read the template and write the
result.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from pathlib import Path

HOST = "127.0.0.1"
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "smartward.conf"
# The shipped authentication (the gateway accounts of `smartward mqtt credentials`).
_AUTH_KEYS = ("password_file", "acl_file", "use_username_as_clientid")


def render_mosquitto_config(
    template: str,
    *,
    port: int,
    data_dir: Path,
    log_dest: str,
    overrides: Mapping[str, str | None] | None = None,
    credentials: Path | None = None,
) -> str:
    """The shipped configuration with a listener on ``HOST:port``, ``data_dir`` for persistence
    and ``log_dest`` (a Mosquitto ``log_dest`` value: ``file PATH``, ``stdout``).

    ``credentials``: a directory written by ``smartward mqtt credentials``, whose password file
    and ACL replace the shipped paths (the broker then runs its shipped authentication); None
    opens the private loopback broker to anonymous clients (one run, no gateway accounts to
    generate). ``overrides`` maps a directive to a new value, or to None to remove it (its
    default then applies); directives not in the template are appended.
    """
    pending: dict[str, str | None] = {}
    if credentials is None:
        pending["allow_anonymous"] = "true"
        pending.update(dict.fromkeys(_AUTH_KEYS))
    else:
        pending.update({"password_file": str((credentials / "passwd").resolve()),
                        "acl_file": str((credentials / "acl").resolve())})
    pending.update(overrides or {})
    replaced: set[str] = set()
    out: list[str] = []
    for line in template.splitlines():
        words = line.split()
        key = words[0] if words and not words[0].startswith("#") else None
        if key == "listener":
            out.append(f"listener {port} {HOST}")
        elif key == "persistence_location":
            out.append(f"persistence_location {data_dir}/")
        elif key in ("log_dest", "user"):
            continue
        elif key in pending:
            # A directive that may repeat (log_type) is replaced once, its other lines dropped.
            if key not in replaced and pending[key] is not None:
                out.append(f"{key} {pending[key]}")
                replaced.add(key)
        else:
            out.append(line)
    out += [f"{k} {v}" for k, v in pending.items() if v is not None and k not in replaced]
    # As root Mosquitto would switch to the `mosquitto` user, which cannot write our directory
    # (not as root, `user` is ignored).
    out += [f"log_dest {log_dest}", f"user {getpass.getuser()}"]
    return "\n".join(out) + "\n"
