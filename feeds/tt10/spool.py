"""The feed's local file spool (``SMARTWARD_TT10_DIR``, default ``./tt10``): every cycle's
file, unsent then sent, the truth about what was delivered.

Layout::

    outbox/<site>/<sensor>/<file>.txt              written, not yet on the receiver
    sent/<YYYYMMDD>/<site>/<sensor>/<file>.txt     on the receiver (day of the cycle, Vietnam time)
    tmp/                                           files being written

A file is written to ``tmp/``, flushed to disk, then renamed into ``outbox/`` (so a crash
leaves either the whole file or none), and renamed into ``sent/`` once the receiver has it.
Sent files are kept for ``keep_days`` (30, TT 10/2021 vendors' requirement of 30 days of
local data), then removed a day folder at a time; an unsent file is never removed: it is
a cycle the agency has not received yet (about 60 KB a day per station while the receiver
is away).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from feeds.tt10.cycles import VIETNAM, CycleFile, Station, file_name, label_of_file

_DAY_FORMAT = "%Y%m%d"


@dataclass(frozen=True, slots=True)
class SpoolFile:
    site: str
    sensor: str
    name: str
    label: datetime
    path: Path

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.label, self.name)


def _day(label: datetime) -> str:
    return label.astimezone(VIETNAM).strftime(_DAY_FORMAT)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.outbox = root / "outbox"
        self.sent = root / "sent"
        self.tmp = root / "tmp"
        for d in (self.outbox, self.sent, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def _outbox_path(self, site: str, sensor: str, name: str) -> Path:
        return self.outbox / site / sensor / name

    def _sent_path(self, site: str, sensor: str, name: str, label: datetime) -> Path:
        return self.sent / _day(label) / site / sensor / name

    def has(self, station: Station, label: datetime) -> bool:
        """True when the cycle's file was written (sent or not)."""
        name = file_name(station, label)
        return (self._outbox_path(station.site, station.sensor, name).exists()
                or self._sent_path(station.site, station.sensor, name, label).exists())

    def write(self, cycle: CycleFile) -> SpoolFile:
        """The cycle's file in ``outbox/``, durably."""
        st = cycle.station
        name = cycle.name
        target = self._outbox_path(st.site, st.sensor, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"{st.site}.{st.sensor}.{name}.part"
        with open(tmp, "wb") as fh:
            fh.write(cycle.render())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        return SpoolFile(st.site, st.sensor, name, cycle.label, target)

    def pending(self) -> list[SpoolFile]:
        """The unsent files, oldest cycle first (the order they are sent in)."""
        out = []
        for site_dir in sorted(p for p in self.outbox.iterdir() if p.is_dir()):
            for sensor_dir in sorted(p for p in site_dir.iterdir() if p.is_dir()):
                for path in sensor_dir.iterdir():
                    try:
                        label = label_of_file(path.name)
                    except ValueError:
                        continue  # not ours (an editor's backup, a stray file)
                    out.append(SpoolFile(site_dir.name, sensor_dir.name, path.name, label, path))
        out.sort(key=lambda f: f.sort_key)
        return out

    def mark_sent(self, f: SpoolFile) -> Path:
        target = self._sent_path(f.site, f.sensor, f.name, f.label)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f.path, target)
        _fsync_dir(target.parent)
        return target

    def sent_files(self) -> Iterator[Path]:
        yield from sorted(self.sent.glob("*/*/*/*.txt"))

    def prune(self, now: datetime, keep_days: int) -> int:
        """Remove the day folders of sent files older than ``keep_days``; how many files."""
        oldest_kept = (now - timedelta(days=keep_days)).astimezone(VIETNAM).strftime(_DAY_FORMAT)
        removed = 0
        for day_dir in sorted(p for p in self.sent.iterdir() if p.is_dir()):
            if len(day_dir.name) == 8 and day_dir.name.isdigit() and day_dir.name < oldest_kept:
                removed += sum(1 for _ in day_dir.glob("*/*/*.txt"))
                shutil.rmtree(day_dir)
        return removed
