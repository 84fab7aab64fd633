"""TT 10/2021 feed, unit level (fakes): cycle labels (T - 5 min <= time < T, label = end),
Vietnam time, symbols, worst status, export's (start, end], and the run loop's spool: files
kept while the receiver is away and re-sent oldest first, the last 24 h written on start,
30 days kept."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract.registry import load_registry, parse_registry
from feeds.errors import ReceiverUnavailable, StoreUnavailable
from feeds.tt10.cycles import (
    CYCLE,
    PARAMETERS,
    Reading,
    StationError,
    build_cycles,
    file_name,
    format_value,
    label_of,
    labels_between,
    parse_lines,
    stamp,
    stations_of,
    worst_status,
)
from feeds.tt10.reader import MemoryReadings
from feeds.tt10.runner import Tt10Feed, export
from feeds.tt10.spool import Spool
from feeds.tt10.uploader import FtpTarget, Upload
from feeds.tt10.uploads import MemoryUploadLog, UploadLog

REG = load_registry()
STATIONS = stations_of(REG)
WW = next(s for s in STATIONS if s.sensor == "ax-ww-01")
T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 08:00 Vietnam time


def test_bundled_registry_has_the_an_xa_outlet_and_stacks_as_stations() -> None:
    assert {(s.sensor, s.site) for s in STATIONS} == {
        ("ax-ww-01", "an-xa"), ("ax-stack-01", "an-xa"), ("ax-stack-02", "an-xa")}
    assert WW.key == "NBH_CCNANXA_NT01"
    symbols = [PARAMETERS[m].symbol for m in WW.metrics]
    assert symbols == ["pH", "Temp", "COD", "TSS", "NH4", "Flow"]
    stack = next(s for s in STATIONS if s.sensor == "ax-stack-01")
    assert [PARAMETERS[m].symbol for m in stack.metrics] == ["PM", "SO2", "NOx", "CO", "O2", "Temp", "Flow"]


def test_cycle_is_labelled_by_its_end_and_includes_its_start_only() -> None:
    assert label_of(T0) == T0 + CYCLE  # T - 5 min <= t: the start belongs to the cycle
    assert label_of(T0 + CYCLE - timedelta(microseconds=1)) == T0 + CYCLE
    assert label_of(T0 - timedelta(microseconds=1)) == T0  # t < T: the end does not


def test_stamps_and_names_are_vietnam_time() -> None:
    assert stamp(T0) == "20261207080000"
    assert file_name(WW, T0) == "NBH_CCNANXA_NT01_20261207080000.txt"
    # 23:55 UTC is the next day in Vietnam.
    assert stamp(datetime(2026, 12, 6, 17, 5, tzinfo=UTC)) == "20261207000500"


def test_labels_between_is_start_exclusive_end_inclusive() -> None:
    got = labels_between(T0, T0 + timedelta(minutes=15))
    assert got == [T0 + CYCLE, T0 + 2 * CYCLE, T0 + 3 * CYCLE]
    assert labels_between(T0 + timedelta(seconds=1), T0 + timedelta(minutes=9)) == [T0 + CYCLE]


def test_worst_status_and_values() -> None:
    assert worst_status(["good", "suspect"]) == "00"
    assert worst_status(["good", "calibrating"]) == "01"
    assert worst_status(["calibrating", "bad", "good"]) == "02"
    assert worst_status(["maintenance"]) == "01"
    values = (7.1234, 35.0, 0.0004, -0.0001, 120.5)
    assert [format_value(v) for v in values] == ["7.123", "35", "0", "0", "120.5"]


def _r(t: datetime, metric: str, value: float, quality: str = "good", sensor: str = "ax-ww-01") -> Reading:
    return Reading(t, sensor, metric, value, quality)


def test_file_holds_means_and_worst_status_with_the_label_on_every_line() -> None:
    rows = [
        _r(T0, "ww_ph", 7.0),  # start of the cycle ending T0+5
        _r(T0 + timedelta(minutes=4, seconds=59), "ww_ph", 8.0, "calibrating"),
        _r(T0 + CYCLE, "ww_ph", 100.0),  # next cycle
        _r(T0 + timedelta(minutes=1), "ww_cod", 40.0),
        _r(T0 + timedelta(minutes=2), "ww_cod", 50.0, "bad"),
        _r(T0 + timedelta(minutes=2), "ww_flow_in_m3h", 9.0),  # not a TT 10 parameter of the outlet
        _r(T0 + timedelta(minutes=2), "ww_ph", 1.0, sensor="ax-ww-02"),  # another sensor
    ]
    files = list(build_cycles(WW, rows))
    assert [f.label for f in files] == [T0 + CYCLE, T0 + 2 * CYCLE]
    text = files[0].render().decode("ascii")
    assert text == ("pH\t7.5\tpH\t20261207080500\t01\n"
                    "COD\t45\tmg/L\t20261207080500\t02\n")
    assert parse_lines(text)[0] == ("pH", 7.5, "pH", T0 + CYCLE, "01")
    assert files[1].render() == b"pH\t100\tpH\t20261207081000\t00\n"


def test_station_attributes_are_checked() -> None:
    text = """
