"""Which address a request comes from, behind reverse proxies the operator trusts.

``SMARTWARD_TRUSTED_PROXIES`` lists them (comma-separated IPs or CIDRs; none by default). The
``X-Forwarded-For`` header is read only when the TCP peer is one of them, and then from the
right: each proxy appends the address it received the request from, so the rightmost entry that
is not itself a trusted proxy is the client (anything left of it was written by the client and
proves nothing). Without trusted proxies, the peer is the client whatever the header says: any
local process (or a client sending the header itself) could otherwise pick the address the
per-IP login limit counts against (issue #10).

The servers we start (``smartward ops serve``, ``smartward demo``) turn uvicorn's own
forwarded-header handling off (it trusts 127.0.0.1 by default), so this is the only place that
reads the header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyConfigError(ValueError):
    """``SMARTWARD_TRUSTED_PROXIES`` holds something that is not an IP address or network."""


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" (RFC 7239 style)
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:1234"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> TrustedProxies:
        items = text.split(",") if isinstance(text, str) else list(text)
        networks: list[Network] = []
        for raw in items:
            item = raw.strip()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ProxyConfigError(f"SMARTWARD_TRUSTED_PROXIES: {item!r} is not an IP or CIDR") from exc
        return cls(tuple(networks))

    def trusts(self, host: str | None) -> bool:
        if not self.networks or host is None:
            return False
        addr = _address(host)
        return addr is not None and any(addr in n for n in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client's address: ``peer`` unless it is a trusted proxy, else the rightmost
        untrusted address of the ``X-Forwarded-For`` headers (all of them, in order). A hop
        that is not an address ends the walk at the last trusted one."""
        if not self.trusts(peer):
            return peer
        hops = [h.strip() for header in forwarded_for for h in header.split(",") if h.strip()]
        client = peer
        for hop in reversed(hops):
            addr = _address(hop)
            if addr is None:
                return client
            client = str(addr)
            if not self.trusts(client):
                return client
        return client
