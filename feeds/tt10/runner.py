"""``export`` (files for past cycles, from the store) and ``Tt10Feed``, the ``run`` loop.

Every cycle (``tick``), for each station: the cycles of the last 24 h (``backfill``) that have
no file yet and have readings now are written to the spool (so a restart, or readings that
arrived late from an edge that was offline, fill the gaps; a file once written is not
rewritten); then every unsent file is sent, oldest first, on one connection. When the
receiver fails, the rest wait and the receiver is tried again every ``retry`` (under a cycle),
so once it is back every waiting cycle is re-sent, oldest first, within one cycle (docs/reliability.md
T1). The clock is injected: tests drive ``tick`` with their own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from feeds.errors import ReceiverUnavailable, StoreUnavailable
from feeds.tt10.cycles import CYCLE, CycleFile, Station, build_cycles, label_of, labels_between, last_ended
from feeds.tt10.reader import ReadingSource
from feeds.tt10.spool import Spool, SpoolFile
from feeds.tt10.uploader import Upload, Uploader
from feeds.tt10.uploads import EventKind, UploadEvent, UploadLog

logger = logging.getLogger(__name__)

# Files per connection and per read of the spool: a long outage's backlog is sent in
# bounded slices (memory), one after the other in the same tick.
SEND_SLICE = 500
_EXPORT_CHUNK = timedelta(days=1)


def _cycles(stations: Sequence[Station], readings: ReadingSource, wanted: dict[str, list[datetime]]
            ) -> list[CycleFile]:
    """The files of the wanted (station key -> labels) cycles that have readings."""
    labels = [label for ls in wanted.values() for label in ls]
    if not labels:
        return []
    todo = [st for st in stations if wanted.get(st.key)]
    rows = readings.readings(sorted({st.sensor for st in todo}), min(labels) - CYCLE, max(labels))
    out: list[CycleFile] = []
    for st in todo:
        out.extend(cf for cf in build_cycles(st, rows, wanted[st.key]) if cf.lines)
    out.sort(key=lambda cf: (cf.label, cf.name))
    return out


def export(stations: Sequence[Station], readings: ReadingSource, start: datetime, end: datetime,
           out: Path) -> list[Path]:
    """The files of the cycles whose labels lie in (start, end], written to ``out`` (read a
    day at a time: bounded memory whatever the range)."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + _EXPORT_CHUNK, end)
        labels = labels_between(chunk_start, chunk_end)
        for cf in _cycles(stations, readings, {st.key: labels for st in stations}):
            path = out / cf.name
            tmp = out / f".{cf.name}.part"
            tmp.write_bytes(cf.render())
            os.replace(tmp, path)
            written.append(path)
        chunk_start = chunk_end
    return written


@dataclass
class TickReport:
    written: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    waiting: int = 0
    error: str | None = None


