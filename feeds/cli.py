"""``smartward feeds tt10 export | run``: the TT 10/2021 feed (docs/contract.md "Regulatory feed").

::

    smartward feeds tt10 export --start T --end T --out DIR   # files for past cycles, from the store
    smartward feeds tt10 run                                  # every cycle: write, upload, retry

Settings: environment ``SMARTWARD_*`` or the dotenv file named by ``SMARTWARD_CONFIG``
(feeds/tt10/settings.py). Times are ISO 8601 (``2026-12-07T08:00:00+07:00``) or TT 10
stamps (``20261207080000``); a time without an offset is Vietnam time. ``export`` covers
the cycles whose labels lie in (start, end].
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from contract.errors import RegistryError
from contract.registry import load_registry
from feeds.errors import FeedConfigError, FeedError, StoreUnavailable
from feeds.tt10.cycles import VIETNAM, Station, StationError, last_ended, parse_stamp, stations_of
from feeds.tt10.reader import open_readings
from feeds.tt10.runner import Tt10Feed, export
from feeds.tt10.settings import Tt10Settings
from feeds.tt10.spool import Spool
from feeds.tt10.uploader import FtpUploader
from feeds.tt10.uploads import UploadLog, open_upload_log

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_STORE = 1
MAX_EXPORT_DAYS = 400


def _time(text: str) -> datetime:
    try:
        t = parse_stamp(text) if text.isdigit() else datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"thời điểm không hợp lệ / invalid time {text!r} (ISO 8601 or YYYYMMDDhhmmss)") from exc
    return t.replace(tzinfo=VIETNAM) if t.tzinfo is None else t.astimezone(UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartward feeds", description="Luồng dữ liệu ra / outgoing feeds")
    feeds = parser.add_subparsers(dest="feed", required=True)
    tt10 = feeds.add_parser("tt10", help="TT 10/2021/TT-BTNMT: quan trắc tự động / automatic monitoring")
    sub = tt10.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="tệp cho các chu kỳ đã qua / files for past cycles")
    exp.add_argument("--start", type=_time, required=True, help="không gồm / exclusive")
    exp.add_argument("--end", type=_time, required=True, help="gồm / inclusive")
    exp.add_argument("--out", required=True, help="thư mục / directory")
    sub.add_parser("run", help="mỗi chu kỳ: ghi, gửi, gửi lại / every cycle: write, upload, retry")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Tt10Settings(_env_file=os.environ.get("SMARTWARD_CONFIG"))
        stations = stations_of(load_registry(settings.registry))
    except (ValidationError, RegistryError, StationError) as exc:
        print(f"Cấu hình sai / invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not stations:
        print("Không có trạm nào (attrs.tt10_station) / no station in the registry (attrs.tt10_station)",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.command == "export":
            return _export(settings, stations, args)
        return _run(settings, stations)
    except (ValueError, OSError) as exc:  # an unsupported SMARTWARD_DB_URL, a directory we cannot write
        print(f"Cấu hình sai / invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _export(settings: Tt10Settings, stations: list[Station], args: argparse.Namespace) -> int:
    if args.end <= args.start:
        print("--end phải sau --start / --end must be after --start", file=sys.stderr)
        return EXIT_CONFIG
    if args.end - args.start > timedelta(days=MAX_EXPORT_DAYS):
        print(f"Khoảng quá dài / range longer than {MAX_EXPORT_DAYS} days", file=sys.stderr)
        return EXIT_CONFIG
    # Past cycles only: a cycle that has not ended yet would be exported with part of its readings.
    end = min(args.end, last_ended(datetime.now(UTC)))
    try:
        paths = export(stations, open_readings(settings.db_url), args.start, end, Path(args.out))
    except StoreUnavailable as exc:
        print(f"Không đọc được kho dữ liệu / store unavailable: {exc}", file=sys.stderr)
        return EXIT_STORE
    print(f"{len(paths)} tệp / files -> {args.out}")
    return 0


def _run(settings: Tt10Settings, stations: list[Station]) -> int:
    log_store = open_upload_log(settings.db_url)
    try:
        log_store.check()
    except FeedConfigError as exc:
        print(f"Cơ sở dữ liệu chưa sẵn sàng / database not ready: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreUnavailable as exc:  # down now: the loop keeps trying, files are kept
        logger.warning("tt10: database unavailable at start: %s", exc)
    try:
        uploader = None
        if settings.tt10_ftp_url is not None:
            uploader = FtpUploader.from_url(settings.tt10_ftp_url.get_secret_value(),
                                            timeout_s=settings.tt10_ftp_timeout_s,
                                            ca_file=settings.tt10_ftp_ca_file)
    except FeedError as exc:
        print(f"Cấu hình sai / invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    feed = Tt10Feed(
        stations, open_readings(settings.db_url), Spool(settings.tt10_dir), uploader, UploadLog(log_store),
        lambda: datetime.now(UTC),
        delay=timedelta(seconds=settings.tt10_delay_s),
        retry=timedelta(seconds=settings.tt10_retry_s),
        backfill=timedelta(hours=settings.tt10_backfill_h),
        keep_days=settings.tt10_keep_days,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("tt10: signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    feed.run(stop)
    return 0
