"""InfluxDB mirror, fed FROM THE SYSTEM OF RECORD with its own checkpoint (docs/reliability.md R8).

Why not write to InfluxDB from the MQTT path: influxdb-client's batching write API drops a
batch after its retries and reports it only to a callback (docs/reliability.md), and a mirror that
is down must never hold back or lose what the system of record has. So the mirror reads pages
of stored readings after its checkpoint, writes them with the SYNCHRONOUS write API, and moves
the checkpoint only after InfluxDB answered 2xx. A mirror that was down catches up from its
checkpoint; one that lost its data is replayed by resetting the checkpoint.

Failures:
- connection errors, 5xx, 429, and 401/403/404 (configuration: token, org, bucket) are
  transient: retry the same page with exponential backoff; nothing is skipped;
- 400/422 (point rejected) and 413 (too large): the page is split in halves until the points
  that are refused one by one are known; those are recorded (counted, logged, kept in
  ``rejected``) and skipped, the rest are written.

Schema (cardinality): one measurement per metric code (``pm25``, ``water_level_cm`` ...), tags
``site``, ``gateway``, ``sensor``, ``quality``, one float field ``value``, timestamp in ns.
A series is (metric, sensor, quality): the sensor fixes its gateway and site, so those tags add
no series, and quality takes few values per series in practice ("good" almost always). The city's
registry is ~100 sensors × ~5 metrics, i.e. hundreds of series, far below what any TSDB cares
about even at 100× growth. Not chosen: one measurement per sensor kind with metrics as fields
(the fields of one point must share tags and time, but quality differs per reading); reading
values or timestamps as tags (unbounded cardinality). In VictoriaMetrics a series appears as
``{metric}_value{site=...,gateway=...,sensor=...,quality=...}``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ingest.errors import IngestError, StoreUnavailable
from ingest.metrics import IngestMetrics
from ingest.settings import IngestSettings

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_REJECTED_KEEP = 1000


class MirrorUnavailable(IngestError):
    """Transient: the mirror cannot take the points now. Retry the same page later."""


class MirrorRejected(IngestError):
    """Permanent for these points: the mirror refused them (4xx)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MirrorRow:
    time: datetime
    site: str
    gateway: str
    sensor: str
    metric: str
    value: float
    quality: str


@dataclass(frozen=True, slots=True)
class MirrorPage:
    rows: list[MirrorRow]
    checkpoint: int  # the position after ``rows``; equal to the input when there is nothing new


class MirrorSource(Protocol):
    """What the mirror needs from the system of record (SqliteStore / PostgresStore).

    The checkpoint is an opaque, increasing integer — e.g. the id of the last mirrored
    ``ingest_batches`` row — kept per mirror ``name`` in a ``mirror_checkpoints`` table.
    """

    def read_since(self, checkpoint: int, limit: int) -> MirrorPage:
        """Readings of stored batches after ``checkpoint``, in order, whole batches, about
        ``limit`` rows (at least one batch). Must never return a row beyond one that may
        still commit: with concurrent writers (PostgreSQL) a serial id can become visible
        after a higher one, so stop below the oldest running writer transaction
        (``pg_snapshot_xmin(pg_current_snapshot())``) or read only rows a few seconds old."""
        ...

    def mirror_checkpoint(self, name: str) -> int:
        """The saved checkpoint of mirror ``name`` (0 when none)."""
        ...

    def save_mirror_checkpoint(self, name: str, checkpoint: int) -> None: ...


class PointWriter(Protocol):
    def write(self, lines: Sequence[str]) -> None:
        """Write line-protocol points. Raises MirrorUnavailable or MirrorRejected."""
        ...

    def close(self) -> None: ...


# --- line protocol ------------------------------------------------------------------------


