"""The API under test of ``smartward bench api``: ``ops_center.api.asgi`` in a uvicorn subprocess."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.measure import free_port


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class ServerProcess:
    """``uvicorn --factory ops_center.api.asgi:app_from_env`` on a free port, with uvloop and
    httptools when installed; ``with`` starts it and waits for ``/readyz``."""

    def __init__(
        self, db_url: str, *, workers: int = 1, registry: Path | None = None, pool_max: int = 8
    ) -> None:
        self.db_url = db_url
        self.workers = workers
        self.registry = registry
        self.pool_max = pool_max
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret_key = secrets.token_urlsafe(48)  # the bench mints its screens' tokens with it
        self.loop = "uvloop" if _installed("uvloop") else "asyncio"
        self.http = "httptools" if _installed("httptools") else "h11"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def __enter__(self) -> ServerProcess:
        env = dict(os.environ)
        env.update(
            SMARTWARD_DB_URL=self.db_url,
            SMARTWARD_SECRET_KEY=self.secret_key,
            SMARTWARD_ENVIRONMENT="production",
            SMARTWARD_DB_POOL_MAX=str(self.pool_max),
        )
        if self.registry is not None:
            env["SMARTWARD_REGISTRY"] = str(self.registry)
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "ops_center.api.asgi:app_from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--loop",
            self.loop,
            "--http",
            self.http,
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "4096",
        ]
        self._proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        self._wait_ready(deadline=time.monotonic() + 30)
        return self

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        ready = 0
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"API server exited with {self._proc.returncode}")
                try:
                    # Every worker must be up: readiness answers from any one of them.
                    ready = ready + 1 if client.get(f"{self.url}/readyz").status_code == 200 else 0
                except httpx.HTTPError:
                    ready = 0
                if ready >= 4 * self.workers:
                    return
                time.sleep(0.25)  # a child process's port: no event to wait on
        raise RuntimeError("API server not ready within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
