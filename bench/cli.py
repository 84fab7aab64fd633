"""``smartward bench codec | edge | ingest | alerts | gateways | api``: every benchmark lives in ``bench/``
(docs/performance.md); the product packages carry no benchmark code."""

from __future__ import annotations

import importlib
import sys

BENCHES: dict[str, str] = {
    "codec": "bench.codec",
    "edge": "bench.edge",
    "ingest": "bench.ingest",
    "alerts": "bench.alerts",
    "gateways": "bench.gateways",
    "api": "bench.api",
}


USAGE = ("Cách dùng / usage: smartward bench {" + "|".join(BENCHES) + "} [tùy chọn/options]\n"
         "  smartward bench <tên/name> --help: tùy chọn của từng phép đo / each benchmark's options")


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not argv or argv[0] not in BENCHES:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(BENCHES[argv[0]])
    except ModuleNotFoundError as exc:
        print(f"Chưa có / not built yet: bench {argv[0]} ({exc.name})", file=sys.stderr)
        return 2
    if not {"-h", "--help"} & set(argv[1:]):
        print(f"smartward bench {argv[0]}: đang đo, kết quả trên stdout / measuring, results on stdout",
              file=sys.stderr, flush=True)
    result: int = module.main(argv[1:])
    return result
