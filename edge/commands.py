"""Operator commands on the edge (docs/contract.md ``cmd`` → ``cmd/result``): decide, apply, answer.

Pure logic over the driver's command hook; the agent calls :meth:`CommandHandler.handle` on
its own thread for every message of its ``cmd`` topic and publishes the result it returns.

- **Never a crash on input**: a payload the contract refuses gets a result with
  ``ok=false`` and ``detail="bad_payload: <reason>: ..."`` (the id is salvaged from the
  JSON when there is one, so the platform can still match it), never an exception.
- **Expired** commands are refused (``expired``): a street light switched on an hour late
  is worse than not at all. Expiry is judged on the wall clock, since ``expires_at`` is the
  platform's wall time; the driver gets the agent's clock (a simulated one runs faster).
- **Only this gateway's sensors** (``unknown_sensor`` otherwise): the broker's ACL already
  delivers only our own ``cmd`` topic; this also catches a platform bug.
- **Exactly once per id**: QoS 1 redelivers (MQTT-4.3.2), so the result of every id seen
  lately is kept (a bounded LRU) and a redelivery gets the same result again without
  touching the device.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from contract.bounds import is_safe_text, safe_text
from contract.codec import decode_command
from contract.errors import DecodeError
from contract.models import CommandResult
from edge.drivers.base import CommandTarget

logger = logging.getLogger(__name__)

_MAX_DETAIL_CHARS = 200
_UNKNOWN_ID = "unknown"


@dataclass(frozen=True, slots=True)
class Outcome:
    result: CommandResult
    applied: bool  # the driver applied it now
    duplicate: bool  # a redelivery: answered from memory, the driver was not called


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _salvage_id(raw: bytes) -> str:
    """The ``id`` of a payload the contract refused, when it is readable; else ``unknown``."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return _UNKNOWN_ID
    ident = doc.get("id") if isinstance(doc, dict) else None
    ok = isinstance(ident, str) and 1 <= len(ident) <= 64 and is_safe_text(ident)
    return ident if ok and isinstance(ident, str) else _UNKNOWN_ID


class CommandHandler:
    def __init__(
        self,
        gateway: str,
        sensors: Iterable[str],
        target: CommandTarget | None,
        *,
        wall: Callable[[], datetime] = _utcnow,
        remember: int = 1024,
    ) -> None:
        if remember < 1:
            raise ValueError("remember must be at least 1")
        self.gateway = gateway
        self._sensors = frozenset(sensors)
        self._target = target
        self._wall = wall
        self._remember = remember
        self._seen: OrderedDict[str, CommandResult] = OrderedDict()

    def handle(self, raw: bytes, at: datetime) -> Outcome:
        """The result for one ``cmd`` payload; ``at`` is the agent's clock (for the driver)."""
        now = self._wall()
        try:
            cmd = decode_command(raw)
        except DecodeError as exc:
            logger.warning("refused a command payload (%s): %s", exc.reason, exc.detail)
            return self._answer(_salvage_id(raw), False, f"bad_payload: {exc.reason}: {exc.detail}", now)
        seen = self._seen.get(cmd.id)
        if seen is not None:
            self._seen.move_to_end(cmd.id)
            logger.debug("command %s redelivered: answering %r again", cmd.id, seen.detail)
            return Outcome(seen, applied=False, duplicate=True)
        if cmd.expires_at <= now:
            outcome = self._answer(cmd.id, False, "expired", now)
        elif cmd.sensor not in self._sensors:
            outcome = self._answer(cmd.id, False, "unknown_sensor", now)
        elif self._target is None:
            outcome = self._answer(cmd.id, False, "unsupported_command", now)
        else:
            try:
                ok, detail = self._target.command(cmd.name, cmd.sensor, cmd.args, at=at)
            except Exception as exc:
                # The driver's top: a failing device must not stop the agent; it gets an answer.
                logger.exception("driver failed on command %s %s", cmd.name, cmd.sensor)
                ok, detail = False, f"driver_error: {type(exc).__name__}: {exc}"
            outcome = self._answer(cmd.id, ok, detail, now, applied=ok)
        logger.info("command %s %s on %s: %s", cmd.id, cmd.name, cmd.sensor, outcome.result.detail)
        self._seen[cmd.id] = outcome.result
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return outcome

    @staticmethod
    def _answer(ident: str, ok: bool, detail: str, now: datetime, *, applied: bool = False) -> Outcome:
        result = CommandResult(v=1, id=ident, ok=ok, detail=safe_text(detail, _MAX_DETAIL_CHARS),
                               ts=now)
        return Outcome(result, applied=applied, duplicate=False)
