"""systemd's notify protocol: ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1`` over the datagram
socket systemd names in ``NOTIFY_SOCKET``.

Hand-written (a dozen lines) rather than a dependency: the protocol is one datagram, and the
Python bindings (``systemd-python``) need libsystemd headers to build on the gateway.
Without ``NOTIFY_SOCKET`` (not run by systemd) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` to systemd; False when not under systemd or the send failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        logger.warning("sd_notify %s failed: %s", state.split("=", 1)[0], exc)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of the watchdog period systemd asks for (``WATCHDOG_USEC``), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
