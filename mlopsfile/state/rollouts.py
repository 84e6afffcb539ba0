"""Rollout progress and holds in the state store.

A rollout row is the single source of truth for where a rollout stands: the step, when
it started and the counters at its start (the gate window's baseline). The reconcile
loop changes a row only with a compare-and-set on its state, so two loops (or a loop
and a `promote` by hand) never both carry out one transition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from mlopsfile.state.tables import holds, revisions, rollouts

ACTIVE_STATES = ("starting", "step", "preview", "running", "promoting", "keeping", "finalizing", "aborting")
ENDED_STATES = ("completed", "aborted", "ended", "rolled-back", "superseded", "failed")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


@dataclass(frozen=True)
class RolloutRecord:
    id: int
    name: str
    revision: int
    strategy: str
    state: str
    step: int
    step_started_at: datetime | None
    baseline: dict[str, Any]
    from_version: str | None
    to_version: str | None
    spec_digest: str | None
    desired: dict[str, Any]
    previous: dict[str, Any] | None
    requested: str | None
    message: str | None
    gates: list[dict[str, Any]]
    keep_until: datetime | None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class HoldRecord:
    name: str
    spec_digest: str
    outcome: str
    reason: str
    live_version: str | None
    at: datetime


class RolloutRecords:
    """Mixed into StateStore: rollout rows, holds and revision outcomes."""

    engine: Engine

    def start_rollout(self, *, name: str, revision: int, strategy: str, state: str, from_version: str | None,
                      to_version: str | None, spec_digest: str | None, desired: dict[str, Any],
                      previous: dict[str, Any] | None) -> RolloutRecord:
        at = _now()
        with self.engine.begin() as connection:
            connection.execute(
                update(rollouts).where(rollouts.c.name == name, rollouts.c.state.in_(ACTIVE_STATES))
                .values(state="superseded", ended_at=at, updated_at=at,
                        message=f"superseded by the rollout of revision {revision}")
            )
            row_id = connection.execute(insert(rollouts).values(
                name=name, revision=revision, strategy=strategy, state=state, step=0, step_started_at=at,
                baseline="{}", from_version=from_version, to_version=to_version, spec_digest=spec_digest,
                desired=json.dumps(desired, sort_keys=True), previous=json.dumps(previous) if previous else None,
                gates="[]", started_at=at, updated_at=at,
            )).inserted_primary_key[0]
        record = self.rollout(int(row_id))
        assert record is not None
        return record

    def rollout(self, rollout_id: int) -> RolloutRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(rollouts).where(rollouts.c.id == rollout_id)).mappings().first()
        return _rollout(row) if row else None

    def active_rollout(self, name: str) -> RolloutRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(rollouts).where(rollouts.c.name == name, rollouts.c.state.in_(ACTIVE_STATES))
                .order_by(rollouts.c.id.desc())
            ).mappings().first()
        return _rollout(row) if row else None

    def active_rollouts(self) -> list[RolloutRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(rollouts).where(rollouts.c.state.in_(ACTIVE_STATES)).order_by(rollouts.c.id)
            ).mappings().all()
        return [_rollout(row) for row in rows]

    def last_rollout(self, name: str) -> RolloutRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(rollouts).where(rollouts.c.name == name).order_by(rollouts.c.id.desc())
            ).mappings().first()
        return _rollout(row) if row else None

    def advance_rollout(self, rollout_id: int, expected_state: str, expected_step: int | None = None,
                        **values: Any) -> bool:
        """Move a rollout on, only if it is still in ``expected_state`` (and step): compare-and-set."""
        for key in ("baseline", "gates"):
            if key in values and not isinstance(values[key], str):
                values[key] = json.dumps(values[key], sort_keys=True)
        values["updated_at"] = _now()
        if values.get("state") in ENDED_STATES:
            values.setdefault("ended_at", values["updated_at"])
        condition = [rollouts.c.id == rollout_id, rollouts.c.state == expected_state]
        if expected_step is not None:
            condition.append(rollouts.c.step == expected_step)
        with self.engine.begin() as connection:
            result = connection.execute(update(rollouts).where(*condition).values(**values))
        return result.rowcount == 1

    def request_rollout_action(self, rollout_id: int, action: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(rollouts).where(rollouts.c.id == rollout_id)
                               .values(requested=action, updated_at=_now()))

    # -- holds ----------------------------------------------------------------------

    def put_hold(self, *, name: str, spec_digest: str, outcome: str, reason: str, live_version: str | None) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(holds).where(holds.c.name == name))
            connection.execute(insert(holds).values(name=name, spec_digest=spec_digest, outcome=outcome,
                                                    reason=reason, live_version=live_version, at=_now()))

    def clear_hold(self, name: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(holds).where(holds.c.name == name))

    def holds(self) -> dict[str, HoldRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(holds)).mappings().all()
        return {row["name"]: HoldRecord(row["name"], row["spec_digest"], row["outcome"], row["reason"],
                                        row["live_version"], _utc(row["at"]) or _now()) for row in rows}

    # -- revision outcomes ------------------------------------------------------------

    def set_revision_outcome(self, name: str, revision: int, outcome: str, message: str | None = None) -> None:
        values: dict[str, Any] = {"outcome": outcome}
        if message is not None:
            values["message"] = message
        with self.engine.begin() as connection:
            # Only a rollout's own revision takes its outcome; a create that started an experiment keeps 'applied'.
            connection.execute(update(revisions).where(revisions.c.name == name, revisions.c.revision == revision,
                                                       revisions.c.action.in_(("rollout", "rollback")))
                               .values(**values))

    def revision_config(self, name: str, revision: int) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(revisions.c.config).where(revisions.c.name == name, revisions.c.revision == revision,
                                                 revisions.c.config.is_not(None))
                .order_by(revisions.c.id.desc())
            ).first()
        return json.loads(row[0]) if row else None


def _rollout(row: Any) -> RolloutRecord:
    return RolloutRecord(
        id=row["id"], name=row["name"], revision=row["revision"], strategy=row["strategy"], state=row["state"],
        step=row["step"], step_started_at=_utc(row["step_started_at"]), baseline=json.loads(row["baseline"] or "{}"),
        from_version=row["from_version"], to_version=row["to_version"], spec_digest=row["spec_digest"],
        desired=json.loads(row["desired"]), previous=json.loads(row["previous"]) if row["previous"] else None,
        requested=row["requested"], message=row["message"], gates=json.loads(row["gates"] or "[]"),
        keep_until=_utc(row["keep_until"]), started_at=_utc(row["started_at"]) or _now(),
        updated_at=_utc(row["updated_at"]) or _now(), ended_at=_utc(row["ended_at"]),
    )
