"""The rollout state machine and reconcile loop against a real state store and an in-memory driver.

Time is a hand-advanced clock; the loop's ``sleep`` advances it and lets the fake ingress
answer a batch of requests split by the live traffic table, so whole rollouts run in
milliseconds with the same transitions as on Ray.
"""

from __future__ import annotations

import inspect
import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import insert

from mlopsfile.controller.loop import rollout_lock_scope
from mlopsfile.controller.status import rollout_view
from mlopsfile.drivers.base import RolloutDriver
from mlopsfile.errors import MlopsfileError
from mlopsfile.plan.types import Action, Change, RolloutChange
from mlopsfile.resources import RolloutSettings
from mlopsfile.state.rollouts import RolloutRecord
from mlopsfile.state.store import who
from mlopsfile.state.tables import locks
from tests.unit.conftest import Factory
from tests.unit.rollout_fakes import AB, BLUE_GREEN, CANARY, Crash, FakeDriver, World, open_store


@pytest.fixture
def world(tmp_path: Path, make: Factory) -> World:
    return World(tmp_path, make)


def keeping(record: RolloutRecord) -> bool:
    """Promoted, the previous version still warm: where a rollback is instant."""
    return record.state == "keeping"


def assert_back_on_stable(world: World) -> None:
    live = world.driver.live["iris"]
    assert live.candidate is None
    assert live.serving is not None and live.serving.model_version == "1"
    assert live.traffic is not None and live.traffic.mode == "split"
    assert [(a.role, a.version, a.weight) for a in live.traffic.arms] == [("stable", "1", 100.0)]


def test_the_fake_driver_follows_the_protocol() -> None:
    methods = [name for name, value in vars(RolloutDriver).items() if callable(value) and not name.startswith("_")]
    assert len(methods) == 7
    for name in methods:
        protocol = inspect.signature(getattr(RolloutDriver, name)).parameters
        assert list(inspect.signature(getattr(FakeDriver, name)).parameters) == list(protocol), name


# -- canary ----------------------------------------------------------------------------


def test_canary_walks_its_steps_then_promotes_once(world: World) -> None:
    record = world.start(CANARY)
    assert (record.state, record.step) == ("step", 0)
    assert world.driver.calls == ["deploy_candidate models:/iris/2 on None"]
    final = world.loop()
    assert final.state == "completed"
    assert world.driver.candidate_weights() == [20.0, 50.0, 100.0]
    step_one, step_two, promoted, done = (world.messages(t) for t in ("step 1 passed", "all 2 steps passed",
                                                                      "promoted:", "completed:"))
    assert len(step_one) == len(step_two) == len(promoted) == len(done) == 1
    assert step_one[0] >= 60 and step_two[0] - step_one[0] >= 60
    assert done[0] - promoted[0] >= CANARY.keep_previous_s
    live = world.driver.live["iris"]
    assert live.serving is not None and live.serving.model_version == "2"
    assert live.ownership is not None and (live.ownership.revision, live.ownership.role) == (2, "stable")
    assert live.traffic is None and live.candidate is None
    assert world.outcome() == "promoted"
    assert len(world.audits("promote")) == 1
    assert world.store.holds() == {}
    assert world.store.active_rollouts() == []


def test_a_failing_error_rate_gate_aborts(tmp_path: Path, make: Factory) -> None:
    world = World(tmp_path, make, error_rate=0.2)
    world.start(CANARY)
    final = world.loop()
    assert final.state == "aborted"
    assert "gate failed at step 1 (20%)" in (final.message or "")
    assert "error rate 20.00% > 1.00%" in (final.message or "")
    assert world.messages("aborted:")[0] < 60  # judged on evidence, not after the pause
    assert_back_on_stable(world)
    assert world.outcome() == "aborted"
    hold = world.store.holds()["iris"]
    assert (hold.spec_digest, hold.outcome, hold.live_version) == ("spec-iris-2", "aborted", "1")
    assert world.driver.candidate_weights()[-1] == 0.0
    assert world.messages("promoted") == []


def test_too_few_requests_hold_the_step_past_its_pause(tmp_path: Path, make: Factory) -> None:
    world = World(tmp_path, make, error_rate=0.5)
    world.start(CANARY.model_copy(update={"min_requests": 100}))
    for _ in range(10):  # 300 s, five times the pause; 2 candidate requests a tick (20% of 10), one failing
        record = world.tick(seconds=30, requests=10)
        assert (record.state, record.step) == ("step", 0)
    assert record.gates[0]["name"] == "min_requests" and not record.gates[0]["ok"]
    world.error_rate = 0.0
    record = world.tick(requests=1000)  # 200 good requests: 20 + 200 ≥ 100, error rate 10/220 > 1%
    assert record.state == "aborted"


def test_enough_requests_after_the_pause_move_on(tmp_path: Path, make: Factory) -> None:
    world = World(tmp_path, make)
    world.start(CANARY.model_copy(update={"min_requests": 100}))
    for _ in range(10):
        assert world.tick(requests=10).step == 0
    record = world.tick(requests=500)
    assert (record.state, record.step) == ("step", 1)
    assert world.driver.candidate_weights() == [20.0, 50.0]


