"""Syncing monitor actors into the state store, carrying out their queued actions, and the drift gate."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mlopsfile.controller.gates import DriftWindows, evaluate
from mlopsfile.controller.monitors import BatchFeed, MonitorSync
from mlopsfile.errors import LockError, MlopsfileError
from mlopsfile.resources import PublishedRun, RolloutSettings
from mlopsfile.state.store import StateStore
from runtime.traffic import ArmStats


class Actors:
    """The monitor driver's interface, in memory: what an actor would answer."""

    def __init__(self) -> None:
        self.incarnation = "a1"
        self.verdicts: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.acks: list[tuple[Any, str, str]] = []
        self.fed: list[tuple[str, str, str, str, float]] = []

    def window(self, seq: int, drift: bool, arm: str = "stable/1") -> None:
        self.verdicts.append({"seq": seq, "time": time.time(), "arm": arm, "is_drift": drift, "statistic": 0.2,
                              "p_value": 0.001 if drift else 0.4, "rows": 200, "feature_p_values": {"x": 0.4}})

    def request(self, action_id: int, kind: str, deployment: str | None = None) -> None:
        record = {"seq": action_id, "time": time.time(), "verdict_seq": 1, "type": kind, "outcome": "requested",
                  "message": None}
        self.actions.append(record)
        self.pending.append({"id": action_id, "type": kind, "deployment": deployment, "verdict_seq": 1})

    def check_published(self, name: str, arm: str, published: Any, target: str, sample: float) -> int:
        self.fed.append((name, arm, published.run_id, target, sample))
        return published.rows

    def history(self, name: str, since: int = 0) -> dict[str, Any]:
        return {"incarnation": self.incarnation, "verdicts": [v for v in self.verdicts if v["seq"] > since],
                "actions": list(self.actions)}

    def pending_actions(self, name: str) -> list[dict[str, Any]]:
        return list(self.pending)

    def ack_action(self, name: str, action_id: Any, outcome: str, message: str) -> None:
        self.acks.append((action_id, outcome, message))
        self.pending = [p for p in self.pending if p["id"] != action_id]
        for record in self.actions:
            if record["seq"] == action_id:
                record.update(outcome=outcome, message=message)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def test_new_windows_are_stored_once_and_survive_an_actor_restart(store: StateStore) -> None:
    actors = Actors()
    sync = MonitorSync(store, actors, lambda kind, target: "nothing")
    actors.window(1, False)
    actors.window(2, True)
    first = sync.sync([("m", "live")])[0]
    again = sync.sync([("m", "live")])[0]
    assert (first.new_verdicts, first.drifted, again.new_verdicts) == (2, 1, 0)
    actors.incarnation, actors.verdicts = "a2", []  # a restarted actor numbers its windows from 1 again
    actors.window(1, True)
    assert sync.sync([("m", "live")])[0].new_verdicts == 1
    stored = store.drift_verdicts("m")
    assert [(v.seq, v.is_drift) for v in stored] == [(1, False), (2, True), (1, True)]
    assert stored[-1].detail["feature_p_values"] == {"x": 0.4}


def test_queued_actions_run_once_and_their_outcome_is_recorded(store: StateStore) -> None:
    actors = Actors()
    done: list[tuple[str, str]] = []

    def run(kind: str, target: str) -> str:
        done.append((kind, target))
        if kind == "run":
            raise MlopsfileError("the batch job failed: no input")
        return "rolled back to revision 1"

    actors.request(1, "rollback")
    actors.request(2, "run", "rescore")
    report = MonitorSync(store, actors, run).sync([("m", "live")])[0]
    assert done == [("rollback", "live"), ("run", "rescore")]
    assert actors.acks == [(1, "done", "rolled back to revision 1"), (2, "failed", "the batch job failed: no input")]
    assert [(a.type, a.outcome) for a in store.drift_actions("m")] == [("rollback", "done"), ("run", "failed")]
    assert len(report.actions) == 2
    MonitorSync(store, actors, run).sync([("m", "live")])
    assert len(done) == 2  # nothing is carried out twice


def test_an_action_waits_while_an_apply_holds_the_lock(store: StateStore) -> None:
    actors = Actors()
    actors.request(1, "rollback")

    def locked(kind: str, target: str) -> str:
        raise LockError("the state lock is held by apply")

    MonitorSync(store, actors, locked).sync([("m", "live")])
    assert actors.acks == [] and len(actors.pending) == 1
    MonitorSync(store, actors, lambda kind, target: "done now").sync([("m", "live")])
    assert actors.acks == [(1, "done", "done now")]


