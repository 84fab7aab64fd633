"""VictoriaMetrics as the test server of the InfluxDB mirror.

No InfluxDB 2 server can be installed here; Debian's `victoria-metrics` accepts the
influxdb-client's writes at `/api/v2/write` (org, bucket and token are ignored), and what it
stored is read back with `/api/v1/export`. A line `readings,sensor=s1 value=41.5 <ts>`
becomes the series `readings_value{sensor="s1"}` (measurement, "_", field; tags as labels),
with millisecond timestamps.

Fixtures:
    victoria       (session)  VictoriaServer; give the client `url=victoria.url`
    make_victoria  (function) factory of private servers, for tests that stop or kill theirs
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers._proc import (
    ServerError,
    WaitTimeout,
    free_port,
    kill9,
    missing_server,
    private_servers,
    start_process,
    stop_process,
    wait_until,
)

BINARY = Path("/usr/bin/victoria-metrics")
HOST = "127.0.0.1"
MATCH_ALL = '{__name__!=""}'


@dataclass(frozen=True)
class ExportedSeries:
    """One series from /api/v1/export: its labels (with `__name__`), values, times in ms."""

    labels: dict[str, str]
    values: list[float]
    timestamps_ms: list[int]

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")


class VictoriaServer:
    """One VictoriaMetrics process with its own storage directory.

    Attributes: `url` (base URL: influxdb-client's `url=`), `write_url`
    (`{url}/api/v2/write`), `export_url`, `host`, `port`, `storage_dir`, `log_path`.
    """

    def __init__(self, *, name: str, host_dir: Path, port: int, keep_logs_in: Path | None = None) -> None:
        self.name = name
        self.dir = host_dir
        self.host = HOST
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.write_url = f"{self.url}/api/v2/write"
        self.export_url = f"{self.url}/api/v1/export"
        self.storage_dir = host_dir / "storage"
        self.log_path = host_dir / "server.log"
        self._keep_logs_in = keep_logs_in
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 30.0) -> None:
        """Start (on the same port and storage as before) and wait until /health says OK."""
        if self.is_running():
            return
        argv = [
            str(BINARY),
            f"-httpListenAddr={HOST}:{self.port}",
            f"-storageDataPath={self.storage_dir}",
            # Simulated readings may be old: the default retention (1 month) would drop them.
            "-retentionPeriod=100y",
            # Its caches default to 60 % of RAM; a test server shares the machine.
            "-memory.allowedBytes=256MB",
        ]
        self._proc = start_process(argv, self.log_path, cwd=self.dir)
        proc = self._proc
        wait_until(
            self._healthy,
            timeout_s=timeout_s,
            what=f"{self.name}: victoria-metrics /health",
            alive=lambda: proc.poll() is None,
            log_path=self.log_path,
        )

    def stop(self, *, timeout_s: float = 15.0) -> None:
        """A clean shutdown (SIGTERM): buffered rows are written to disk first."""
        if self._proc is not None:
            stop_process(self._proc, timeout_s=timeout_s)
            self._proc = None

    def kill9(self) -> None:
        """A crash: rows still in memory (the last second or so) are lost."""
        if self._proc is not None:
            kill9(self._proc)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        try:
            self.kill9()
        finally:
            if self._keep_logs_in is not None and self.log_path.exists():
                self._keep_logs_in.mkdir(parents=True, exist_ok=True)
                kept = self._keep_logs_in / f"{self.name}-{self.port}.log"
                shutil.copyfile(self.log_path, kept)
                self.log_path = kept
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- reading back ------------------------------------------------------------------

    def flush(self) -> None:
        """Make rows written so far searchable (/internal/force_flush). A series seen for
        the first time still takes about a second to be found: use wait_for_points."""
        self._get("/internal/force_flush")

    def export(self, *matches: str, start: str | None = None, end: str | None = None) -> list[ExportedSeries]:
        """Series matching any of the selectors (default: all), as stored now."""
        self.flush()
        params: list[tuple[str, str]] = [("match[]", m) for m in (matches or (MATCH_ALL,))]
        if start is not None:
            params.append(("start", start))
        if end is not None:
            params.append(("end", end))
        body = self._get("/api/v1/export?" + urllib.parse.urlencode(params))
        series = []
        for line in body.splitlines():
            if line.strip():
                item = json.loads(line)
                series.append(
                    ExportedSeries(
                        labels=dict(item["metric"]),
                        values=[float(v) for v in item["values"]],
                        timestamps_ms=[int(t) for t in item["timestamps"]],
                    )
                )
        return series

    def wait_for_points(self, *matches: str, count: int, timeout_s: float = 10.0) -> list[ExportedSeries]:
        """Export once at least `count` points match; ServerError with what was found at the
        deadline. A server cannot announce "your write is searchable", hence the deadline."""
        found: list[ExportedSeries] = []

        def enough() -> bool:
            nonlocal found
            found = self.export(*matches)
            return sum(len(s.values) for s in found) >= count

        try:
            wait_until(enough, timeout_s=timeout_s, what=f"{self.name}: {count} points for {matches}")
        except WaitTimeout as exc:
            points = sum(len(s.values) for s in found)
            raise ServerError(f"{exc}; found {points} points in {len(found)} series") from exc
        return found

    def delete_series(self, *matches: str) -> None:
        """Delete the matching series (default: all), e.g. between tests sharing the server."""
        params = urllib.parse.urlencode([("match[]", m) for m in (matches or (MATCH_ALL,))])
        self._get("/api/v1/admin/tsdb/delete_series?" + params)

    # --- internals ---------------------------------------------------------------------

    def _healthy(self) -> bool:
        try:
            return self._get("/health", timeout_s=1.0).strip() == "OK"
        except (OSError, ServerError):
            return False

    def _get(self, path: str, *, timeout_s: float = 10.0) -> str:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout_s) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ServerError(f"{self.name}: GET {path}: HTTP {exc.code}: {detail}") from exc

    def __repr__(self) -> str:
        return f"<VictoriaServer {self.name} {self.url}>"


def start_victoria(name: str, keep_logs_in: Path | None) -> VictoriaServer:
    if not BINARY.exists():
        missing_server("VictoriaMetrics", f"{BINARY} not found (apt-get install victoria-metrics)")
    server = VictoriaServer(
        name=name,
        host_dir=Path(tempfile.mkdtemp(prefix=f"smartward-{name}-")),
        port=free_port(),
        keep_logs_in=keep_logs_in,
    )
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaServer]:
    """A VictoriaMetrics server shared by the session: tests write under their own
    measurement or tags (or delete_series() first). A test that stops it must start it again."""
    server = start_victoria("victoria", tmp_path_factory.mktemp("victoria-logs"))
    yield server
    server.close()


@pytest.fixture
def make_victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], VictoriaServer]]:
    """Factory of private VictoriaMetrics servers, removed when the test ends."""
    yield from private_servers(tmp_path_factory, "victoria", start_victoria)

