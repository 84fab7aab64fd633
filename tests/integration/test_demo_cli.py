"""`smartward demo` as a newcomer runs it: a port already taken is a clear error, not a demo
that runs with no screen to look at."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def test_demo_stops_with_a_clear_error_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "smartward.cli", "demo", "--port", str(port), "--duration", "30"],
            capture_output=True, text=True, timeout=180, check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert run.returncode == 1, run.stderr[-2000:]
    assert f"API không mở được cổng 127.0.0.1:{port}" in run.stderr
    assert "Màn hình điều hành" not in run.stdout  # no address printed for a screen not there
