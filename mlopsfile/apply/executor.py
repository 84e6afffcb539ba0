"""Walks a Plan through the drivers, one change at a time, recording each outcome.

A failed change is undone (a failed create is removed, a failed update or replace puts
back what was live) and the changes after it are not started, so nothing is left
half-applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mlopsfile.controller.loop import rollout_lock_scope
from mlopsfile.controller.rollouts import Events, RolloutController
from mlopsfile.drivers.base import DeploymentDriver
from mlopsfile.errors import DriverError
from mlopsfile.monitor_resources import DesiredMonitor
from mlopsfile.plan.types import Action, Change, Plan
from mlopsfile.resources import (
    DesiredBatch,
    DesiredEdge,
    InputSnapshot,
    JobRun,
    ObservedBatch,
    ObservedState,
    Ownership,
    Traffic,
    TrafficArm,
)
from mlopsfile.state.store import StateStore


@dataclass(frozen=True)
class ChangeOutcome:
    change: Change
    outcome: str  # applied | failed | skipped
    message: str = ""
    seconds: float = 0.0


@dataclass
class ApplyReport:
    outcomes: list[ChangeOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ChangeOutcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]


Progress = Callable[[str, Change, ChangeOutcome | None], None]


class BatchRuns(Protocol):
    """What apply and planning need of the batch driver."""

    def snapshot(self, inputs: tuple[str, ...], file_format: str) -> InputSnapshot: ...

    def observe(self, outputs: dict[str, str]) -> list[ObservedBatch]: ...

    def run(self, batch: DesiredBatch, ownership: Ownership, reason: str, events: Events | None = None,
            previous_model_uri: str | None = None) -> JobRun:
        """Submit one run and wait for it; raise DriverError with the job's reason when it fails."""
        ...

    def stop(self, job_id: str) -> None: ...

    def logs(self, job_id: str) -> str: ...

    def failure(self, run: JobRun) -> str:
        """Why a run failed, in one line."""
        ...


class EdgeImages(Protocol):
    """What apply needs of the edge driver."""

    def build(self, want: DesiredEdge) -> str: ...

    def push(self, want: DesiredEdge) -> None: ...

    def bundle(self, want: DesiredEdge) -> Path: ...

    def move_tags(self, want: DesiredEdge, tags: tuple[str, ...]) -> None: ...

    def delete(self, name: str) -> None: ...


class MonitorActors(Protocol):
    """What apply needs of the monitor driver."""

    def start(self, want: DesiredMonitor) -> None:
        """Start the monitor's actor, replacing one that runs another configuration."""
        ...

    def stop(self, name: str) -> None: ...


