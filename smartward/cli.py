"""The one ``smartward`` command. Each subcommand lives in its component's ``cli`` module.

A component is imported only when its subcommand runs, so a gateway with only the
``edge`` extra installed never imports the ingest's database drivers.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

# command -> module whose ``main(argv) -> int`` handles the rest of the arguments.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("smartward.demo", "chạy toàn bộ hệ thống mô phỏng trong một tiến trình / all-in-one demo"),
    "edge": ("edge.cli", "tác tử biên của cổng / edge agent"),
    "ingest": ("ingest.cli", "dịch vụ thu nhận dữ liệu / ingest service"),
    "ops": ("ops_center.cli", "trung tâm điều hành / operations center"),
    "sim": ("smartward.sim_cli", "mô phỏng cảm biến / simulated fleet"),
    "db": ("smartward.db_cli", "cơ sở dữ liệu / database migrations and roles"),
    "users": ("ops_center.users_cli", "người dùng / users"),
    "mqtt": ("ops_center.mqtt_cli", "thông tin xác thực MQTT / broker credentials and ACL"),
    "feeds": ("feeds.cli", "luồng dữ liệu ra (TT 10/2021) / outgoing feeds"),
    "dashboards": ("dashboards.cli", "bảng điều khiển Grafana / Grafana dashboards"),
    "bench": ("bench.cli", "đo hiệu năng / benchmarks"),
}

EXIT_NOT_BUILT = 2

# The extra that brings each command's libraries (pyproject.toml), for "missing dependency".
EXTRAS: dict[str, str] = {
    "demo": "demo", "edge": "edge", "ingest": "ingest", "ops": "ops", "sim": "demo", "db": "ingest,ops",
    "users": "ops", "mqtt": "ops", "dashboards": "dashboards", "bench": "dev",
}


def missing_extra(command: str, module: str | None) -> str:
    extra = EXTRAS.get(command, "all")
    return (f"Thiếu thư viện {module!r} cho lệnh '{command}': pip install 'smartward[{extra}]' "
            f"/ missing dependency {module!r} for '{command}': pip install 'smartward[{extra}]'")


def _usage() -> str:
    lines = ["Cách dùng / usage: smartward <lệnh/command> ...", ""]
    lines += [f"  {name:<11} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def _configure_logging() -> None:
    level = os.environ.get("SMARTWARD_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else EXIT_NOT_BUILT
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"Lệnh không tồn tại / unknown command: {name}\n\n{_usage()}", file=sys.stderr)
        return EXIT_NOT_BUILT
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            print(f"Lệnh '{name}' chưa được xây dựng / '{name}' is not built yet", file=sys.stderr)
            return EXIT_NOT_BUILT
        print(missing_extra(name, exc.name), file=sys.stderr)
        return EXIT_NOT_BUILT
    entry: Callable[[list[str]], int] = module.main
    _configure_logging()
    try:
        return entry(rest)
    except BrokenPipeError:
        # The reader left (`smartward ingest status | head`): no traceback, and none at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ModuleNotFoundError as exc:
        # An optional library is imported when a command runs (so --help works without it).
        if exc.name is None or exc.name.split(".")[0] in _OWN_PACKAGES:
            raise
        print(missing_extra(name, exc.name), file=sys.stderr)
        return EXIT_NOT_BUILT


_OWN_PACKAGES = frozenset({"bench", "contract", "edge", "ingest", "ops_center", "dashboards", "simulators",
                           "smartward"})


if __name__ == "__main__":
    sys.exit(main())
