"""Loopback ports for the servers and processes the tests start (docs/testing.md)."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()


class NoFreePort(RuntimeError):
    """The kernel kept handing out ports this session already used."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now, never the same one twice in this session.

    The kernel picks it (bind to port 0); the small race until the server binds it is
    accepted, and a server that loses it fails to start with a clear log.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise NoFreePort("no free TCP port found")


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