def test_a_slow_candidate_fails_the_p99_gate(world: World) -> None:
    world.driver.candidate_latency_ms = 80.0
    world.start(CANARY.model_copy(update={"max_p99_ms": 50.0}))
    final = world.loop()
    assert final.state == "aborted"
    assert "p99 100 ms > 50 ms" in (final.message or "")
    assert [gate["name"] for gate in final.gates] == ["min_requests", "error_rate", "p99_ms"]


def test_status_shows_the_step_the_countdown_and_the_window(world: World) -> None:
    world.start(CANARY)
    for _ in range(2):
        record = world.tick(seconds=20)
    live = world.driver.live["iris"]
    view = rollout_view(record, live, world.driver.traffic_stats(live)["arms"], world.clock.now)
    assert (view.strategy, view.state, view.step, view.next_step_in_s) == ("canary", "step", "1/2 (20%)", 20.0)
    arms = {(arm.role, arm.version): (arm.weight, arm.requests, arm.errors) for arm in view.arms}
    assert arms == {("stable", "1"): (80.0, 80, 0), ("candidate", "2"): (20.0, 20, 0)}


@pytest.mark.parametrize("crash_at", [50.0, 100.0], ids=["after-step-recorded", "before-promotion-recorded"])
def test_a_restarted_loop_resumes_without_repeating(world: World, crash_at: float) -> None:
    world.start(CANARY)
    world.driver.crash_when = lambda traffic: traffic.weight_of("candidate") == crash_at
    with pytest.raises(Crash):
        world.loop()
    record = world.store.active_rollout("iris")
    assert record is not None
    assert (record.state, record.step) == (("step", 1) if crash_at == 50.0 else ("promoting", 1))
    # The killed process left its lock behind; its pid is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    with world.store.engine.begin() as connection:
        connection.execute(insert(locks).values(
            scope=rollout_lock_scope("iris"), lock_id="deadbeef0000", operation="reconcile",
            holder=f"{who()}@{socket.gethostname()} pid {dead.pid}", created_at=world.clock.now))
    restarted = world.new_controller(open_store(world.path))
    final = world.loop(restarted)
    assert final.state == "completed"
    assert world.driver.candidate_weights() == [20.0, 50.0, 100.0]
    assert len(world.messages("step 1 passed")) == 1
    assert len(world.messages("promoted:")) == 1
    assert len(world.audits("promote")) == 1
    assert world.outcome() == "promoted"
    assert [row["message"] for row in world.audits("force-unlock")] == [
        f"took over lock deadbeef0000 of {who()}@{socket.gethostname()} pid {dead.pid}: "
        "that process is gone",
    ]
    assert world.store.current_lock(rollout_lock_scope("iris")) is None


# -- by hand ---------------------------------------------------------------------------


def test_promote_by_hand_skips_the_remaining_steps(world: World) -> None:
    world.start(CANARY.model_copy(update={"steps": ((10.0, None), (50.0, None))}))
    assert world.tick().state == "step"
    requested = world.controller.request("iris", "promote")
    assert requested.requested == "promote"
    record = world.tick()
    assert (record.state, record.message, record.requested) == ("promoting", "promoted by hand at step 1", None)
    with pytest.raises(MlopsfileError, match="already promoted"):
        world.controller.request("iris", "promote")
    assert world.loop().state == "completed"
    assert world.driver.candidate_weights() == [10.0, 100.0]
    assert world.outcome() == "promoted"


def test_abort_by_hand(world: World) -> None:
    world.start(CANARY)
    for _ in range(7):
        world.tick()
    assert world.store.active_rollout("iris") is not None
    world.controller.request("iris", "abort")
    record = world.tick()
    assert (record.state, record.message) == ("aborted", "aborted by hand (`mlopsfile abort`)")
    assert_back_on_stable(world)
    assert world.outcome() == "aborted"
    assert world.store.holds()["iris"].outcome == "aborted"


def test_requests_need_a_rollout(world: World) -> None:
    with pytest.raises(MlopsfileError, match="has no rollout in progress"):
        world.controller.request("iris", "promote")


def test_rollback_while_keeping_flips_back_to_the_warm_version(world: World) -> None:
    world.start(CANARY)
    record = world.loop(until=keeping)
    assert record.state == "keeping"
    assert world.outcome() == "promoted"
    record = world.controller.rollback_warm(record)
    assert record.state == "rolled-back"
    assert_back_on_stable(world)
    assert world.outcome() == "rolled-back"
    assert world.store.holds()["iris"].outcome == "rolled-back"
    assert not any(call.startswith("replace_serving") for call in world.driver.calls)


def test_abort_requested_while_keeping_is_a_warm_rollback(world: World) -> None:
    world.start(CANARY)
    world.loop(until=keeping)
    world.controller.request("iris", "abort")
    assert world.tick().state == "rolled-back"
    assert_back_on_stable(world)
    assert world.outcome() == "rolled-back"


