"""``smartward bench codec``: cost of decoding telemetry batches, per reading.

Bounded: a fixed number of rounds over one pre-encoded batch; prints numbers only.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from contract.codec import decode_telemetry, encode
from contract.models import MAX_PAYLOAD_BYTES, Reading, TelemetryBatch


def _batch(readings: int) -> bytes:
    t0 = datetime(2026, 11, 28, 5, tzinfo=UTC)
    metrics = ("pm25", "pm10", "no2", "co", "o3")
    rows = [
        Reading(sensor=f"tn-aq-{i % 20:02d}", metric=metrics[i % len(metrics)],
                ts=t0 + timedelta(seconds=i), value=40.0 + i * 0.37,
                quality="suspect" if i % 17 == 0 else "good")
        for i in range(readings)
    ]
    return encode(TelemetryBatch(v=1, gateway="tn-gw-01", seq=1842, sent_at=t0, readings=rows))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="smartward bench codec",
                                     description="Chi phí giải mã lô / telemetry decode cost")
    parser.add_argument("--readings", type=int, default=100, help="readings per batch (default 100)")
    parser.add_argument("--rounds", type=int, default=20_000, help="batches decoded (default 20000)")
    args = parser.parse_args(argv)
    raw = _batch(args.readings)
    if len(raw) > MAX_PAYLOAD_BYTES:
        parser.error(f"{args.readings} readings encode to {len(raw)} bytes, over the "
                     f"{MAX_PAYLOAD_BYTES}-byte payload limit: use fewer")
    for _ in range(min(1000, args.rounds)):
        decode_telemetry(raw)
    start = time.perf_counter()
    cpu0 = time.process_time()
    for _ in range(args.rounds):
        decode_telemetry(raw)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    n = args.rounds * args.readings
    print(f"batch: {args.readings} readings, {len(raw)} bytes; rounds: {args.rounds}")
    print(f"decode: {wall / n * 1e6:.3f} µs/reading wall, {cpu / n * 1e6:.3f} µs/reading CPU, "
          f"{n / wall:,.0f} readings/s")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
