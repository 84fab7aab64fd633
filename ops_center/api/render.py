"""The live stream's rendering: a change-feed event's data as the JSON a client reads.

The feed (ops_center/feed.py) carries records as the service and the routes wrote them
(``AlertRecord``, ``IncidentRecord``, ``GatewayStatusRecord``); here each becomes its API
schema (``AlertOut``, ``IncidentOut``, ``GatewayOut``), the same shapes the REST routes answer
with. Values that are already plain data pass through.
"""

from __future__ import annotations

from collections.abc import Mapping

from contract.registry import Registry
from ops_center.adapters.records import AlertRecord, GatewayStatusRecord, IncidentRecord
from ops_center.api.errors import Localized
from ops_center.api.schemas import AlertOut, GatewayOut, IncidentOut
from ops_center.feed import FeedEvent


def gateway_out(status: GatewayStatusRecord, registry: Registry) -> GatewayOut:
    gw = registry.gateways.get(status.gateway)
    return GatewayOut(
        id=status.gateway, site=status.site,
        name=Localized(vi=gw.name.vi, en=gw.name.en) if gw is not None and gw.name else None,
        state="online" if status.state == "online" else "offline", last_seen=status.last_seen,
        outbox_batches=status.outbox_batches, outbox_oldest=status.outbox_oldest,
        dropped_batches=status.dropped_batches, last_seq=status.last_seq, agent=status.agent,
        sensors=len(gw.sensors) if gw is not None else 0,
    )


def render_value(value: object, registry: Registry) -> object:
    if isinstance(value, AlertRecord):
        return AlertOut.of(value).model_dump(mode="json")
    if isinstance(value, IncidentRecord):
        return IncidentOut.of(value).model_dump(mode="json")
    if isinstance(value, GatewayStatusRecord):
        return gateway_out(value, registry).model_dump(mode="json")
    return value


def render_data(data: Mapping[str, object], registry: Registry) -> dict[str, object]:
    """An event's data with every record rendered as its API schema."""
    return {k: render_value(v, registry) for k, v in data.items()}


def render_event(event: FeedEvent, registry: Registry) -> dict[str, object]:
    """What a stream client reads in an event's ``data:`` line."""
    return {"site": event.site, "at": event.at.isoformat(), **render_data(event.data, registry)}
