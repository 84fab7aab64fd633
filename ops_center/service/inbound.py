"""One step of the ops service's worker: the messages taken from the broker decoded and
checked against the contract and the registry (telemetry, SenML, status), fed to the rule
engine and the incident manager, and recorded for the store and the live stream; and the
timers' tick."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from contract import senml, topics
from contract.bounds import safe_text
from contract.codec import decode_status, decode_telemetry
from contract.errors import DecodeError, TopicError
from contract.registry import Registry
from ops_center.adapters.records import GatewayStatusRecord
from ops_center.domain.alerts import AlertChange
from ops_center.domain.engine import RuleEngine
from ops_center.domain.incidents import Incident, IncidentChange, IncidentManager
from ops_center.service.model import GatewayClock, ServiceCounters
from ops_center.service.mqtt import Inbound
from ops_center.service.persist import ChangeWriter
from ops_center.service.seqs import SeqTracker

logger = logging.getLogger(__name__)


class InboundHandling:
    """A part of ``OpsService`` (ops_center/service/service.py)."""

    registry: Registry
    engine: RuleEngine
    manager: IncidentManager
    seqs: SeqTracker
    writer: ChangeWriter
    counters: ServiceCounters
    _clock: Callable[[], datetime]
    _gw: dict[str, GatewayClock]
    _status_state: dict[str, str]
    _pending: list[Inbound]

    # Defined by another part (annotations only: the MRO finds the real ones).
    _flush: Callable[[], bool]
    _snapshot_and_ack: Callable[[], bool]
    _track_open: Callable[[Incident], None]

    def _step(self, messages: list[Inbound]) -> None:
        for m in messages:
            self.counters.messages += 1
            changes: list[AlertChange] = []
            try:
                changes = self._handle(m)
                if changes:
                    # Stored and published at once (not after the rest of the queue): the
                    # latency of an alert is what an operator waits for. The incident manager
                    # reads changes as a story in event time, and a batch yields its changes
                    # series by series: put them back in time order (stable: one alert's raise
                    # stays before its clear), so where a batch happened to be cut never decides
                    # when an incident opens.
                    changes.sort(key=lambda c: c.at)
                    self._record(changes, self.manager.apply(changes, self._clock()))
            except Exception as exc:  # one message must never stop the service
                self.counters.failed += 1
                logger.exception("message on %s (%d bytes) could not be evaluated; acknowledged and "
                                 "skipped: %s", safe_text(m.topic, 200), len(m.payload),
                                 safe_text(repr(exc), 300))
                changes = []
            self._pending.append(m)  # acknowledged with the next snapshot, whatever happened
            if changes:
                self._flush()
        if self.writer.pending:
            self._flush()

    def _record(self, alert_changes: list[AlertChange], incident_changes: list[IncidentChange]) -> None:
        if not alert_changes and not incident_changes:
            return
        self.counters.alert_changes += len(alert_changes)
        self.counters.incident_changes += len(incident_changes)
        for ic in incident_changes:
            self._track_open(ic.incident)
        self.writer.record(alert_changes, incident_changes, self.manager.incident_of)

    def _tick(self) -> None:
        now = self._clock()
        self.counters.ticks += 1
        changes = self.engine.tick(now)
        incident_changes = self.manager.apply(changes, now) if changes else []
        incident_changes += self.manager.tick(now)
        if changes or incident_changes:
            self._record(changes, incident_changes)
            # Wall-clock changes: the broker cannot replay them, so their step carries the
            # snapshot (otherwise a restart re-decides them at another time: a second
            # escalation on the timeline).
            self._snapshot_and_ack()

    def _handle(self, m: Inbound) -> list[AlertChange]:
        try:
            t = topics.parse(m.topic)
        except TopicError as exc:
            return self._refuse(m, str(exc))
        if self.registry.site_of(t.gateway) != t.site:
            # unknown gateway, or one publishing under another site
            return self._refuse(m, f"gateway {t.gateway!r} is not registered under {t.site!r}")
        if t.kind == "telemetry":
            return self._telemetry(m, t.gateway)
        if t.kind == "status":
            return self._status(m, t.site, t.gateway)
        if t.kind == "senml":
            return self._senml(m, t.gateway)
        return []

    def _refuse(self, m: Inbound, why: str) -> list[AlertChange]:
        """A message outside the contract: counted, logged, acknowledged with the next snapshot
        (the ingest keeps it as a dead letter)."""
        self.counters.invalid += 1
        logger.info("refused a message on %s%s: %s", safe_text(m.topic, 200),
                    " (retained)" if m.retain else "", safe_text(why, 300))
        return []

    def _telemetry(self, m: Inbound, gateway: str) -> list[AlertChange]:
        self.counters.telemetry += 1
        try:
            batch = decode_telemetry(m.payload)
        except DecodeError as exc:
            return self._refuse(m, str(exc))
        if batch.gateway != gateway:
            return self._refuse(m, f"payload gateway {batch.gateway!r} on {gateway!r}'s topic")
        sent = batch.sent_at.timestamp()
        if self.seqs.seen(gateway, batch.seq, sent):
            self.counters.duplicates += 1
            return []
        readings = [(r.sensor, r.metric, r.ts, r.value, r.quality) for r in batch.readings]
        self.counters.readings += len(readings)
        changes = self.engine.ingest(readings, batch.sent_at, gateway, m.received_at)
        self.seqs.mark(gateway, batch.seq, sent)
        self._gateway_heard(gateway, sent, m.received_at.timestamp())
        return changes

    def _senml(self, m: Inbound, gateway: str) -> list[AlertChange]:
        """A SenML pack (RFC 8428) of a third-party device: the same readings the ingest
        stores, to the same rules. It has no seq and no send time: stamped as sent when it
        arrived (as the ingest does), and a redelivery re-evaluates nothing, since each
        series takes only readings newer than its last one. It does not move the gateway's
        clock (``_gateway_heard``): that is the gateway's own, and a SenML device is not it."""
        self.counters.senml += 1
        try:
            readings = senml.gateway_readings(m.payload, m.received_at, gateway, self.registry)
        except DecodeError as exc:
            return self._refuse(m, f"senml: {exc}")
        except (RecursionError, ValueError, TypeError, OverflowError) as exc:
            return self._refuse(m, f"senml: undecodable: {exc!r}")
        rows = [(r.sensor, r.metric, r.ts, r.value, r.quality) for r in readings]
        self.counters.readings += len(rows)
        return self.engine.ingest(rows, m.received_at, gateway, m.received_at)

    def _gateway_heard(self, gateway: str, sent: float, recv: float) -> None:
        """The gateway said something stamped ``sent`` (its clock) that arrived at ``recv``
        (wall time): the base from which a later Last Will is placed."""
        gc = self._gw.get(gateway)
        if gc is None:
            self._gw[gateway] = GatewayClock(sent, recv)
        elif sent >= gc.last_sent:
            gc.last_sent, gc.last_received = sent, recv

    def _status(self, m: Inbound, site: str, gateway: str) -> list[AlertChange]:
        self.counters.statuses += 1
        if not m.payload:
            return []  # a retained status being cleared (MQTT-3.3.1-10)
        try:
            status = decode_status(m.payload)
        except DecodeError as exc:
            return self._refuse(m, str(exc))
        if status.gateway != gateway:
            return self._refuse(m, f"payload gateway {status.gateway!r} on {gateway!r}'s topic")
        ts = status.ts
        if status.state == "online" and not m.retain:
            # A live status is stamped by the gateway's clock like a batch: a Will must not be
            # placed before it. (On a fast simulated clock the gateway's time runs ahead of the
            # wall time between its last batch and a later status; placed from the batch
            # alone, the Will looked older than that status and was ignored.)
            self._gateway_heard(gateway, ts.timestamp(), m.received_at.timestamp())
        gc = self._gw.get(gateway)
        if status.state == "offline" and not m.retain and gc is not None:
            # A Last Will carries the time its gateway CONNECTED (it is written then), in the
            # gateway's clock. The gateway went silent around its last batch plus the wall time
            # since that batch arrived: that estimate, in the gateway's own time base, is when
            # it went offline (also for a simulated fleet on a fast clock).
            estimate = gc.last_sent + max(0.0, m.received_at.timestamp() - gc.last_received)
            if estimate > ts.timestamp():
                ts = datetime.fromtimestamp(estimate, UTC)
            logger.debug("gateway %s offline (Last Will of %s): placed at %s, after its last batch "
                         "sent at %s", gateway, status.ts.isoformat(), ts.isoformat(),
                         datetime.fromtimestamp(gc.last_sent, UTC).isoformat())
        changes = self.engine.gateway_status(gateway, status.state, ts)
        changed = self._status_state.get(gateway) != status.state
        self._status_state[gateway] = status.state
        self.writer.gateway_status(GatewayStatusRecord(
            gateway=gateway, site=site, state=status.state, last_seen=ts,
            outbox_batches=status.outbox_batches, outbox_oldest=status.outbox_oldest,
            dropped_batches=status.dropped_batches, last_seq=status.last_seq, agent=status.agent or None,
        ), changed=changed)
        return changes
