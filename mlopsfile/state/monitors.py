"""Drift verdicts and monitor actions in the state store: the history `status` and `drift` show.

Monitor actors keep only their recent windows; the control plane copies what they
decided here, so the history outlives actor restarts and spec changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from mlopsfile.state.tables import drift_actions, drift_feeds, drift_verdicts


@dataclass(frozen=True)
class VerdictRecord:
    monitor: str
    seq: int
    arm: str
    at: datetime
    is_drift: bool
    statistic: float | None
    p_value: float | None
    rows: int
    detail: dict[str, Any]


@dataclass(frozen=True)
class ActionRecord:
    monitor: str
    at: datetime
    type: str
    outcome: str
    message: str | None
    verdict_seq: int | None


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), timezone.utc)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


# Outcomes an action moves on from; a copy taken before it moved must not overwrite a later one.
OPEN_OUTCOMES = ("", "sending", "requested")


class MonitorRecords:
    engine: Engine

    def last_verdict_seq(self, monitor: str, incarnation: str) -> int:
        with self.engine.connect() as conn:
            found = conn.execute(select(func.max(drift_verdicts.c.seq)).where(
                drift_verdicts.c.monitor == monitor, drift_verdicts.c.incarnation == incarnation)).scalar()
        return int(found or 0)

    def record_verdicts(self, monitor: str, incarnation: str, verdicts: list[dict[str, Any]]) -> int:
        """Store new windows (those already stored are skipped); returns how many were new."""
        stored = 0
        with self.engine.begin() as conn:
            for verdict in verdicts:
                detail = {k: v for k, v in verdict.items()
                          if k not in ("seq", "arm", "time", "is_drift", "statistic", "p_value", "rows")}
                try:
                    with conn.begin_nested():
                        conn.execute(drift_verdicts.insert().values(
                            monitor=monitor, incarnation=incarnation, seq=int(verdict["seq"]), arm=str(verdict["arm"]),
                            at=_time(verdict["time"]), is_drift=bool(verdict["is_drift"]),
                            statistic=verdict.get("statistic"), p_value=verdict.get("p_value"),
                            rows=int(verdict.get("rows") or 0), detail=json.dumps(detail, default=str)))
                    stored += 1
                except IntegrityError:
                    continue
        return stored

    def record_monitor_actions(self, monitor: str, incarnation: str, actions: list[dict[str, Any]]) -> None:
        """Insert new action records and move known ones on (an alert retried, then sent); an outcome
        once final stays, whatever order two processes copy in."""
        with self.engine.begin() as conn:
            for action in actions:
                values = dict(monitor=monitor, incarnation=incarnation, seq=int(action["seq"]),
                              verdict_seq=action.get("verdict_seq"), at=_time(action["time"]),
                              type=str(action["type"]), outcome=str(action["outcome"]),
                              message=action.get("message"))
                if self.engine.dialect.name == "sqlite":
                    statement = sqlite_insert(drift_actions).values(**values).on_conflict_do_update(
                        index_elements=["monitor", "incarnation", "seq"],
                        set_={"outcome": values["outcome"], "message": values["message"]},
                        where=drift_actions.c.outcome.in_(OPEN_OUTCOMES))
                    conn.execute(statement)
                    continue
                key = (drift_actions.c.monitor == monitor, drift_actions.c.incarnation == incarnation,
                       drift_actions.c.seq == values["seq"])
                known = conn.execute(select(drift_actions.c.outcome).where(*key)).scalar()
                if known is None:
                    conn.execute(drift_actions.insert().values(**values))
                elif known in OPEN_OUTCOMES:
                    conn.execute(update(drift_actions).where(*key).values(outcome=values["outcome"],
                                                                          message=values["message"]))

    def drift_verdicts(self, monitor: str, limit: int = 100, arm_role: str | None = None) -> list[VerdictRecord]:
        """The newest ``limit`` windows, oldest first."""
        query = select(drift_verdicts).where(drift_verdicts.c.monitor == monitor)
        if arm_role is not None:
            query = query.where(drift_verdicts.c.arm.like(f"{arm_role}/%"))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(drift_verdicts.c.at.desc(), drift_verdicts.c.id.desc())
                                .limit(limit)).mappings().all()
        return [VerdictRecord(monitor=r["monitor"], seq=r["seq"], arm=r["arm"], at=_utc(r["at"]),
                              is_drift=bool(r["is_drift"]), statistic=r["statistic"], p_value=r["p_value"],
                              rows=r["rows"], detail=json.loads(r["detail"])) for r in reversed(rows)]

    def drift_actions(self, monitor: str, limit: int = 100) -> list[ActionRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(drift_actions).where(drift_actions.c.monitor == monitor)
                                .order_by(drift_actions.c.at.desc(), drift_actions.c.id.desc())
                                .limit(limit)).mappings().all()
        return [ActionRecord(monitor=r["monitor"], at=_utc(r["at"]), type=r["type"], outcome=r["outcome"],
                             message=r["message"], verdict_seq=r["verdict_seq"]) for r in reversed(rows)]

    def fed(self, monitor: str, source: str) -> bool:
        """Whether the monitor has been handed this batch output already."""
        with self.engine.connect() as conn:
            return conn.execute(select(drift_feeds.c.id).where(
                drift_feeds.c.monitor == monitor, drift_feeds.c.source == source)).first() is not None

    def record_feed(self, monitor: str, source: str, rows: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(drift_feeds.insert().values(monitor=monitor, source=source, rows=rows,
                                                     at=datetime.now(timezone.utc)))
