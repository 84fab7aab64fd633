"""``smartward dashboards export DIR | push``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from contract.errors import RegistryError
from contract.registry import load_registry
from dashboards.export import DEFAULT_DASHBOARDS_PATH, export, plan_orgs
from dashboards.push import GrafanaError, push
from dashboards.settings import DashboardsSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="smartward dashboards",
                                     description="Bảng điều khiển Grafana / Grafana dashboards")
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="ghi tệp cấp phát Grafana / write Grafana provisioning files")
    exp.add_argument("dir", type=Path)
    exp.add_argument("--dashboards-path", default=DEFAULT_DASHBOARDS_PATH,
                     help="nơi Grafana đọc các tệp JSON / where Grafana reads the JSON files "
                          f"(default {DEFAULT_DASHBOARDS_PATH})")
    exp.add_argument("--org", action="append", default=[], metavar="SITE=ORG_ID",
                     help="một tổ chức Grafana cho địa bàn, lặp lại được / "
                          "a Grafana organisation for a site, repeatable (one data source each)")
    exp.add_argument("--city-org", type=int, metavar="ORG_ID",
                     help="tổ chức của lãnh đạo thành phố (vai trò --all-sites) / "
                          "the city leaders' organisation")
    sub.add_parser("push", help="đẩy thư mục và bảng lên Grafana / push folders and dashboards "
                                "(SMARTWARD_GRAFANA_URL, SMARTWARD_GRAFANA_TOKEN)")
    args = parser.parse_args(argv)
    if args.command == "export":
        try:
            orgs = plan_orgs(args.org, args.city_org, load_registry(os.environ.get("SMARTWARD_REGISTRY"))) \
                if args.org or args.city_org is not None else ()
        except (ValueError, RegistryError) as exc:
            print(f"Tham số sai / invalid options: {exc}", file=sys.stderr)
            return 2
        print(f"Đang ghi tệp cấp phát vào / writing provisioning files to {args.dir}", file=sys.stderr)
        try:
            written = export(args.dir, args.dashboards_path, orgs)
        except OSError as exc:
            print(f"Không ghi được tệp / cannot write the files: {exc}", file=sys.stderr)
            return 1
        for path in written:
            print(path)
        return 0
    settings = DashboardsSettings(_env_file=os.environ.get("SMARTWARD_CONFIG"))
    try:
        done = push(settings, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except GrafanaError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for p in done:
        print(f"{p.kind} {p.uid}: {p.action}" + (f" (version {p.version})" if p.version is not None else ""))
    print(f"Đã đẩy {len(done)} mục lên {settings.grafana_url} / pushed {len(done)} items")
    return 0
