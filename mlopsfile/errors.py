"""Typed errors. The CLI turns each into one line and an exit code; the core never prints."""

from __future__ import annotations

from dataclasses import dataclass


class MlopsfileError(Exception):
    """Base of every error a user may see; ``str()`` is the one-line message."""


@dataclass(frozen=True)
class SourcePosition:
    """Where a value sits in a spec file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class SpecError(MlopsfileError):
    """One problem in a spec file, located at file:line:column and a field path."""

    def __init__(self, message: str, position: SourcePosition | None = None, path: str = "") -> None:
        self.message = message
        self.position = position
        self.path = path
        super().__init__(self.line())

    def line(self) -> str:
        where = f"{self.position}: " if self.position else ""
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"


class SpecErrors(MlopsfileError):
    """Every spec problem of a run, so a user fixes them all in one pass."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = sorted(errors, key=_error_order)
        super().__init__("\n".join(e.line() for e in self.errors))


def _error_order(error: SpecError) -> tuple[str, int, int]:
    pos = error.position
    return (pos.file, pos.line, pos.column) if pos else ("", 0, 0)


class ConfigError(MlopsfileError):
    """The project file mlopsfile.yaml or the environment is wrong."""


class ResolveError(MlopsfileError):
    """A model reference cannot be resolved in the registry."""


class MonitorDataError(ResolveError):
    """A monitor's reference data or features do not fit (``field`` names the spec field)."""

    def __init__(self, message: str, field: str) -> None:
        self.field = field
        super().__init__(message)


class PlanError(MlopsfileError):
    """The desired state cannot be planned against what is live."""


class EdgeConversionError(PlanError):
    """The model cannot become an edge model (unsupported flavor, no signature, converter refused)."""


class StalePlanError(MlopsfileError):
    """A saved plan no longer matches the specs or the live systems."""


class LockError(MlopsfileError):
    """The state lock is held by someone else."""


class DriverError(MlopsfileError):
    """A live system refused or failed an operation.

    ``temporary`` says whether trying again later may succeed (unreachable cluster)
    or not (a model that fails to load).
    """

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        self.temporary = temporary
        super().__init__(message)
