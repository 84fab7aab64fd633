"""Client ids of the long-lived service links (no paho here: the CLIs' ``--help`` imports it)."""

from __future__ import annotations

import socket


def host_client_id(role: str) -> str:
    """The default client id of a service's link: stable across restarts, so a restarted
    process resumes its persistent session instead of leaving one behind (one such process per
    host and role; a setting names others)."""
    return f"smartward-{role}-{socket.gethostname()}"
