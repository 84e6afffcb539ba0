"""The state store: only what the live systems cannot tell.

Revision history (for rollback and ``status``), the apply lock and the audit log.
SQLite under .mlopsfile/ by default; any SQLAlchemy URL (PostgreSQL for a team).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlopsfile.errors import LockError, MlopsfileError
from mlopsfile.state.monitors import MonitorRecords
from mlopsfile.state.protections import ProtectionRecords
from mlopsfile.state.rollouts import RolloutRecords
from mlopsfile.state.tables import audit, locks, metadata, revisions


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


class StateStore(RolloutRecords, MonitorRecords, ProtectionRecords):
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
            if _holder_is_dead(held.holder):
                # Its process on this host is gone (killed, crashed): nobody can release it but us.
                with self.engine.begin() as connection:
                    connection.execute(delete(locks).where(locks.c.scope == scope, locks.c.lock_id == held.lock_id))
                self.audit(operation="force-unlock", outcome="applied", resource=scope,
                           message=f"took over lock {held.lock_id} of {held.holder}: that process is gone")
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

    def last_audit(self, operation: str, outcome: str | None = None) -> dict[str, Any] | None:
        """The newest audit entry of ``operation`` (with ``outcome``, if given)."""
        query = select(audit).where(audit.c.operation == operation)
        if outcome is not None:
            query = query.where(audit.c.outcome == outcome)
        with self.engine.connect() as connection:
            row = connection.execute(query.order_by(audit.c.id.desc()).limit(1)).mappings().first()
        return None if row is None else {**row, "at": _utc(row["at"])}


def _holder_is_dead(holder: str) -> bool:
    """Whether a lock holder ('user@host pid N') is a process on this host that no longer runs."""
    match = re.match(r"^.*@(?P<host>[^ ]+) pid (?P<pid>\d+)$", holder)
    if not match or match["host"] != socket.gethostname():
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie has exited but not been reaped: it holds nothing any more
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def _revision(row: Any) -> RevisionRecord:
    return RevisionRecord(row["kind"], row["name"], row["revision"], row["action"], row["outcome"],
                          row["model_version"], row["spec_digest"], row["user"], row["git_commit"],
                          _utc(row["created_at"]), row["message"])
