"""The partition tool of H1b (tests/servers/netns.py): a cut host is silent to the root namespace
and to its peers, a heal restores both, and closing the LAN leaves no namespace behind."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.servers.netns import Host, Lan
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PORT = 7  # inside the host's own namespace: no other listener there
# Answers one line per connection, forever (killed with its namespace).
SERVER = (f"import socket\ns=socket.create_server(('0.0.0.0',{PORT}))\n"
          "while True:\n c,_=s.accept(); c.sendall(b'ok'); c.close()\n")


def answers(address: str, *, via: Host | None = None, timeout_s: float = 1.0) -> bool:
    """Whether ``address``:PORT answers, from the root namespace or from host ``via``."""
    if via is not None:
        code = (f"import socket\ntry:\n c=socket.create_connection(('{address}',{PORT}),{timeout_s})\n"
                " print(c.recv(2).decode())\nexcept OSError:\n print('no')\n")
        out = subprocess.run([*via.exec_prefix, sys.executable, "-c", code], capture_output=True,
                             text=True, timeout=30, check=False).stdout
        return out.strip() == "ok"
    try:
        with socket.create_connection((address, PORT), timeout_s) as c:
            return c.recv(2) == b"ok"
    except OSError:
        return False


def test_a_cut_host_is_silent_to_everyone_until_healed_and_close_removes_everything() -> None:
    lan = Lan()
    server: subprocess.Popen[bytes] | None = None
    try:
        a, b = lan.add_host(), lan.add_host()
        server = subprocess.Popen([*a.exec_prefix, sys.executable, "-c", SERVER],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: answers(a.address), timeout_s=20, what="the server in host a")
        assert answers(a.address, via=b)
        a.cut()
        assert not answers(a.address) and not answers(a.address, via=b)
        a.heal()
        assert "DROP" not in a.rules()
        wait_until(lambda: answers(a.address), timeout_s=20, what="host a after the heal")
        assert answers(a.address, via=b)
    finally:
        names = [lan.hub, *(h.ns for h in lan.hosts)]
        lan.close()  # kills the server with its namespace
        if server is not None:
            server.wait(10)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(n in listed for n in names), listed
    assert lan.root_if not in subprocess.run(["ip", "link"], capture_output=True, text=True,
                                            check=True).stdout