version: 1
sites:
- id: s
  name: {vi: S, en: S}
  kind: industrial_cluster
  location: {lat: 20, lon: 106}
  gateways:
  - id: g
    sensors:
    - id: ww
      kind: wastewater
      attrs: {tt10_station: "NT 1", tt10_prefix: P_F}
"""
    with pytest.raises(StationError, match="tt10_station"):
        stations_of(parse_registry(text))
    with pytest.raises(StationError, match="tt10_prefix"):
        stations_of(parse_registry(text.replace('"NT 1", tt10_prefix: P_F', "NT1")))


def test_ftp_url_is_parsed_without_showing_the_password() -> None:
    t = FtpTarget.parse("ftps://u%40x:p%3Aw@receiver.example.vn:2121/data/in")
    assert (t.tls, t.user, t.password, t.host, t.port, t.directory) == (
        True, "u@x", "p:w", "receiver.example.vn", 2121, "/data/in")
    assert "p:w" not in t.describe()


def test_export_covers_labels_in_start_end(tmp_path: Path) -> None:
    rows = [_r(T0 + timedelta(minutes=m), "ww_ph", 7.0) for m in range(0, 30)]
    paths = export([WW], MemoryReadings(rows), T0 + CYCLE, T0 + 4 * CYCLE, tmp_path)
    assert [p.name for p in paths] == [file_name(WW, T0 + k * CYCLE) for k in (2, 3, 4)]


# --- the run loop ------------------------------------------------------------------------------


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


class FakeReceiver:
    target = "memory://receiver"

    def __init__(self) -> None:
        self.up = True
        self.files: dict[str, bytes] = {}
        self.order: list[str] = []

    def send(self, files: Sequence[Upload], on_sent: Callable[[Upload], None]) -> None:
        for f in files:
            if not self.up:
                raise ReceiverUnavailable("memory receiver is down")
            self.files[f.name] = f.data
            self.order.append(f.name)
            on_sent(f)


def _feed(tmp_path: Path, rows: list[Reading], clock: Clock
          ) -> tuple[Tt10Feed, FakeReceiver, MemoryUploadLog]:
    receiver, log = FakeReceiver(), MemoryUploadLog()
    feed = Tt10Feed([WW], MemoryReadings(rows), Spool(tmp_path / "tt10"), receiver, UploadLog(log), clock,
                    delay=timedelta(seconds=60), retry=timedelta(seconds=60))
    return feed, receiver, log


def _one_reading_feed(tmp_path: Path) -> tuple[Tt10Feed, FakeReceiver, MemoryUploadLog, Clock]:
    """A feed of one pH reading a minute into T0's cycle; its clock a minute past the next cycle."""
    clock = Clock(T0 + CYCLE + timedelta(seconds=61))
    return (*_feed(tmp_path, [_r(T0 + timedelta(minutes=1), "ww_ph", 7.0)], clock), clock)


def test_on_start_the_last_24h_never_sent_are_written_and_sent(tmp_path: Path) -> None:
    start = T0 - timedelta(hours=30)
    rows = [_r(start + timedelta(minutes=m), "ww_ph", 7.0) for m in range(0, 30 * 60, 5)]
    clock = Clock(T0 + timedelta(seconds=61))
    feed, receiver, log = _feed(tmp_path, rows, clock)
    report = feed.tick()
    assert len(report.sent) == 24 * 12
    assert receiver.order == sorted(receiver.order)
    assert receiver.order[0] == file_name(WW, T0 - timedelta(hours=24) + CYCLE)
    assert receiver.order[-1] == file_name(WW, T0)
    assert {r["state"] for r in log.rows.values()} == {"sent"}


