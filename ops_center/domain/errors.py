"""One exception root for the ops center's domain."""

from __future__ import annotations


class OpsError(Exception):
    """Root of every error raised by ops_center."""


class RuleError(OpsError):
    """A rule or pattern definition is invalid. ``line`` is 1-based when known."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        where = f"{source}:{line}: " if source and line is not None else (f"{source}: " if source else "")
        super().__init__(f"{where}{message}")
        self.source = source
        self.line = line
        self.message = message


class UnknownIncident(OpsError):
    """No incident with that id."""


class InvalidTransition(OpsError):
    """The incident cannot make that lifecycle change (e.g. acknowledge a resolved one).
    ``state``: the state it is in (the API answers 409 with it)."""

    def __init__(self, message: str, *, state: str = "") -> None:
        super().__init__(message)
        self.state = state
