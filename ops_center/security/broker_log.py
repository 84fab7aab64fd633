"""Broker-side security events from the Mosquitto log (docs/reliability.md S1/S2).

MQTT 3.1.1 PUBACKs a publish the ACL denied (MQTT 5 answers reason 0x87 but clients rarely
look), and the ingest never sees it: the broker's log is the only witness. This module
tails that log and yields :class:`SecurityEventRecord`\\ s; the composition root stores
them (``insert_security_event``) and publishes them on the change feed.

Lines understood (Mosquitto 2.0, ``connection_messages true``):

- ``New connection from IP:PORT on port N.`` — remembered, to give the next refusal an address;
- ``Client ID disconnected, not authorised.`` — a refused CONNECT: anonymous, unknown user,
  wrong password or revoked gateway (``<unknown>`` when the broker had no client id yet);
- ``Outgoing messages are being dropped for client ID.`` (notice) — the broker's queue for a
  subscriber is full (docs/reliability.md R3): a ``queue_drop`` event, not tied to a site;
- ``Client ID disconnected due to oversize packet.`` — a packet over ``max_packet_size``
  (deploy/mosquitto): the broker drops it and the connection, and nobody else hears of it; an
  ``oversize_packet`` event (the exact line of Mosquitto 2.0.11, measured with the shipped
  configuration over MQTT 5 and 3.1.1: tests/integration/test_security_broker_oversize.py);
- ``Denied PUBLISH from ID (d0, q1, r0, m1, 'TOPIC', ... (N bytes))`` — an ACL denial. The
  broker writes it at **debug** level only: the broker needs ``log_type debug`` for these
  (or ``log_type all``); without it, only refused connections are seen.

Timestamps: ``log_timestamp_format %Y-%m-%dT%H:%M:%S`` (the shipped conf; broker local time)
or Mosquitto's default epoch seconds.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from contract.registry import Registry
from ops_center.adapters.records import SecurityEventRecord

_TS: Final = r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}|\d{9,11})"
_NEW: Final = re.compile(
    _TS + r": New connection from (?P<ip>\[[^\]]+\]|[^\s:]+):(?P<port>\d+) on port \d+\."
)
_REFUSED: Final = re.compile(_TS + r": Client (?P<client>\S+) disconnected, not authori[sz]ed\.")
_DENIED_PUB: Final = re.compile(
    _TS + r": Denied PUBLISH from (?P<client>\S+) \(d\d, q\d, r(?P<retain>\d), m\d+, '(?P<topic>[^']*)'"
)
_DROPPING: Final = re.compile(_TS + r": Outgoing messages are being dropped for client (?P<client>\S+?)\.?$")
_OVERSIZE: Final = re.compile(_TS + r": Client (?P<client>\S+) disconnected due to oversize packet\.")
_TOPIC: Final = re.compile(r"^smartward/v1/(?P<site>[^/]+)/(?P<gateway>[^/]+)/")


def _time(text: str) -> datetime:
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    return datetime.fromisoformat(text).astimezone(UTC)  # naive: the broker's local time


@dataclass
class BrokerLogParser:
    """Line by line; remembers the last connection's address for the refusal that follows."""

    registry: Registry
    last_ip: str | None = None

    def parse(self, line: str) -> SecurityEventRecord | None:
        line = line.rstrip("\r\n")
        m = _NEW.match(line)
        if m is not None:
            self.last_ip = m["ip"].strip("[]")
            return None
        m = _REFUSED.match(line)
        if m is not None:
            client = None if m["client"] == "<unknown>" else m["client"]
            site = self.registry.site_of(client) if client else None
            detail = (
                "kết nối bị từ chối (ẩn danh, sai mật khẩu hoặc đã thu hồi) / "
                "connection refused: anonymous, unknown user, wrong password or revoked"
            )
            return SecurityEventRecord(
                at=_time(m["ts"]),
                source="broker",
                kind="connect_refused",
                detail=detail,
                site=site,
                gateway=client if site else None,
                client=client,
                ip=self.last_ip,
            )
        m = _DROPPING.match(line)
        if m is not None:
            # docs/reliability.md R3: the broker's queue for an absent or slow subscriber is full and
            # it drops, silently to everyone else. Nothing is lost (the edges re-send what the
            # ack watermark does not cover) but operators must know the queue is too small.
            client = m["client"]
            return SecurityEventRecord(
                at=_time(m["ts"]),
                source="broker",
                kind="queue_drop",
                detail=(f"broker bỏ tin gửi cho '{client}' vì hàng đợi đầy (cổng biên sẽ gửi lại) / "
                        f"the broker is dropping messages for '{client}': its queue is full "
                        "(edge agents re-send what is not acknowledged)"),
                client=client,
            )
        m = _OVERSIZE.match(line)
        if m is not None:
            client = None if m["client"] == "<unknown>" else m["client"]
            site = self.registry.site_of(client) if client else None
            return SecurityEventRecord(
                at=_time(m["ts"]),
                source="broker",
                kind="oversize_packet",
                detail=("broker bỏ một gói tin quá cỡ và ngắt kết nối / the broker dropped an oversize "
                        f"packet from '{client or '<unknown>'}' (over max_packet_size) and disconnected it"),
                site=site,
                gateway=client if site else None,
                client=client,
                ip=self.last_ip if client is None else None,
            )
        m = _DENIED_PUB.match(line)
        if m is not None:
            client, topic = m["client"], m["topic"]
            site = self.registry.site_of(client)
            claimed = _TOPIC.match(topic)
            claim = f" (claims {claimed['site']}/{claimed['gateway']})" if claimed else ""
            return SecurityEventRecord(
                at=_time(m["ts"]),
                source="broker",
                kind="publish_denied",
                detail=f"ACL từ chối gửi / ACL denied publish to '{topic[:200]}'{claim}",
                site=site,
                gateway=client if site else None,
                client=client,
                ip=None,
            )
        return None


class BrokerLogTail:
    """Follows a Mosquitto log file across rotation (a new inode, or a truncated file)."""

    def __init__(
        self, path: str | Path, registry: Registry, *, from_start: bool = False, poll_s: float = 0.5
    ) -> None:
        self.path = Path(path)
        self.parser = BrokerLogParser(registry)
        self.from_start = from_start
        self.poll_s = poll_s

    def events(self, stop: threading.Event) -> Iterator[SecurityEventRecord]:
        """Yield events until ``stop`` is set. A missing file is waited for."""
        handle = None
        inode: int | None = None
        pending = ""
        first = True
        try:
            while not stop.is_set():
                if handle is None:
                    try:
                        handle = self.path.open("r", encoding="utf-8", errors="replace")
                    except FileNotFoundError:
                        stop.wait(self.poll_s)
                        continue
                    inode = os.fstat(handle.fileno()).st_ino
                    if first and not self.from_start:
                        handle.seek(0, os.SEEK_END)
                    first = False
                chunk = handle.readline()
                if chunk:
                    pending += chunk
                    if not pending.endswith("\n"):
                        continue  # a line still being written
                    event = self.parser.parse(pending)
                    pending = ""
                    if event is not None:
                        yield event
                    continue
                # End of file: rotated or truncated?
                try:
                    st = self.path.stat()
                except FileNotFoundError:
                    st = None
                if st is None or st.st_ino != inode or st.st_size < handle.tell():
                    handle.close()
                    handle, pending = None, ""
                    continue
                # No inotify in the standard library; waiting on the stop event bounds the delay.
                stop.wait(self.poll_s)
        finally:
            if handle is not None:
                handle.close()
