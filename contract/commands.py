"""Operator commands (docs/contract.md ``cmd``): which sensor kind takes which command, with which
arguments. One table, read by the API (422 for anything else) and by the simulated devices.

- ``street_light`` takes ``set_lamp`` ``{"on": bool, "dim_pct": 0..100}`` (dim optional) or
  ``{"auto": true}``: overrides the lamp's schedule; ``auto`` gives it back.
- ``drainage_level`` takes ``set_pump`` ``{"on": bool}`` or ``{"auto": true}``: runs or stops the
  drainage pumps of the channel whatever its level; ``auto`` gives them back to the level switch.
- ``wastewater`` takes ``set_valve`` ``{"open": bool}``: opens or closes the outlet's bypass
  valve; open, the effluent goes to the emergency holding pond instead of the receiving water
  (the outlet's outflow falls to 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def set_lamp_ok(args: Mapping[str, Any]) -> bool:
    if dict(args) == {"auto": True}:
        return True
    if "on" not in args or not set(args) <= {"on", "dim_pct"}:
        return False
    dim = args.get("dim_pct", 100)
    return isinstance(args["on"], bool) and _is_int(dim) and 0 <= dim <= 100


def set_pump_ok(args: Mapping[str, Any]) -> bool:
    if dict(args) == {"auto": True}:
        return True
    return set(args) == {"on"} and isinstance(args["on"], bool)


def set_valve_ok(args: Mapping[str, Any]) -> bool:
    return set(args) == {"open"} and isinstance(args["open"], bool)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    check: Callable[[Mapping[str, Any]], bool]
    expected: str  # the argument shape, for error messages


SET_LAMP: Final = CommandSpec("set_lamp", set_lamp_ok,
                              '{"on": true|false, "dim_pct": 0..100} | {"auto": true}')
SET_PUMP: Final = CommandSpec("set_pump", set_pump_ok, '{"on": true|false} | {"auto": true}')
SET_VALVE: Final = CommandSpec("set_valve", set_valve_ok, '{"open": true|false}')

# sensor kind -> command name -> spec
BY_KIND: Final[Mapping[str, Mapping[str, CommandSpec]]] = {
    "street_light": {"set_lamp": SET_LAMP},
    "drainage_level": {"set_pump": SET_PUMP},
    "wastewater": {"set_valve": SET_VALVE},
}


def judge(kind: str, name: str, args: Mapping[str, Any]) -> Literal["ok", "unsupported", "bad_args"]:
    spec = BY_KIND.get(kind, {}).get(name)
    if spec is None:
        return "unsupported"
    return "ok" if spec.check(args) else "bad_args"
