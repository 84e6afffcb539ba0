"""The prevent_destroy flags as last applied, per resource."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from mlopsfile.state.tables import protections

Address = tuple[str, str]  # (kind, name)


class ProtectionRecords:
    """Mixed into StateStore."""

    engine: Engine

    def protections(self) -> dict[Address, bool]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(protections)).mappings().all()
        return {(row["kind"], row["name"]): bool(row["prevent_destroy"]) for row in rows}

    def record_protections(self, flags: Mapping[Address, bool], forget: Iterable[Address] = ()) -> None:
        """Set each flag (a false one is kept as a row: it was applied) and drop deleted resources."""
        at = datetime.now(timezone.utc)
        with self.engine.begin() as connection:
            for kind, name in {*flags, *forget}:
                connection.execute(delete(protections).where(protections.c.kind == kind, protections.c.name == name))
            for (kind, name), flag in flags.items():
                connection.execute(insert(protections).values(kind=kind, name=name, prevent_destroy=flag, updated_at=at))
