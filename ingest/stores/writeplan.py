"""The rules of ``Store.write``, decided in Python so that every store applies the same ones.

A call hands over valid batches and dead letters. Each one that names a ``(gateway, seq)``
*claims* it in ``ingest_batches``, and the database answers which claims are new. Then
``settle`` decides, item by item, in the order given (batches, then dead letters):

- the first occurrence of a new key: the batch is to be stored, the dead letter kept;
- a key handled before (in the database, or earlier in this call) with the same bytes: a
  redelivery, a no-op (docs/reliability.md promise 2);
- with different bytes: a re-send that conflicts (an edge whose outbox was wiped starts its
  seqs again). A batch becomes a ``conflict`` dead letter, a dead letter is kept as it is:
  nothing is silently dropped.

Then the readings of the batches to store go in, and ``reading_conflicts`` names every batch
with a reading whose ``(sensor, metric, time)`` is stored (or accepted earlier in the call)
with another value or quality: that whole batch becomes a ``conflict`` dead letter instead,
never an overwrite. A reading stored again with the same value and quality is a no-op.

An unsequenced batch (SenML, ``ValidBatch.sequenced`` False) claims nothing: it is always to
be stored, its readings then de-duplicated or refused as conflicts like any other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime

from ingest import deadletters
from ingest.errors import StoreUnavailable
from ingest.ports import DeadLetter, Outcome, ValidBatch

BatchKey = tuple[str, int]
ReadingKey = tuple[str, str, datetime]
ReadingValue = tuple[float, str]


def payload_digest(raw: bytes) -> bytes:
    """BLAKE2b-128 of a payload: what tells a redelivery from a conflicting re-send."""
    return hashlib.blake2b(raw, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Claim:
    """An ``ingest_batches`` row that an item of the call wants to create."""

    gateway: str
    seq: int
    site: str | None
    received_at: datetime
    readings: int
    outcome: Outcome
    digest: bytes

    @property
    def key(self) -> BatchKey:
        return (self.gateway, self.seq)


@dataclass(frozen=True, slots=True)
class Item:
    """One batch or dead letter of the call; ``claim`` is None for a dead letter without a
    trustworthy ``(gateway, seq)`` (the pipeline sets ``seq`` only when it is)."""

    batch: ValidBatch | None
    letter: DeadLetter | None
    claim: Claim | None


@dataclass(slots=True)
class Plan:
    items: list[Item]
    claims: list[Claim]  # one per distinct key, from its first occurrence

    @property
    def empty(self) -> bool:
        return not self.items


def plan_write(batches: Sequence[ValidBatch], dead: Sequence[DeadLetter]) -> Plan:
    items: list[Item] = []
    claims: dict[BatchKey, Claim] = {}
    for vb in batches:
        b = vb.batch
        if not vb.sequenced:
            items.append(Item(vb, None, None))
            continue
        claim = Claim(b.gateway, b.seq, vb.site, vb.received_at, len(b.readings), "stored",
                      payload_digest(vb.raw))
        claims.setdefault(claim.key, claim)
        items.append(Item(vb, None, claim))
    for d in dead:
        letter_claim: Claim | None = None
        if d.gateway is not None and d.seq is not None:
            letter_claim = Claim(d.gateway, d.seq, d.site, d.received_at, 0, "dead_letter",
                                 payload_digest(d.payload))
            claims.setdefault(letter_claim.key, letter_claim)
        items.append(Item(None, d, letter_claim))
    return Plan(items, list(claims.values()))


@dataclass(frozen=True, slots=True)
class Previous:
    """How a key was handled before this call."""

    outcome: str
    digest: bytes


@dataclass(slots=True)
class Settlement:
    store: list[ValidBatch] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    handled: list[BatchKey] = field(default_factory=list)


def settle(plan: Plan, new_keys: Set[BatchKey], previous: Mapping[BatchKey, Previous]) -> Settlement:
    """Decide every item, given the keys whose claim the database accepted (``new_keys``)
    and how every other claimed key was handled before (``previous``)."""
    out = Settlement()
    holders: dict[BatchKey, Previous] = {}
    handled: set[BatchKey] = set()
    for item in plan.items:
        claim = item.claim
        if claim is None:
            if item.batch is not None:  # unsequenced
                out.store.append(item.batch)
            else:
                assert item.letter is not None
                out.letters.append(item.letter)
            continue
        key = claim.key
        if key not in handled:
            handled.add(key)
            out.handled.append(key)
        holder = holders.get(key)
        if holder is None and key in new_keys:
            holders[key] = Previous(claim.outcome, claim.digest)
            if item.batch is not None:
                out.store.append(item.batch)
            else:
                assert item.letter is not None
                out.letters.append(item.letter)
            continue
        if holder is None:
            holder = previous.get(key)
            if holder is None:
                # The claim was refused, yet no row is visible: only a concurrent writer that
                # rolled back in between can do that. Retrying the call settles it.
                raise StoreUnavailable(f"claim of {key} raced with another writer; retry")
            holders[key] = holder
        if holder.digest == claim.digest:
            out.duplicates += 1
        elif item.batch is not None:
            out.letters.append(_letter(
                item.batch,
                f"seq {claim.seq} of {claim.gateway} was already handled ({holder.outcome}) "
                "with different bytes; this re-send is kept here, not stored"))
        else:
            assert item.letter is not None
            out.letters.append(item.letter)
    return out


def reading_conflicts(batches: Sequence[ValidBatch],
                      stored: Mapping[ReadingKey, ReadingValue]) -> dict[int, DeadLetter]:
    """Index in ``batches`` -> its ``conflict`` dead letter, for every batch with a reading
    whose key is in ``stored`` (or in an earlier accepted batch, or earlier in the same
    batch) with another value or quality. ``stored`` needs to hold only the stored rows that
    differ from some reading of the call."""
    accepted: dict[ReadingKey, ReadingValue] = {}
    out: dict[int, DeadLetter] = {}
    for i, vb in enumerate(batches):
        pending: dict[ReadingKey, ReadingValue] = {}
        clashes = 0
        first = ""
        for r in vb.batch.readings:
            key = (r.sensor, r.metric, r.ts)
            value = (r.value, r.quality)
            prev = pending.get(key) or accepted.get(key) or stored.get(key)
            if prev is not None and prev != value:
                if not clashes:
                    first = (f"{r.sensor}/{r.metric} at {r.ts.isoformat()}: stored {prev[0]!r} ({prev[1]}), "
                             f"sent {r.value!r} ({r.quality})")
                clashes += 1
                continue
            pending[key] = value
        if clashes:
            out[i] = _letter(vb, f"{clashes} reading(s) conflict with stored values; first: {first}")
        else:
            accepted.update(pending)
    return out


def _letter(vb: ValidBatch, detail: str) -> DeadLetter:
    b = vb.batch
    return deadletters.build(topic=vb.topic, raw=vb.raw, received_at=vb.received_at, reason="conflict",
                             detail=detail, gateway=b.gateway, site=vb.site,
                             seq=b.seq if vb.sequenced else None)
