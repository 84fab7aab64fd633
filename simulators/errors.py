"""One exception root for the simulators package (docs/style.md rule 8)."""

from __future__ import annotations


class SimulatorError(Exception):
    """Root of every error raised by the simulators package."""


class ScenarioError(SimulatorError):
    """A scenario cannot be built, e.g. the registry lacks the site or sensors it needs."""


class UnknownScenarioError(SimulatorError, KeyError):
    """No scenario by that name. A ``KeyError`` too, so ``except KeyError`` keeps working."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        names = ", ".join(known)
        self.name = name
        self.known = known
        self.message = (
            f"Không có kịch bản mô phỏng {name!r}; các kịch bản có sẵn: {names}. / "
            f"No simulation scenario {name!r}; available scenarios: {names}."
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        # KeyError.__str__ would print the repr of the message, quotes and escapes included.
        return self.message
