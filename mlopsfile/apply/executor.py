"""Walks a Plan through the drivers, one change at a time, recording each outcome.

A failed change is undone (a failed create is removed, a failed update or replace puts
back what was live) and the changes after it are not started, so nothing is left
half-applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mlopsfile.drivers.base import DeploymentDriver
from mlopsfile.errors import DriverError
from mlopsfile.plan.types import Action, Change, Plan
from mlopsfile.resources import ObservedState, Ownership
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


class Executor:
    def __init__(self, drivers: Mapping[str, DeploymentDriver], store: StateStore, observed: ObservedState,
                 git_commit: str | None, plan_id: str, progress: Progress | None = None) -> None:
        self.drivers = drivers
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
            try:
                getattr(self, f"visit_{change.action.value}")(plan, change)
                outcome = ChangeOutcome(change, "applied", seconds=time.monotonic() - started)
            except DriverError as exc:
                outcome = ChangeOutcome(change, "failed", self._undo(change, exc), time.monotonic() - started)
            self._record(change, outcome)
            report.outcomes.append(outcome)
            self.progress("done", change, outcome)
        return report

    def _ownership(self, plan: Plan, change: Change) -> Ownership:
        assert change.desired is not None
        return Ownership(project=plan.project, resource=change.address, spec_digest=change.desired.spec_digest,
                         revision=change.revision)

    def visit_create(self, plan: Plan, change: Change) -> None:
        assert change.desired is not None
        self.drivers[change.target].create(change.desired, self._ownership(plan, change))

    def visit_update(self, plan: Plan, change: Change) -> None:
        assert change.desired is not None
        self.drivers[change.target].update(change.desired, self._ownership(plan, change))

    def visit_replace(self, plan: Plan, change: Change) -> None:
        assert change.desired is not None
        self.drivers[change.target].replace(change.desired, self._ownership(plan, change))

    def visit_delete(self, plan: Plan, change: Change) -> None:
        self.drivers[change.target].delete(change.name)

    def _undo(self, change: Change, error: DriverError) -> str:
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
        desired = change.desired
        self.store.record_revision(
            kind=change.kind, name=change.name, revision=change.revision, action=change.action.value,
            outcome=outcome.outcome, spec_digest=desired.spec_digest if desired else None,
            model_version=desired.model.version if desired else None,
            model_digest=desired.model.digest if desired else None,
            config=desired.serving.model_dump() if desired else None,
            message=outcome.message or change.reason, git_commit=self.git_commit, plan_id=self.plan_id,
        )
        self.store.audit(operation="apply", outcome=outcome.outcome, resource=change.address,
                         action=change.action.value, revision=change.revision,
                         message=outcome.message or change.reason, git_commit=self.git_commit)
