"""Rollout rows, holds and revision outcomes in the state store; locks of dead processes."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert

from mlopsfile.errors import LockError
from mlopsfile.state.rollouts import ACTIVE_STATES, ENDED_STATES, RolloutRecord
from mlopsfile.state.store import StateStore, who
from mlopsfile.state.tables import locks
from tests.unit.rollout_fakes import open_store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    monkeypatch.setenv("MLOPSFILE_USER", "alice")
    return open_store(tmp_path / "state.db")


def start(store: StateStore, revision: int = 2, to_version: str = "2", name: str = "iris") -> RolloutRecord:
    return store.start_rollout(
        name=name, revision=revision, strategy="canary", state="step", from_version="1", to_version=to_version,
        spec_digest=f"spec-{revision}", desired={"name": name, "rollout": {"strategy": "canary"}},
        previous={"serving": {"model_version": "1"}},
    )


def revision(store: StateStore, number: int, action: str, outcome: str = "applied", message: str | None = "m") -> None:
    store.record_revision(kind="Deployment", name="iris", revision=number, action=action, outcome=outcome,
                          spec_digest="s", model_version=str(number), model_digest=None, config=None,
                          message=message, git_commit=None, plan_id=None)


# -- rollout rows ----------------------------------------------------------------------


def test_a_started_rollout_reads_back_whole(store: StateStore) -> None:
    record = start(store)
    assert record.active and record.state == "step" and record.step == 0
    assert (record.name, record.revision, record.strategy, record.from_version, record.to_version) == (
        "iris", 2, "canary", "1", "2")
    assert record.desired == {"name": "iris", "rollout": {"strategy": "canary"}}
    assert record.previous == {"serving": {"model_version": "1"}}
    assert (record.baseline, record.gates, record.requested, record.ended_at) == ({}, [], None, None)
    assert record.started_at.tzinfo is not None
    assert store.active_rollout("iris") == record
    assert store.active_rollouts() == [record]
    assert store.last_rollout("iris") == record
    assert store.rollout(record.id + 100) is None
    assert store.active_rollout("rose") is None


def test_advance_is_a_compare_and_set_on_the_state(store: StateStore) -> None:
    record = start(store)
    assert store.advance_rollout(record.id, "step", state="promoting", message="all steps passed")
    # A second loop that read the same row tries the same transition: it must lose.
    assert not store.advance_rollout(record.id, "step", state="promoting", message="again")
    assert not store.advance_rollout(record.id, "step", state="aborting")
    fresh = store.rollout(record.id)
    assert fresh is not None and (fresh.state, fresh.message) == ("promoting", "all steps passed")


def test_advance_is_a_compare_and_set_on_the_step(store: StateStore) -> None:
    record = start(store)
    assert store.advance_rollout(record.id, "step", expected_step=0, step=1, step_started_at=T0)
    assert not store.advance_rollout(record.id, "step", expected_step=0, step=1, step_started_at=T0 + timedelta(1))
    assert store.advance_rollout(record.id, "step", expected_step=1, step=2)
    fresh = store.rollout(record.id)
    assert fresh is not None and fresh.step == 2 and fresh.step_started_at == T0


def test_advance_stores_json_and_times(store: StateStore) -> None:
    record = start(store)
    baseline = {"candidate/2": {"requests": 5, "buckets": [1, 2]}}
    gates = [{"name": "error_rate", "ok": True}]
    assert store.advance_rollout(record.id, "step", baseline=baseline, gates=gates, keep_until=T0, requested="abort")
    fresh = store.rollout(record.id)
    assert fresh is not None
    assert (fresh.baseline, fresh.gates, fresh.keep_until, fresh.requested) == (baseline, gates, T0, "abort")
    assert fresh.keep_until is not None and fresh.keep_until.utcoffset() == timedelta(0)
    assert fresh.updated_at >= fresh.started_at


@pytest.mark.parametrize("ended", ENDED_STATES)
def test_an_ended_state_stamps_ended_at_and_leaves_the_active_set(store: StateStore, ended: str) -> None:
    record = start(store)
    assert store.advance_rollout(record.id, "step", state=ended)
    fresh = store.rollout(record.id)
    assert fresh is not None and not fresh.active and fresh.ended_at is not None
    assert store.active_rollout("iris") is None and store.active_rollouts() == []
    assert store.last_rollout("iris") == fresh


def test_active_and_ended_states_do_not_overlap() -> None:
    assert not set(ACTIVE_STATES) & set(ENDED_STATES)


def test_a_new_start_supersedes_the_active_rollout(store: StateStore) -> None:
    first = start(store)
    other = start(store, name="rose")
    second = start(store, revision=3, to_version="3")
    old = store.rollout(first.id)
    assert old is not None and old.state == "superseded" and old.ended_at is not None
    assert old.message == "superseded by the rollout of revision 3"
    assert store.active_rollout("iris") == second
    assert [r.id for r in store.active_rollouts()] == [other.id, second.id]
    assert store.last_rollout("iris") == second
    # An ended rollout is history: a later start leaves it alone.
    assert store.advance_rollout(second.id, "step", state="completed", message="done")
    start(store, revision=4, to_version="4")
    done = store.rollout(second.id)
    assert done is not None and (done.state, done.message) == ("completed", "done")


def test_request_rollout_action(store: StateStore) -> None:
    record = start(store)
    store.request_rollout_action(record.id, "promote")
    fresh = store.rollout(record.id)
    assert fresh is not None and (fresh.state, fresh.requested) == ("step", "promote")


# -- holds -----------------------------------------------------------------------------


def test_holds_put_replace_and_clear(store: StateStore) -> None:
    assert store.holds() == {}
    store.put_hold(name="iris", spec_digest="spec-1", outcome="aborted", reason="gate failed", live_version="1")
    store.put_hold(name="rose", spec_digest="spec-9", outcome="ended", reason="ran its duration", live_version=None)
    store.put_hold(name="iris", spec_digest="spec-2", outcome="rolled-back", reason="by hand", live_version="3")
    holds = store.holds()
    assert sorted(holds) == ["iris", "rose"]
    iris = holds["iris"]
    assert (iris.spec_digest, iris.outcome, iris.reason, iris.live_version) == ("spec-2", "rolled-back", "by hand", "3")
    assert iris.at.utcoffset() == timedelta(0)
    store.clear_hold("iris")
    store.clear_hold("tulip")
    assert sorted(store.holds()) == ["rose"]


# -- revision outcomes -----------------------------------------------------------------


def test_set_revision_outcome_only_touches_rollout_and_rollback_rows(store: StateStore) -> None:
    revision(store, 1, "create")
    revision(store, 2, "rollout", outcome="in-progress")
    revision(store, 3, "rollback")
    revision(store, 4, "update")
    for number in (1, 2, 3, 4):
        store.set_revision_outcome("iris", number, "promoted", f"outcome of {number}")
    rows = [(r.revision, r.action, r.outcome, r.message) for r in store.history("iris")]
    assert rows == [(1, "create", "applied", "m"), (2, "rollout", "promoted", "outcome of 2"),
                    (3, "rollback", "promoted", "outcome of 3"), (4, "update", "applied", "m")]


def test_set_revision_outcome_keeps_the_message_unless_given(store: StateStore) -> None:
    revision(store, 2, "rollout", outcome="in-progress", message="canary to 2")
    store.set_revision_outcome("iris", 2, "aborted")
    store.set_revision_outcome("rose", 2, "completed", "other deployment")
    assert [(r.outcome, r.message) for r in store.history("iris")] == [("aborted", "canary to 2")]
    assert store.history("rose") == []


# -- locks of processes that are gone ----------------------------------------------------


def plant_lock(store: StateStore, holder: str, scope: str = "apply", lock_id: str = "oldlock00001") -> None:
    with store.engine.begin() as connection:
        connection.execute(insert(locks).values(scope=scope, lock_id=lock_id, holder=holder, operation="apply",
                                                created_at=T0))


def here(pid: int) -> str:
    return f"bob@{socket.gethostname()} pid {pid}"


@pytest.fixture
def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    child = subprocess.Popen(["sleep", "30"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over(store: StateStore, dead_pid: int) -> None:
    plant_lock(store, here(dead_pid), scope="rollout:iris")
    lock = store.acquire_lock("reconcile", scope="rollout:iris")
    assert store.current_lock("rollout:iris") == lock
    assert lock.holder == f"alice@{socket.gethostname()} pid {os.getpid()}"
    audit = store.audit_log()[0]
    assert (audit["operation"], audit["outcome"], audit["resource"]) == ("force-unlock", "applied", "rollout:iris")
    assert audit["message"] == f"took over lock oldlock00001 of {here(dead_pid)}: that process is gone"


def test_a_lock_of_a_live_process_is_kept(store: StateStore, live_pid: int) -> None:
    plant_lock(store, here(live_pid))
    with pytest.raises(LockError, match=f"locked by {here(live_pid)}"):
        store.acquire_lock("apply")
    assert store.current_lock() is not None and store.current_lock().lock_id == "oldlock00001"  # type: ignore[union-attr]


def test_a_lock_of_this_very_process_is_kept(store: StateStore) -> None:
    plant_lock(store, here(os.getpid()))
    with pytest.raises(LockError):
        store.acquire_lock("apply")


@pytest.mark.parametrize("holder", ["bob@some-other-host.example pid {pid}", "bob on {host}, pid {pid}", "{pid}"])
def test_a_lock_that_may_be_alive_elsewhere_is_kept(store: StateStore, dead_pid: int, holder: str) -> None:
    plant_lock(store, holder.format(pid=dead_pid, host=socket.gethostname()))
    with pytest.raises(LockError, match="oldlock00001"):
        store.acquire_lock("apply")
    assert [row for row in store.audit_log() if row["operation"] == "force-unlock"] == []


def test_a_zombie_holds_nothing(store: StateStore) -> None:
    child = subprocess.Popen(["true"])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not stat.read_text().split(") ", 1)[1].startswith("Z"):
            time.sleep(0.01)
        plant_lock(store, here(child.pid))
        assert store.acquire_lock("apply").holder.startswith("alice@")
    finally:
        child.wait()


def test_who_names_the_user(store: StateStore) -> None:
    assert who() == "alice"