class Tt10Feed:
    def __init__(
        self,
        stations: Sequence[Station],
        readings: ReadingSource,
        spool: Spool,
        uploader: Uploader | None,
        log: UploadLog,
        clock: Callable[[], datetime],
        *,
        delay: timedelta = timedelta(seconds=60),
        retry: timedelta = timedelta(seconds=60),
        backfill: timedelta = timedelta(hours=24),
        keep_days: int = 30,
    ) -> None:
        self.stations = list(stations)
        self._by_sensor = {st.sensor: st for st in self.stations}
        self.readings = readings
        self.spool = spool
        self.uploader = uploader
        self.log = log
        self.clock = clock
        self.delay = delay
        self.retry = retry
        self.backfill = backfill
        self.keep_days = keep_days
        self._written_up_to: datetime | None = None  # newest label whose cycles were written
        self._failed: set[str] = set()  # files whose last try failed (logged as failed)
        self._receiver_down = False
        self._pruned_day: str | None = None

    # --- one step ---------------------------------------------------------------------------

    def newest_due(self, now: datetime) -> datetime:
        """The newest cycle whose file is due at ``now`` (ended ``delay`` ago)."""
        return last_ended(now - self.delay)

    def write_due(self, now: datetime) -> list[SpoolFile]:
        """Write the files of the due cycles of the last ``backfill`` that have none yet."""
        newest = self.newest_due(now)
        labels = labels_between(newest - self.backfill, newest)
        wanted = {st.key: [t for t in labels if not self.spool.has(st, t)] for st in self.stations}
        files = [self.spool.write(cf) for cf in _cycles(self.stations, self.readings, wanted)]
        self._written_up_to = newest
        if files:
            logger.info("tt10: %d cycle file(s) written, newest %s", len(files), files[-1].name)
            self.log.record([self._event("written", f, now) for f in files])
        return files

    def send_pending(self, now: datetime, report: TickReport) -> None:
        """Send every unsent file, oldest first, a slice at a time, until none is left or the
        receiver fails."""
        while True:
            files = self.spool.pending()
            report.waiting = len(files)
            if not files:
                self._recovered(report)
                return
            before = len(report.sent)
            if self.uploader is None or not self._send_slice(self.uploader, files, now, report):
                return
            if len(report.sent) == before:  # an uploader that took nothing and said nothing
                return

    def _send_slice(self, uploader: Uploader, files: Sequence[SpoolFile], now: datetime,
                    report: TickReport) -> bool:
        """The first ``SEND_SLICE`` of ``files`` on one connection; False when the receiver failed."""
        batch = files[:SEND_SLICE]
        by_name = {f.name: f for f in batch}
        sent: list[str] = []
        events: list[UploadEvent] = []
        target = uploader.target

        def on_sent(u: Upload) -> None:
            f = by_name[u.name]
            self.spool.mark_sent(f)
            sent.append(u.name)
            self._failed.discard(u.name)
            events.append(self._event("sent", f, self.clock(), size=len(u.data), target=target))

        try:
            uploader.send([Upload(f.name, f.path.read_bytes()) for f in batch], on_sent)
        except ReceiverUnavailable as exc:
            report.sent.extend(sent)
            report.error = str(exc)
            report.waiting = len(files) - len(sent)
            events.extend(self._failures(files[len(sent):], now, target, str(exc)))
            self.log.record(events)
            if not self._receiver_down:
                logger.warning("tt10: receiver unreachable, %d file(s) wait: %s", report.waiting, exc)
            self._receiver_down = True
            return False
        report.sent.extend(sent)
        self.log.record(events)
        return True

    def _recovered(self, report: TickReport) -> None:
        if self._receiver_down:
            logger.info("tt10: receiver reachable again; %d file(s) sent", len(report.sent))
        self._receiver_down = False

    def _failures(self, files: Sequence[SpoolFile], now: datetime, target: str, error: str
                  ) -> list[UploadEvent]:
        """The file that was tried, and the files newly waiting behind it (each logged as
        failed once; a file already failed is logged again only when it is the one tried)."""
        out = []
        for i, f in enumerate(files):
            if i == 0 or f.name not in self._failed:
                out.append(self._event("failed", f, now, target=target, error=error))
                self._failed.add(f.name)
        return out

    def _event(self, kind: EventKind, f: SpoolFile, at: datetime, *, size: int | None = None,
               target: str | None = None, error: str | None = None) -> UploadEvent:
        st = self._by_sensor.get(f.sensor)
        station = st.key if st is not None else f.name[:-19]  # a station no longer in the registry
        if size is None:
            size = f.path.stat().st_size if f.path.exists() else 0
        return UploadEvent(kind, f.name, f.site, f.sensor, station, f.label, size, at,
                           target=target, error=error)

    def tick(self) -> TickReport:
        """One step at the clock's now: write what is due (once per cycle, and at start),
        send what waits, prune the spool once a day."""
        now = self.clock()
        report = TickReport()
        newest = self.newest_due(now)
        if self._written_up_to is None or newest > self._written_up_to:
            try:
                report.written = [f.name for f in self.write_due(now)]
            except StoreUnavailable as exc:
                logger.warning("tt10: store unavailable, cycles written on the next try: %s", exc)
                report.error = str(exc)
        self.send_pending(now, report)
        day = now.strftime("%Y%m%d")
        if day != self._pruned_day:
            removed = self.spool.prune(now, self.keep_days)
            if removed:
                logger.info("tt10: %d sent file(s) older than %d days removed", removed, self.keep_days)
            self._pruned_day = day
        if not self.log.record([]):
            logger.debug("tt10: %d upload log events wait for the database", self.log.unlogged)
        return report

    def next_wake(self, now: datetime, report: TickReport) -> datetime:
        """When the next tick is due: the next cycle's file, or the next retry while files wait."""
        due = label_of(now - self.delay) + self.delay
        if report.waiting or report.error:
            due = min(due, now + self.retry)
        return due

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set (SIGTERM / SIGINT in the CLI)."""
        logger.info("tt10: %d station(s): %s; spool %s; receiver %s", len(self.stations),
                    ", ".join(st.key for st in self.stations), self.spool.root,
                    self.uploader.target if self.uploader else "none (files kept in the outbox)")
        while not stop.is_set():
            try:
                report = self.tick()
            except Exception:  # the loop's top: log, count, go on (docs/style.md §8)
                logger.exception("tt10: tick failed")
                report = TickReport(error="tick failed")
            now = self.clock()
            stop.wait(max(0.0, (self.next_wake(now, report) - now).total_seconds()))
