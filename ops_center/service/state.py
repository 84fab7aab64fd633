"""Where the service keeps its rule state between runs: one row per service name.

The row holds a snapshot of the rule engine, the incident manager and the seqs seen
(``ops_service_state``: ``name``, ``saved_at``, ``data``, zlib-compressed JSON). Written
periodically and at stop; a message is acknowledged to the broker only once a saved
snapshot covers it (see :mod:`ops_center.service.service`).

The service reads and writes the snapshot through the ops repository
(``load_service_state``; the write is part of a step's transaction, ``commit_step``); the
table is created by the ops migration 0003. This module is the snapshot's encoding.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

TABLE = "ops_service_state"

_encoder = msgspec.json.Encoder()


def pack(state: dict[str, Any]) -> bytes:
    return zlib.compress(_encoder.encode(state), 1)


def unpack(data: bytes) -> dict[str, Any]:
    out = msgspec.json.decode(zlib.decompress(data))
    if not isinstance(out, dict):
        raise ValueError("service state is not an object")
    return out