def _esc_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _esc_tag(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def to_line(row: MirrorRow) -> str:
    ns = (row.time - _EPOCH) // _US * 1000
    return (
        f"{_esc_measurement(row.metric)},gateway={_esc_tag(row.gateway)},quality={_esc_tag(row.quality)},"
        f"sensor={_esc_tag(row.sensor)},site={_esc_tag(row.site)} value={float(row.value)!r} {ns}"
    )


# --- influxdb-client adapter --------------------------------------------------------------


class InfluxWriter:
    """influxdb-client with the SYNCHRONOUS write API and its own retries off (we retry)."""

    def __init__(self, url: str, token: str, org: str, bucket: str, *, timeout_ms: int = 10_000) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms, retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._org = org
        self._bucket = bucket

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.domain.write_precision import WritePrecision
        from urllib3.exceptions import HTTPError

        try:
            self._api.write(bucket=self._bucket, org=self._org, record="\n".join(lines),
                            write_precision=WritePrecision.NS)  # type: ignore[arg-type]
        except InfluxDBError as exc:
            status = getattr(exc, "status", None)
            if status is None and getattr(exc, "response", None) is not None:
                status = getattr(exc.response, "status", None)
            detail = str(getattr(exc, "message", "") or exc)[:300]
            if status in (400, 413, 422):
                raise MirrorRejected(int(status), detail) from exc
            raise MirrorUnavailable(f"HTTP {status}: {detail}") from exc
        except (HTTPError, OSError) as exc:
            raise MirrorUnavailable(str(exc)) from exc

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


# --- the mirror ---------------------------------------------------------------------------


class InfluxMirror:
    def __init__(
        self,
        source: MirrorSource,
        writer: PointWriter,
        *,
        name: str = "influx",
        batch_rows: int = 5000,
        metrics: IngestMetrics | None = None,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 30.0,
        idle_s: float = 1.0,
    ) -> None:
        self.source = source
        self.writer = writer
        self.name = name
        self.batch_rows = batch_rows
        self.metrics = metrics if metrics is not None else IngestMetrics()
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.idle_s = idle_s
        self.rejected: collections.deque[tuple[str, str]] = collections.deque(maxlen=_REJECTED_KEEP)
        self.rejected_total = 0
        self.written_total = 0
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: IngestSettings, source: Any,
                      metrics: IngestMetrics | None = None) -> InfluxMirror:
        if not settings.influx_url:
            raise IngestError("SMARTWARD_INFLUX_URL is not set")
        token = settings.influx_token.get_secret_value() if settings.influx_token else ""
        writer = InfluxWriter(settings.influx_url, token, settings.influx_org, settings.influx_bucket)
        src: MirrorSource = source
        return cls(src, writer, batch_rows=settings.mirror_batch_rows, metrics=metrics)

    def sync_once(self) -> int:
        """Mirror one page. Returns the rows handled (written or rejected); 0 when caught up.
        Raises MirrorUnavailable / StoreUnavailable with the checkpoint unchanged."""
        checkpoint = self.source.mirror_checkpoint(self.name)
        page = self.source.read_since(checkpoint, self.batch_rows)
        if not page.rows:
            if page.checkpoint != checkpoint:  # e.g. only dead-letter batches in between
                self.source.save_mirror_checkpoint(self.name, page.checkpoint)
            return 0
        self._write_all([to_line(r) for r in page.rows])
        self.source.save_mirror_checkpoint(self.name, page.checkpoint)
        return len(page.rows)

    def _write_all(self, lines: list[str]) -> None:
        try:
            self.writer.write(lines)
        except MirrorRejected as exc:
            if len(lines) == 1:
                self.rejected.append((lines[0], str(exc)))
                self.rejected_total += 1
                self.metrics.mirror_rejected.inc()
                logger.warning("mirror %s refused a point (%s), skipped: %s", self.name, exc, lines[0][:200])
                return
            mid = len(lines) // 2
            self._write_all(lines[:mid])
            self._write_all(lines[mid:])
            return
        self.written_total += len(lines)
        self.metrics.mirror_points.inc(len(lines))

    def run(self, stop: threading.Event) -> None:
        """Mirror until ``stop``: pages back to back while behind, then every ``idle_s``."""
        delay = self.retry_initial_s
        failures = 0
        while not stop.is_set():
            try:
                n = self.sync_once()
            except (MirrorUnavailable, StoreUnavailable) as exc:
                failures += 1
                self.last_error = str(exc)
                self.metrics.mirror_errors.inc()
                (logger.warning if failures == 1 else logger.debug)(
                    "mirror %s behind (attempt %d, retry in %.1f s): %s", self.name, failures, delay, exc)
                stop.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            except Exception:  # the loop's top: count, log, keep the SoR unaffected
                self.metrics.loop_errors.labels("mirror").inc()
                logger.exception("mirror %s: unexpected error", self.name)
                stop.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            if failures:
                logger.info("mirror %s writing again after %d failed attempt(s)", self.name, failures)
            failures = 0
            self.last_error = None
            delay = self.retry_initial_s
            if n == 0:
                stop.wait(self.idle_s)

    @contextlib.contextmanager
    def running(self) -> Iterator[InfluxMirror]:
        """Run in a thread for the duration of the ``with`` block."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name=f"mirror-{self.name}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=self.retry_max_s + 15)
            self.writer.close()

    def catch_up(self, timeout_s: float) -> bool:
        """Mirror until nothing is left or ``timeout_s`` passed (for tools and tests)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sync_once() == 0:
                return True
        return False
