"""``/api/v1/commands``: operator commands to a site's devices (docs/contract.md ``cmd``), and what
became of them (``pending`` → ``applied`` / ``failed`` / ``expired``).

Sending: the sensor's site must be visible (else 404, as every scoped resource), the role
must be allowed to act (``device.command``: a city leader gets 403), the command must be one
the sensor's kind takes with arguments of the right shape (else 422); then it is recorded,
audited and published QoS 1 by the API process's command link, and the answer is 202 with
the pending command. The edge's answer arrives on ``cmd/result`` (ops_center/commands/link.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request

from contract.codec import encode
from contract.commands import BY_KIND
from contract.models import SLUG_PATTERN, Command
from ops_center.adapters.commands import CommandRecord, CommandState
from ops_center.api.deps import AppState, ScopeDep, StateDep, list_filter, require_action, require_visible
from ops_center.api.errors import ERROR_RESPONSES, ApiError
from ops_center.api.pages import Limit, Offset
from ops_center.api.schemas import CommandIn, CommandOut, CommandPage
from ops_center.commands.desk import CommandDesk
from ops_center.security.scope import Scope

router = APIRouter(prefix="/commands", tags=["commands"], responses=ERROR_RESPONSES)

CommandId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


# sensor kind -> command name -> (argument check, the expected shape for the 422's text);
# the table itself is the contract's (contract/commands.py), shared with the simulated devices.
COMMANDS: Final[dict[str, dict[str, tuple[Callable[[Mapping[str, Any]], bool], str]]]] = {
    kind: {name: (spec.check, spec.expected) for name, spec in specs.items()}
    for kind, specs in BY_KIND.items()
}


async def get_desk(request: Request) -> CommandDesk:
    desk: CommandDesk = request.app.state.commands
    return desk


DeskDep = Annotated[CommandDesk, Depends(get_desk)]


def _send(request: Request, state: AppState, scope: Scope, desk: CommandDesk, body: CommandIn) -> CommandOut:
    ref = state.registry.sensors.get(body.sensor)
    site = ref.site if ref is not None else None
    target = f"sensor:{body.sensor}"
    require_visible(request, state, scope, site, target=target, exists=ref is not None)
    assert ref is not None and site is not None
    require_action(request, state, scope, "device.command", target=target, site=site)
    check = COMMANDS.get(ref.spec.kind, {}).get(body.name)
    if check is None:
        raise ApiError(422, "command_unsupported", sensor=body.sensor, kind=ref.spec.kind, name=body.name)
    if not check[0](body.args):
        raise ApiError(422, "command_args", name=body.name, expected=check[1])
    link = desk.link
    if link is None or not link.connected:
        state.audit(request, actor=scope.user, action="command.send", outcome="failed", target=target,
                    site=site, detail=f"{body.name}: broker unavailable")
        raise ApiError(503, "broker_unavailable")
    now = state.now()
    record = CommandRecord(
        id=uuid.uuid4().hex, site=site, gateway=ref.gateway, sensor=body.sensor, name=body.name,
        args=dict(body.args), state="pending", created_by=scope.user, created_at=now,
        expires_at=now + timedelta(seconds=body.ttl_s),
    )
    desk.store.add(record)
    payload = encode(Command(v=1, id=record.id, name=record.name, sensor=record.sensor, args=record.args,
                             expires_at=record.expires_at))
    if not link.publish(site, ref.gateway, payload):
        desk.store.record_result(record.id, ref.gateway, False, "not_sent", now)
        state.audit(request, actor=scope.user, action="command.send", outcome="failed",
                    target=f"command:{record.id}", site=site, detail=f"{body.name} {body.sensor}: not sent")
        raise ApiError(503, "broker_unavailable")
    state.audit(request, actor=scope.user, action="command.send", outcome="ok", target=f"command:{record.id}",
                site=site, detail=f"{body.name} {body.sensor} {record.args} ttl {body.ttl_s} s")
    desk.publish_event(record)
    return CommandOut.of(record)


@router.post("", status_code=202, summary="Gửi lệnh tới thiết bị / send a command to a device")
async def send_command(
    request: Request, state: StateDep, scope: ScopeDep, desk: DeskDep, body: CommandIn
) -> CommandOut:
    return await state.offload(_send, request, state, scope, desk, body)


@router.get("", summary="Lệnh đã gửi / commands sent", response_model=CommandPage)
async def list_commands(
    request: Request,
    state: StateDep,
    scope: ScopeDep,
    desk: DeskDep,
    site: Annotated[str | None, Query(pattern=SLUG_PATTERN, max_length=63)] = None,
    command_state: Annotated[CommandState | None, Query(alias="state")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> CommandPage:
    def page() -> CommandPage:
        sites = list_filter(request, state, scope, site)
        found = desk.store.list(sites, command_state, state.now(), limit, offset)
        return CommandPage(items=[CommandOut.of(c) for c in found.items], total=found.total, limit=limit,
                           offset=offset)

    return await state.offload(page)


@router.get("/{command_id}", summary="Một lệnh và kết quả / one command and its result")
async def get_command(
    request: Request, state: StateDep, scope: ScopeDep, desk: DeskDep, command_id: CommandId
) -> CommandOut:
    def one() -> CommandOut:
        c = desk.store.get(command_id, state.now())
        require_visible(request, state, scope, c.site if c else None, target=f"command:{command_id}",
                        exists=c is not None)
        assert c is not None
        return CommandOut.of(c)

    return await state.offload(one)
