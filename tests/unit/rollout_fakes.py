"""Test doubles for the rollout controller: a hand-advanced clock, an in-memory RolloutDriver
and a World tying them to a real StateStore. Not collected (no test_ prefix)."""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import event

from mlopsfile.controller.loop import ReconcileLoop
from mlopsfile.controller.rollouts import RolloutController
from mlopsfile.plan.types import Action, Change, RolloutChange
from mlopsfile.resources import (
    DesiredDeployment,
    Experiment,
    Health,
    ObservedArm,
    ObservedDeployment,
    OnlineServing,
    Ownership,
    RolloutSettings,
    Traffic,
    candidate_app,
)
from mlopsfile.state.rollouts import RolloutRecord
from mlopsfile.state.store import StateStore
from runtime.traffic import ArmStats, arm_key
from tests.unit.conftest import Factory

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


_TEMPLATE: list[Path] = []


def open_store(path: Path) -> StateStore:
    """A real StateStore on a SQLite file at ``path``, made fast for tests: the tables are copied
    from a template made once (creating them costs a disk flush per table) and commits skip
    fsync. The SQL and its compare-and-sets are the ones the product runs."""
    if not path.exists():
        if not _TEMPLATE:
            folder = Path(tempfile.mkdtemp(prefix="mlopsfile-state-"))
            atexit.register(shutil.rmtree, folder, True)
            StateStore(f"sqlite:///{folder / 'template.db'}").engine.dispose()
            _TEMPLATE.append(folder / "template.db")
        shutil.copyfile(_TEMPLATE[0], path)
    store = StateStore(f"sqlite:///{path}")

    @event.listens_for(store.engine, "connect")
    def _no_fsync(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA journal_mode=MEMORY")

    store.engine.dispose()  # the connection that checked the tables predates the listener
    return store


RUNNING = Health(status="RUNNING", running_replicas=1, target_replicas=1)
CANARY = RolloutSettings(strategy="canary", steps=((20.0, 60.0), (50.0, 60.0)), keep_previous_s=120.0)
BLUE_GREEN = RolloutSettings(strategy="blue-green", preview_route="/iris/preview", smoke_requests=20, pause_s=0.0,
                             keep_previous_s=120.0)
AB = RolloutSettings(strategy="ab", weight=30.0, sticky_header="x-user-id", duration_s=3600.0)


class Crash(Exception):
    """Stands in for kill -9: the process stops between two statements."""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeDriver:
    """The RolloutDriver protocol over ObservedDeployment values kept in memory."""

    def __init__(self, live: ObservedDeployment) -> None:
        self.live = {live.name: live}
        self.counters: dict[str, ArmStats] = {}
        self.smoke_status = 200
        self.smoke_calls: list[tuple[str, int]] = []
        self.traffic_log: list[Traffic] = []
        self.calls: list[str] = []
        self.crash_when: Callable[[Traffic], bool] | None = None
        self.candidate_latency_ms = 3.0

    def _update(self, name: str, **values: Any) -> None:
        self.live[name] = self.live[name].model_copy(update=values)

    def observe_one(self, name: str) -> ObservedDeployment | None:
        return self.live.get(name)

    def deploy_candidate(self, name: str, serving: OnlineServing, ownership: Ownership,
                         preview_route: str | None) -> None:
        self.calls.append(f"deploy_candidate {serving.model_uri} on {preview_route}")
        self._update(name, candidate=ObservedArm(app=candidate_app(name), ownership=ownership, serving=serving,
                                                 health=RUNNING))

    def set_traffic(self, name: str, serving: OnlineServing, ownership: Ownership, traffic: Traffic) -> None:
        if self.crash_when is not None and self.crash_when(traffic):
            self.crash_when = None
            raise Crash
        self.traffic_log.append(traffic)
        self._update(name, serving=serving, ownership=ownership, traffic=traffic)

    def delete_candidate(self, name: str) -> None:
        self.calls.append("delete_candidate")
        self._update(name, candidate=None)

    def replace_serving(self, name: str, serving: OnlineServing, ownership: Ownership) -> None:
        self.calls.append(f"replace_serving {serving.model_uri} revision {ownership.revision}")
        self._update(name, serving=serving, ownership=ownership, traffic=None)

    def traffic_stats(self, observed: ObservedDeployment) -> dict[str, Any]:
        return {"arms": {key: stats.to_dict() for key, stats in self.counters.items()}}

    def smoke(self, route: str, body: dict[str, Any] | None, count: int) -> list[tuple[int, float, str]]:
        self.smoke_calls.append((route, count))
        return [(self.smoke_status, 4.0, "" if self.smoke_status < 400 else "boom")] * count

    # -- the test's side ----------------------------------------------------------------

    def serve(self, requests: int, candidate_error_rate: float = 0.0, name: str = "iris") -> None:
        """Answer ``requests`` requests, split by the live traffic table."""
        live = self.live[name]
        arms = [(a.role, a.version, a.weight) for a in live.traffic.arms] if live.traffic else []
        if not arms:
            assert live.serving is not None
            arms = [("stable", live.serving.model_version, 100.0)]
        for role, version, weight in arms:
            count = round(requests * weight / 100)
            failing = round(count * candidate_error_rate) if role == "candidate" else 0
            stats = self.counters.setdefault(arm_key(role, version), ArmStats())
            latency = self.candidate_latency_ms if role == "candidate" else 3.0
            for number in range(count):
                stats.record(latency, ok=number >= failing)

    def candidate_weights(self) -> list[float]:
        return [traffic.weight_of("candidate") for traffic in self.traffic_log]


class World:
    """A store, a clock, a driver and a controller on them; ``loop()`` drives to the end."""

    def __init__(self, tmp_path: Path, make: Factory, error_rate: float = 0.0) -> None:
        self.path = tmp_path / "state.db"
        self.store = open_store(self.path)
        self.clock = Clock()
        self.make = make
        self.error_rate = error_rate
        old = make.desired("iris", version="1", spec_digest="spec-iris-1")
        ownership = Ownership(project=make.project, resource="deployment/iris", spec_digest="spec-iris-1", revision=1)
        self.driver = FakeDriver(ObservedDeployment(name="iris", ownership=ownership, serving=old.serving,
                                                    health=RUNNING))
        self.events: list[tuple[float, str]] = []
        self.controller = self.new_controller()

    def new_controller(self, store: StateStore | None = None) -> RolloutController:
        return RolloutController(store or self.store, self.driver, self.make.project, events=self.event, now=self.clock)

    def event(self, name: str, message: str) -> None:
        self.events.append(((self.clock.now - T0).total_seconds(), message))

    def desired(self, settings: RolloutSettings, version: str = "2", experiment: str | None = None) -> DesiredDeployment:
        want = self.make.desired("iris", version="1" if experiment else version, spec_digest="spec-iris-2")
        extra = None
        if experiment is not None:
            rose = self.make.model("rose", experiment, alias=None)
            extra = Experiment(model=rose, serving=self.make.serving("iris", rose))
        return want.model_copy(update={"rollout": settings, "experiment": extra})

    def start(self, settings: RolloutSettings, version: str = "2", revision: int = 2,
              experiment: str | None = None) -> RolloutRecord:
        """What the executor does for a planned ROLLOUT: start it, then record the revision."""
        want = self.desired(settings, version, experiment)
        live = self.driver.observe_one("iris")
        assert live is not None and live.serving is not None
        to_version = experiment or version
        change = Change(action=Action.ROLLOUT, name="iris", reason="test", desired=want, revision=revision,
                        rollout=RolloutChange(strategy=settings.strategy, from_version=live.serving.model_version,
                                              to_version=to_version, description=settings.describe()))
        record = self.controller.start(change, live)
        self.store.record_revision(kind="Deployment", name="iris", revision=revision, action="rollout",
                                   outcome="in-progress", spec_digest=want.spec_digest, model_version=to_version,
                                   model_digest=None, config=None, message=None, git_commit=None, plan_id=None)
        return record

    def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.driver.serve(50, self.error_rate)

    def loop(self, controller: RolloutController | None = None,
             until: Callable[[RolloutRecord], bool] | None = None, max_ticks: int = 200) -> RolloutRecord:
        """Run the reconcile loop (20 s a tick) until the rollout ends or ``until`` holds."""
        ticks = itertools.count()
        loop = ReconcileLoop(self.store if controller is None else controller.store, controller or self.controller,
                             tick_s=20, sleep=self.sleep)
        last = loop.run(["iris"], until=until, should_stop=lambda: next(ticks) >= max_ticks)
        record = last.get("iris") or self.store.last_rollout("iris")
        assert record is not None
        return record

    def tick(self, seconds: float = 10, requests: int = 50) -> RolloutRecord:
        self.clock.advance(seconds)
        self.driver.serve(requests, self.error_rate)
        record = self.store.active_rollout("iris") or self.store.last_rollout("iris")
        assert record is not None
        return self.controller.tick(record)

    def messages(self, text: str) -> list[float]:
        """When each event containing ``text`` happened (seconds after the start)."""
        return [at for at, message in self.events if text in message]

    def outcome(self, revision: int = 2) -> str:
        return next(r.outcome for r in self.store.history("iris") if r.revision == revision)

    def audits(self, operation: str) -> list[dict[str, Any]]:
        return [row for row in self.store.audit_log(limit=500) if row["operation"] == operation]


