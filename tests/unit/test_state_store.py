"""The state store on a SQLite file: locks, revisions and the audit log."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlopsfile.errors import LockError
from mlopsfile.state.store import StateStore


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLOPSFILE_USER", "alice")
    # A directory that does not exist yet: the store creates it.
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"


@pytest.fixture
def store(url: str) -> StateStore:
    return StateStore(url)


def record(store: StateStore, name: str, revision: int, *, outcome: str = "applied", kind: str = "Deployment",
           action: str = "update", version: str = "1") -> None:
    store.record_revision(
        kind=kind, name=name, revision=revision, action=action, outcome=outcome, spec_digest=f"spec-{revision}",
        model_version=version, model_digest=f"sha256:{version}", config={"replicas": revision},
        message=None, git_commit="abc123", plan_id="plan-1",
    )


# -- locks -----------------------------------------------------------------------------


def test_a_second_acquire_fails_and_names_the_lock(url: str) -> None:
    first, second = StateStore(url), StateStore(url)
    held = first.acquire_lock("apply")
    with pytest.raises(LockError) as caught:
        second.acquire_lock("apply")
    message = str(caught.value)
    assert f"lock id {held.lock_id}" in message
    assert f"mlopsfile force-unlock {held.lock_id}" in message
    assert "alice@" in message
    assert held.holder.startswith("alice@")


def test_release_lets_the_next_run_in(store: StateStore) -> None:
    held = store.acquire_lock("apply")
    # Read back from SQLite, the lock must equal the one handed out, time zone included.
    assert store.current_lock() == held
    store.release_lock(held)
    assert store.current_lock() is None
    again = store.acquire_lock("destroy")
    assert again.lock_id != held.lock_id
    assert store.current_lock() == again


def test_releasing_someone_elses_lock_does_nothing(store: StateStore) -> None:
    held = store.acquire_lock("apply")
    other = store.acquire_lock("apply", scope="watch")
    store.release_lock(other)  # wrong scope for this lock id: the apply lock stays
    store.release_lock(held, scope="watch")
    assert store.current_lock() == held


def test_force_unlock_by_id(store: StateStore) -> None:
    held = store.acquire_lock("apply")
    assert store.force_unlock("not-the-id") is False
    assert store.current_lock() == held
    assert store.force_unlock(held.lock_id) is True
    assert store.current_lock() is None
    assert store.force_unlock(held.lock_id) is False
    store.acquire_lock("apply")


def test_scopes_lock_independently(store: StateStore) -> None:
    store.acquire_lock("apply", scope="apply")
    watch = store.acquire_lock("watch", scope="watch")
    assert store.current_lock("watch") == watch


# -- revisions -------------------------------------------------------------------------


def test_last_revisions_is_the_highest_per_name(store: StateStore) -> None:
    assert store.last_revisions() == {}
    for number in (1, 2, 3):
        record(store, "iris", number)
    record(store, "iris", 4, outcome="failed")
    record(store, "rose", 1)
    record(store, "iris", 9, kind="Monitor")
    assert store.last_revisions() == {"iris": 4, "rose": 1}
    assert store.last_revisions("Monitor") == {"iris": 9}


def test_history_keeps_the_order_things_happened(store: StateStore) -> None:
    record(store, "iris", 1, action="create", version="1")
    record(store, "rose", 1, action="create")
    record(store, "iris", 2, action="replace", version="2")
    record(store, "iris", 3, action="delete", outcome="failed", version="2")
    history = store.history("iris")
    assert [(r.revision, r.action, r.outcome, r.model_version) for r in history] == [
        (1, "create", "applied", "1"), (2, "replace", "applied", "2"), (3, "delete", "failed", "2"),
    ]
    assert {(r.user, r.git_commit, r.name) for r in history} == {("alice", "abc123", "iris")}
    assert history[0].created_at <= history[-1].created_at
    assert all(r.created_at.utcoffset() is not None and r.created_at.utcoffset().total_seconds() == 0 for r in history)


def test_latest_applied_skips_failures(store: StateStore) -> None:
    record(store, "iris", 1)
    record(store, "iris", 2, version="2")
    record(store, "iris", 3, outcome="failed", version="3")
    latest = store.latest_applied()
    assert (latest["iris"].revision, latest["iris"].model_version) == (2, "2")


def test_revisions_survive_reopening(url: str) -> None:
    record(StateStore(url), "iris", 5)
    assert StateStore(url).last_revisions() == {"iris": 5}


# -- audit -----------------------------------------------------------------------------


def test_audit_rows_newest_first(store: StateStore) -> None:
    store.audit(operation="apply", outcome="started", git_commit="abc123")
    store.audit(operation="apply", outcome="applied", resource="deployment/iris", action="create", revision=1,
                message="created")
    rows = store.audit_log()
    assert [(r["operation"], r["outcome"], r["resource"], r["action"], r["revision"]) for r in rows] == [
        ("apply", "applied", "deployment/iris", "create", 1),
        ("apply", "started", None, None, None),
    ]
    assert rows[0]["message"] == "created"
    assert rows[1]["git_commit"] == "abc123"
    assert {r["user"] for r in rows} == {"alice"}
    assert all(r["host"] for r in rows)
    assert all(r["at"].utcoffset() is not None and r["at"].utcoffset().total_seconds() == 0 for r in rows)
    assert len(store.audit_log(limit=1)) == 1