class Executor:
    def __init__(self, drivers: Mapping[str, DeploymentDriver], store: StateStore, observed: ObservedState,
                 git_commit: str | None, plan_id: str, progress: Progress | None = None,
                 controller: RolloutController | None = None, batch: BatchRuns | None = None,
                 events: Events | None = None, edge: EdgeImages | None = None,
                 monitors: MonitorActors | None = None) -> None:
        self.monitors = monitors
        self.drivers = drivers
        self.edge = edge
        self.batch = batch
        self.events = events
        self.controller = controller
        self.store = store
        self.observed = observed
        self.git_commit = git_commit
        self.plan_id = plan_id
        self.progress = progress or (lambda *_: None)

    def run(self, plan: Plan) -> ApplyReport:
        report = ApplyReport()
        for change in plan.changes:
            if report.failed:
                report.outcomes.append(ChangeOutcome(change, "skipped", "an earlier change failed"))
                continue
            self.progress("start", change, None)
            started = time.monotonic()
            started_rollout = change.action == Action.ROLLOUT and change.rollout is not None \
                and change.rollout.operation == "start" and change.target != "edge"
            if started_rollout:
                # Written ahead: a process killed while the rollout starts leaves a rollout that
                # the next `apply --wait` or `watch` drives to its end, and that end must find
                # its revision to mark promoted or aborted.
                self._record(change, ChangeOutcome(change, "in-progress"))
            try:
                if change.target == "monitor":
                    self.visit_monitor(change)
                elif change.target == "edge" and change.action != Action.DELETE:
                    self.visit_edge(change)
                else:
                    getattr(self, f"visit_{change.action.value}")(plan, change)
                outcome = ChangeOutcome(change, "in-progress" if started_rollout else "applied",
                                        seconds=time.monotonic() - started)
            except DriverError as exc:
                outcome = ChangeOutcome(change, "failed", self._undo(change, exc), time.monotonic() - started)
            if not started_rollout:
                self._record(change, outcome)
            elif outcome.outcome == "failed":
                self.store.set_revision_outcome(change.name, change.revision, "failed", outcome.message)
                self._audit(change, outcome, change.revision)
            report.outcomes.append(outcome)
            self.progress("done", change, outcome)
        return report

    def _ownership(self, plan: Plan, change: Change) -> Ownership:
        wanted = change.desired or change.batch
        assert wanted is not None
        return Ownership(project=plan.project, resource=change.address, spec_digest=wanted.spec_digest,
                         revision=change.revision)

    def visit_create(self, plan: Plan, change: Change) -> None:
        assert change.desired is not None
        self.drivers[change.target].create(change.desired, self._ownership(plan, change))
        self._rollout(change, "start")

    def visit_update(self, plan: Plan, change: Change) -> None:
        assert change.desired is not None
        self._rollout(change, "end")
        self.drivers[change.target].update(change.desired, self._ownership(plan, change), self._carried(change))
        self._rollout(change, "start")

    def visit_replace(self, plan: Plan, change: Change) -> None:
        assert change.desired is not None
        self._rollout(change, "end")
        self.drivers[change.target].replace(change.desired, self._ownership(plan, change), self._carried(change))
        self._rollout(change, "start")

    def visit_rollout(self, plan: Plan, change: Change) -> None:
        assert change.rollout is not None and change.desired is not None
        self._rollout(change, change.rollout.operation)
        if change.rollout.operation == "start" and change.desired.rollout.progressive:
            return  # the stable application takes the new spec when the rollout completes
        # An experiment is part of the spec: the stable application records the spec it now matches.
        driver = self.drivers[change.target]
        live = driver.observe_one(change.name)  # type: ignore[attr-defined]
        driver.update(change.desired, self._ownership(plan, change), live.traffic if live else None)

    def visit_run(self, plan: Plan, change: Change) -> None:
        assert change.batch is not None and self.batch is not None
        live = self.observed.batch(change.name)
        canary = change.rollout is not None and change.rollout.strategy == "canary"
        previous = live.published.model_uri if canary and live is not None and live.published else None
        self.batch.run(change.batch, self._ownership(plan, change), change.reason, self.events, previous)

    def visit_edge(self, change: Change) -> None:
        """Build, bundle, push, then move the channel tags: devices never see a half-made image."""
        want, steps = change.edge, change.edge_steps
        assert want is not None and steps is not None and self.edge is not None
        if steps.build:
            self.edge.build(want)
        if steps.bundle:
            self.edge.bundle(want)
        if steps.tags:
            self.edge.move_tags(want, steps.tags)
        if steps.push or (want.registry and steps.tags):
            self.edge.push(want)

    def visit_monitor(self, change: Change) -> None:
        assert self.monitors is not None
        if change.action == Action.DELETE:
            self.monitors.stop(change.name)
        else:
            assert change.monitor is not None
            self.monitors.start(change.monitor)

    def visit_delete(self, plan: Plan, change: Change) -> None:
        if change.target == "edge":
            assert self.edge is not None
            self.edge.delete(change.name)
            return
        if change.target == "batch":
            assert self.batch is not None
            live = self.observed.batch(change.name)
            if live is not None and live.last_job is not None and live.last_job.active:
                self.batch.stop(live.last_job.job_id)
            return
        self.drivers[change.target].delete(change.name)

    def _rollout(self, change: Change, operation: str) -> None:
        """Start or end the rollout or experiment a change carries, under that rollout's lock."""
        if change.rollout is None or change.rollout.operation != operation:
            return
        assert self.controller is not None, "a rollout change needs the rollout controller"
        scope = rollout_lock_scope(change.name)
        lock = self.store.acquire_lock("apply", scope=scope)
        try:
            live = self.controller.driver.observe_one(change.name)
            if live is None:
                raise DriverError(f"deployment {change.name!r} is not live; its rollout cannot {operation}")
            if operation == "end":
                self.controller.end(change, live)
            else:
                self.controller.start(change, live)
        finally:
            self.store.release_lock(lock, scope=scope)

    def _carried(self, change: Change) -> Traffic | None:
        """An A/B test or shadow keeps its traffic table when the stable model is updated."""
        live = self.observed.deployment(change.name)
        if live is None or live.traffic is None or change.desired is None:
            return None
        if change.rollout is not None and change.rollout.operation == "end":
            return None
        arms = tuple(arm.model_copy(update={"version": change.desired.model.version}) if arm.role == "stable" else arm
                     for arm in live.traffic.arms) or (TrafficArm(role="stable", version=change.desired.model.version,
                                                                  weight=100.0),)
        return live.traffic.model_copy(update={"generation": live.traffic.generation + 1, "arms": arms})

    def _undo(self, change: Change, error: DriverError) -> str:
        if change.target in ("batch", "edge", "monitor"):  # nothing readers or devices use moved; a monitor
            # that failed to start was stopped by its driver
            return str(error)  # a failed run published nothing: the output readers see is unchanged
        driver = self.drivers[change.target]
        try:
            if change.action == Action.CREATE:
                driver.delete(change.name)
                return f"{error}; the partly created application was removed"
            previous = self.observed.deployment(change.name)
            if change.action in (Action.UPDATE, Action.REPLACE) and previous is not None:
                driver.restore(previous)
                return f"{error}; the previous revision was put back"
        except DriverError as undo_error:
            return f"{error}; undoing it failed too: {undo_error}"
        return str(error)

    def _record(self, change: Change, outcome: ChangeOutcome) -> None:
        if change.target == "monitor":  # no revisions: a monitor is its spec, and the audit log says when it moved
            self._audit(change, outcome, None)
            return
        desired = change.desired or change.batch or change.edge
        if outcome.outcome != "failed":
            self.store.clear_hold(change.name)
        config = change.desired.serving.model_dump() if change.desired else \
            change.batch.job.model_dump() if change.batch else \
            change.edge.build.model_dump() if change.edge else None
        self.store.record_revision(
            kind=change.kind, name=change.name, revision=change.revision, action=change.action.value,
            outcome=outcome.outcome, spec_digest=desired.spec_digest if desired else None,
            model_version=desired.model.version if desired else None,
            model_digest=desired.model.digest if desired else None,
            config=config,
            message=outcome.message or change.reason, git_commit=self.git_commit, plan_id=self.plan_id,
        )
        self._audit(change, outcome, change.revision)

    def _audit(self, change: Change, outcome: ChangeOutcome, revision: int | None) -> None:
        self.store.audit(operation="apply", outcome=outcome.outcome, resource=change.address,
                         action=change.action.value, revision=revision,
                         message=outcome.message or change.reason, git_commit=self.git_commit)