def test_a_new_rollout_supersedes_the_one_in_progress(world: World) -> None:
    first = world.start(CANARY)
    world.tick()
    second = world.start(CANARY, version="3", revision=3)
    old = world.store.rollout(first.id)
    assert old is not None and old.state == "superseded"
    assert world.outcome(2) == "superseded"
    assert (second.state, second.to_version) == ("step", "3")
    live = world.driver.live["iris"]
    assert live.candidate is not None and live.candidate.serving.model_version == "3"
    assert live.traffic is not None and [(a.role, a.version, a.weight) for a in live.traffic.arms] == [
        ("stable", "1", 80.0), ("candidate", "3", 20.0)]
    assert world.store.holds() == {}


# -- blue-green ------------------------------------------------------------------------


def test_blue_green_smoke_failure_aborts(world: World) -> None:
    world.driver.smoke_status = 503
    world.start(BLUE_GREEN)
    assert world.driver.calls == ["deploy_candidate models:/iris/2 on /iris/preview"]
    final = world.loop()
    assert final.state == "aborted"
    assert "preview checks failed" in (final.message or "") and "(first error: boom)" in (final.message or "")
    assert world.driver.smoke_calls == [("/iris/preview", 20)]
    assert 100.0 not in world.driver.candidate_weights()
    assert_back_on_stable(world)
    assert world.store.holds()["iris"].outcome == "aborted"


def test_blue_green_checks_then_switches_at_once(world: World) -> None:
    world.start(BLUE_GREEN)
    final = world.loop()
    assert final.state == "completed"
    assert world.driver.smoke_calls == [("/iris/preview", 20)]
    assert world.driver.candidate_weights() == [0.0, 100.0]
    assert world.messages("completed:")[0] - world.messages("promoted:")[0] >= 120
    live = world.driver.live["iris"]
    assert live.serving is not None and live.serving.model_version == "2" and live.candidate is None
    assert world.outcome() == "promoted"


def test_blue_green_without_pause_waits_for_promote(world: World) -> None:
    world.start(BLUE_GREEN.model_copy(update={"pause_s": None}))
    for _ in range(5):
        record = world.tick(seconds=600)
    assert (record.state, record.step) == ("preview", 1)
    world.controller.request("iris", "promote")
    assert world.tick().state == "promoting"


# -- experiments -----------------------------------------------------------------------


def test_ab_test_runs_its_duration_then_ends_with_a_hold(world: World) -> None:
    record = world.start(AB, experiment="4")
    assert record.state == "running"
    traffic = world.driver.live["iris"].traffic
    assert traffic is not None and (traffic.mode, traffic.sticky_header) == ("ab", "x-user-id")
    assert [(a.role, a.version, a.weight) for a in traffic.arms] == [("stable", "1", 70.0), ("candidate", "4", 30.0)]
    assert world.driver.calls == ["deploy_candidate models:/rose/4 on None"]
    for _ in range(5):
        assert world.tick(seconds=600).state == "running"
    final = world.tick(seconds=600)
    assert final.state == "ended"
    assert "ran its duration of 3600s" in (final.message or "")
    assert "stable version 1: 210 requests, 0 errors; candidate version 4: 90 requests" in (final.message or "")
    assert_back_on_stable(world)
    assert world.outcome() == "ended"
    hold = world.store.holds()["iris"]
    assert (hold.outcome, hold.spec_digest) == ("ended", "spec-iris-2")


def test_shadow_mirrors_without_moving_callers(world: World) -> None:
    world.start(RolloutSettings(strategy="shadow", sample=0.25), experiment="4")
    traffic = world.driver.live["iris"].traffic
    assert traffic is not None and (traffic.mode, traffic.shadow_sample, traffic.sticky_header) == ("shadow", 0.25, None)
    assert traffic.weight_of("candidate") == 0.0
    assert world.tick().state == "running"


@pytest.mark.parametrize("ending", ["rolled-back", "ended", "ended-by-spec"])
def test_an_interrupted_ending_keeps_its_outcome(world: World, ending: str) -> None:
    world.driver.crash_when = lambda traffic: len(traffic.arms) == 1  # crash when switching to stable only
    if ending == "rolled-back":
        world.start(CANARY)
        with pytest.raises(Crash):
            world.controller.rollback_warm(world.loop(until=keeping))
    elif ending == "ended":
        world.start(AB, experiment="4")
        with pytest.raises(Crash):
            for _ in range(7):
                world.tick(seconds=600)
    else:
        world.start(AB, experiment="4")
        live = world.driver.observe_one("iris")
        assert live is not None
        end = Change(action=Action.ROLLOUT, name="iris", reason="test", desired=world.desired(RolloutSettings()),
                     revision=3, rollout=RolloutChange(strategy="direct", operation="end", description="end"))
        with pytest.raises(Crash):
            world.controller.end(end, live)
    record = world.store.active_rollout("iris")
    assert record is not None and record.state == "aborting"
    final = world.new_controller(open_store(world.path)).tick(record)
    outcome = ending.removesuffix("-by-spec")
    assert (final.state, world.outcome()) == (outcome, outcome)
    holds = world.store.holds()
    assert (holds["iris"].outcome if "iris" in holds else None) == (None if ending == "ended-by-spec" else outcome)
