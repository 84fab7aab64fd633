"""A TCP proxy for fault tests: a gateway's link to the broker as a bad mobile signal.

Modes (switched at any time, applied to open connections too):
- ``pass``: bytes flow both ways;
- ``blackhole``: connections stay open but nothing moves either way, and new ones are accepted
  and then ignored — a link without signal, found out only by keepalives and timeouts; when
  the signal comes back, the connections that lived through it are closed (dead links);
- ``reset``: every open connection is closed at once and new ones are closed on accept.

One thread per direction per connection; bounded by the number of connections a test makes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Literal

Mode = Literal["pass", "blackhole", "reset"]
_CHUNK = 65536
_TICK_S = 0.05  # how often a pump re-checks the mode while nothing arrives


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._mode: Mode = "pass"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        with self._lock:
            # Back from a blackhole, the connections that lived through it are dead links (both
            # ends have timed out by now or will): close them rather than resume a stale stream.
            dead = mode == "reset" or (self._mode == "blackhole" and mode == "pass")
            self._mode = mode
            doomed = list(self._open) if dead else []
        for s in doomed:
            self._close(s)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            doomed = list(self._open)
        for s in doomed:
            self._close(s)
        self._thread.join(5)

    def _close(self, s: socket.socket) -> None:
        with self._lock:
            self._open.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._mode == "reset":
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()  # the broker is down: the gateway sees a refused link
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
                self.connections += 1
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                if self._mode == "blackhole":
                    self._closed.wait(_TICK_S)  # hold the bytes where they are: nothing moves
                    if src not in self._open:
                        return
                    continue
                ready, _, _ = select.select([src], [], [], _TICK_S)
                if not ready:
                    if src not in self._open:
                        return
                    continue
                data = src.recv(_CHUNK)
                if not data or self._mode == "reset":
                    break
                dst.sendall(data)  # read while passing: delivered, as TCP would
        except (OSError, ValueError):
            pass  # closed under us (by the other pump or a mode switch: fd -1): end this connection
        finally:
            self._close(src)
            self._close(dst)