def test_receiver_outage_keeps_every_file_and_resends_oldest_first(tmp_path: Path) -> None:
    rows = [_r(T0 + timedelta(seconds=s), "ww_ph", 7.0 + s / 10_000) for s in range(0, 4 * 3600, 60)]
    clock = Clock(T0 + timedelta(seconds=61))
    feed, receiver, log = _feed(tmp_path, rows, clock)
    receiver.up = False
    for _ in range(3 * 12 * 5):  # 3 h, a tick a minute
        clock.t += timedelta(minutes=1)
        report = feed.tick()
        assert report.sent == [] and (report.error is not None or report.waiting == 0)
    waiting = feed.spool.pending()
    assert len(waiting) == 36 and not receiver.files
    states = [r["state"] for r in log.rows.values()]
    assert states.count("failed") == 36  # every waiting cycle is reported as failed
    receiver.up = True
    clock.t += timedelta(minutes=1)
    report = feed.tick()
    assert report.waiting == 0 and len(report.sent) == 36
    assert receiver.order == sorted(receiver.order, key=lambda n: n[-18:])  # oldest first
    for f in waiting:  # none lost, none changed
        assert receiver.files[f.name] == (tmp_path / "tt10" / "sent" / stamp(f.label)[:8] / f.site /
                                          f.sensor / f.name).read_bytes()
    assert {r["state"] for r in log.rows.values()} == {"sent"}
    assert all(r["attempts"] >= 2 for r in log.rows.values())


def test_files_are_written_once_and_late_readings_fill_gaps_within_24h(tmp_path: Path) -> None:
    feed, receiver, _, clock = _one_reading_feed(tmp_path)
    feed.tick()
    assert list(receiver.files) == [file_name(WW, T0 + CYCLE)]
    # Readings of an earlier cycle arrive late (an edge back online); the written cycle changes too.
    feed.readings.rows += [_r(T0 - timedelta(minutes=3), "ww_ph", 6.0),  # type: ignore[attr-defined]
                           _r(T0 + timedelta(minutes=2), "ww_ph", 9.0)]
    clock.t += CYCLE
    feed.tick()
    assert sorted(receiver.files) == [file_name(WW, T0), file_name(WW, T0 + CYCLE)]
    assert receiver.files[file_name(WW, T0 + CYCLE)].startswith(b"pH\t7\t")  # not rewritten


def test_sent_files_are_kept_30_days(tmp_path: Path) -> None:
    feed, _, _, clock = _one_reading_feed(tmp_path)
    feed.tick()
    assert len(list(feed.spool.sent_files())) == 1
    clock.t += timedelta(days=30)
    feed.tick()
    assert len(list(feed.spool.sent_files())) == 1
    clock.t += timedelta(days=1, hours=1)
    feed.tick()
    assert list(feed.spool.sent_files()) == []


def test_upload_log_outage_is_caught_up(tmp_path: Path) -> None:
    feed, receiver, log, clock = _one_reading_feed(tmp_path)
    log.down = True
    feed.tick()
    assert receiver.files and not log.rows
    log.down = False
    clock.t += timedelta(minutes=1)
    feed.tick()
    assert [r["state"] for r in log.rows.values()] == ["sent"]


class DownStore(MemoryReadings):
    def readings(self, sensors: Sequence[str], start: datetime, end: datetime) -> list[Reading]:
        raise StoreUnavailable("store is down")


def test_store_outage_delays_new_cycles_but_not_sending_the_spooled_ones(tmp_path: Path) -> None:
    rows = [_r(T0 + timedelta(minutes=1), "ww_ph", 7.0)]
    clock = Clock(T0 + CYCLE + timedelta(seconds=61))
    feed, receiver, _ = _feed(tmp_path, rows, clock)
    receiver.up = False
    feed.tick()
    assert len(feed.spool.pending()) == 1
    feed.readings = DownStore()
    receiver.up = True
    clock.t += CYCLE
    report = feed.tick()
    assert report.error and "store is down" in report.error
    assert report.sent == [file_name(WW, T0 + CYCLE)]
    feed.readings = MemoryReadings([*rows, _r(T0 + CYCLE + timedelta(minutes=1), "ww_ph", 8.0)])
    clock.t += timedelta(minutes=1)  # the next try writes the cycle the outage held back
    assert feed.tick().sent == [file_name(WW, T0 + 2 * CYCLE)]