def test_reading_history_carries_out_nothing(store: StateStore) -> None:
    actors = Actors()
    actors.request(1, "rollback")
    actors.window(1, True)
    MonitorSync(store, actors, lambda kind, target: pytest.fail("acted")).sync([("m", "live")], act=False)
    assert len(actors.pending) == 1 and len(store.drift_verdicts("m")) == 1


GATED = RolloutSettings(strategy="canary", steps=((50.0, 60.0),), min_requests=10, drift_monitor="live-drift")


def _traffic(requests: int) -> ArmStats:
    stats = ArmStats()
    for _ in range(requests):
        stats.record(5.0, True)
    return stats


def test_a_drift_gate_waits_for_a_window_then_passes_or_aborts() -> None:
    waiting = evaluate(_traffic(50), GATED, DriftWindows("live-drift", 0, 0))
    assert not waiting.enough and waiting.failed == []
    clean = evaluate(_traffic(50), GATED, DriftWindows("live-drift", 2, 0, 0.3))
    assert clean.enough and clean.failed == []
    drifted = evaluate(_traffic(3), GATED, DriftWindows("live-drift", 1, 1, 1e-5))
    assert [g.name for g in drifted.failed] == ["drift"]  # before min_requests: drift does not get better
    assert "1 of 1 candidate windows drifted, lowest p-value 1e-05" in drifted.failed[0].text
    unreadable = evaluate(_traffic(50), GATED, DriftWindows("live-drift", 0, 0, readable=False))
    assert not unreadable.enough and unreadable.failed == []


def test_the_controller_counts_only_the_candidates_windows_since_the_rollout_started(store: StateStore) -> None:
    from mlopsfile.controller.rollouts import RolloutController

    started = datetime.now(timezone.utc)
    before = (started - timedelta(seconds=30)).timestamp()
    verdicts = [
        {"seq": 1, "time": before, "arm": "candidate/2", "is_drift": True, "p_value": 0.0},
        {"seq": 2, "time": started.timestamp() + 1, "arm": "stable/1", "is_drift": True, "p_value": 0.0},
        {"seq": 3, "time": started.timestamp() + 2, "arm": "candidate/2", "is_drift": False, "p_value": 0.5},
        {"seq": 4, "time": started.timestamp() + 3, "arm": "candidate/2", "is_drift": True, "p_value": 0.01},
    ]
    controller = RolloutController(store, driver=None, project="demo", drift=lambda name: verdicts)  # type: ignore[arg-type]
    assert controller._drift_windows("live-drift", "candidate/2", started) == DriftWindows("live-drift", 2, 1, 0.01)


def test_a_stale_copy_never_takes_an_action_back_to_requested(store: StateStore) -> None:
    at = time.time()
    record = {"seq": 1, "time": at, "verdict_seq": 1, "type": "rollback"}
    store.record_monitor_actions("m", "a1", [{**record, "outcome": "requested"}])
    store.record_monitor_actions("m", "a1", [{**record, "outcome": "done", "message": "rolled back"}])
    store.record_monitor_actions("m", "a1", [{**record, "outcome": "requested"}])  # read before the ack
    assert [(a.outcome, a.message) for a in store.drift_actions("m")] == [("done", "rolled back")]


def _published(run_id: str, version: str = "3") -> PublishedRun:
    return PublishedRun(run_id=run_id, run_key="k", model_version=version, model_digest="d", input_digest="i",
                        rows=500, started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:01:00+00:00",
                        path=f"/out/runs/{run_id}")


def test_each_published_batch_run_is_handed_to_its_monitor_once(store: StateStore) -> None:
    actors = Actors()
    sync = MonitorSync(store, actors, lambda kind, target: "nothing")
    first = BatchFeed(monitor="m", published=_published("r1"), target="predictions", sample=0.5)
    sync.sync([("m", "nightly")], feeds=[first])
    sync.sync([("m", "nightly")], feeds=[first], act=False)
    sync.sync([("m", "nightly")], feeds=[BatchFeed(monitor="m", published=_published("r2", "4"), target="predictions",
                                                   sample=0.5)])
    assert actors.fed == [("m", "stable/3", "r1", "predictions", 0.5), ("m", "stable/4", "r2", "predictions", 0.5)]
