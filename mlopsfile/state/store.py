"""The state store: only what the live systems cannot tell.

Revision history (for rollback and ``status``), the apply lock and the audit log.
SQLite under .mlopsfile/ by default; any SQLAlchemy URL (PostgreSQL for a team).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlopsfile.errors import LockError, MlopsfileError

metadata = MetaData()

revisions = Table(
    "revisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(63), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("spec_digest", String(64)),
    Column("model_version", String(64)),
    Column("model_digest", String(80)),
    Column("config", Text),
    Column("message", Text),
    Column("user", String(128)),
    Column("git_commit", String(64)),
    Column("plan_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

locks = Table(
    "locks", metadata,
    Column("scope", String(64), primary_key=True),
    Column("lock_id", String(64), nullable=False),
    Column("holder", String(256), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("user", String(128)),
    Column("host", String(256)),
    Column("git_commit", String(64)),
    Column("operation", String(32), nullable=False),
    Column("resource", String(128)),
    Column("action", String(16)),
    Column("revision", Integer),
    Column("outcome", String(16), nullable=False),
    Column("message", Text),
)


def now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime) -> datetime:
    """Times are written in UTC, but SQLite hands them back without a zone; put it back."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def who() -> str:
    try:
        return os.environ.get("MLOPSFILE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class Lock:
    lock_id: str
    holder: str
    operation: str
    created_at: datetime


@dataclass(frozen=True)
class RevisionRecord:
    kind: str
    name: str
    revision: int
    action: str
    outcome: str
    model_version: str | None
    spec_digest: str | None
    user: str | None
    git_commit: str | None
    created_at: datetime
    message: str | None


class StateStore:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        try:
            self.engine = create_engine(url, future=True)
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise MlopsfileError(f"cannot open the state store {url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc

    # -- locks ---------------------------------------------------------------------

    def acquire_lock(self, operation: str, scope: str = "apply") -> Lock:
        lock = Lock(uuid.uuid4().hex[:12], f"{who()}@{socket.gethostname()} pid {os.getpid()}", operation, now())
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(locks).values(scope=scope, lock_id=lock.lock_id, holder=lock.holder,
                                                        operation=operation, created_at=lock.created_at))
        except IntegrityError:
            held = self.current_lock(scope)
            if held is None:
                return self.acquire_lock(operation, scope)
            raise LockError(
                f"the state is locked by {held.holder} ({held.operation} since "
                f"{held.created_at:%Y-%m-%d %H:%M:%S}); lock id {held.lock_id}. "
                f"If that run is gone: mlopsfile force-unlock {held.lock_id}"
            ) from None
        return lock

    def current_lock(self, scope: str = "apply") -> Lock | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(locks).where(locks.c.scope == scope)).mappings().first()
        if row is None:
            return None
        return Lock(row["lock_id"], row["holder"], row["operation"], _utc(row["created_at"]))

    def release_lock(self, lock: Lock, scope: str = "apply") -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(locks).where(locks.c.scope == scope, locks.c.lock_id == lock.lock_id))

    def force_unlock(self, lock_id: str) -> bool:
        with self.engine.begin() as connection:
            return connection.execute(delete(locks).where(locks.c.lock_id == lock_id)).rowcount > 0

    # -- revisions -----------------------------------------------------------------

    def last_revisions(self, kind: str = "Deployment") -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(revisions.c.name, func.max(revisions.c.revision)).where(revisions.c.kind == kind)
                .group_by(revisions.c.name)
            ).all()
        return {name: int(number) for name, number in rows}

    def record_revision(self, *, kind: str, name: str, revision: int, action: str, outcome: str,
                        spec_digest: str | None, model_version: str | None, model_digest: str | None,
                        config: dict[str, Any] | None, message: str | None, git_commit: str | None,
                        plan_id: str | None) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(revisions).values(
                kind=kind, name=name, revision=revision, action=action, outcome=outcome,
                spec_digest=spec_digest, model_version=model_version, model_digest=model_digest,
                config=json.dumps(config, sort_keys=True) if config is not None else None, message=message,
                user=who(), git_commit=git_commit, plan_id=plan_id, created_at=now(),
            ))

    def history(self, name: str, kind: str = "Deployment") -> list[RevisionRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(revisions).where(revisions.c.kind == kind, revisions.c.name == name).order_by(revisions.c.id)
            ).mappings().all()
        return [_revision(row) for row in rows]

    def latest_applied(self, kind: str = "Deployment") -> dict[str, RevisionRecord]:
        latest: dict[str, RevisionRecord] = {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(revisions).where(revisions.c.kind == kind, revisions.c.outcome == "applied").order_by(revisions.c.id)
            ).mappings().all()
        for row in rows:
            latest[row["name"]] = _revision(row)
        return latest

    # -- audit ---------------------------------------------------------------------

    def audit(self, *, operation: str, outcome: str, resource: str | None = None, action: str | None = None,
              revision: int | None = None, message: str | None = None, git_commit: str | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(audit).values(
                at=now(), user=who(), host=socket.gethostname(), git_commit=git_commit, operation=operation,
                resource=resource, action=action, revision=revision, outcome=outcome, message=message,
            ))

    def audit_log(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(audit).order_by(audit.c.id.desc()).limit(limit)).mappings().all()
        return [{**r, "at": _utc(r["at"])} for r in rows]


def _revision(row: Any) -> RevisionRecord:
    return RevisionRecord(row["kind"], row["name"], row["revision"], row["action"], row["outcome"],
                          row["model_version"], row["spec_digest"], row["user"], row["git_commit"],
                          _utc(row["created_at"]), row["message"])
