"""``smartward bench ingest | alerts | api``: each benchmark lives with its component."""

from __future__ import annotations

import importlib
import sys

BENCHES: dict[str, str] = {
    "codec": "smartward.bench_codec",
    "edge": "edge.bench",
    "ingest": "ingest.bench",
    "alerts": "smartward.bench_alerts",
    "api": "ops_center.api.bench",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHES:
        print("Cách dùng / usage: smartward bench {" + "|".join(BENCHES) + "} [tùy chọn/options]",
              file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(BENCHES[argv[0]])
    except ModuleNotFoundError as exc:
        print(f"Chưa có / not built yet: bench {argv[0]} ({exc.name})", file=sys.stderr)
        return 2
    result: int = module.main(argv[1:])
    return result
