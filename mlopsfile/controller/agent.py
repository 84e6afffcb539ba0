"""The GitOps agent behind `mlopsfile watch`: keep the live systems matching the specs.

One loop, one thread of decisions:

- a change of the spec tree (debounced) or a new commit on the watched branch
  (pull mode) is validated, planned and applied; an invalid spec is reported and
  nothing is applied, so the last good state keeps serving;
- every resync interval the agent plans against the live systems: drift (an
  application deleted or edited outside mlopsfile) is repaired when self-healing,
  else reported once and written to the audit log;
- every tick it drives rollouts and carries out monitors' actions, and every schedule
  interval it runs the batch deployments that are due.

Applying holds the state lock; when another apply holds it, the agent tries again on
the next tick. It reports through an event sink and never prints.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mlopsfile.controller.debounce import Debouncer
from mlopsfile.controller.rollouts import Events
from mlopsfile.errors import DriverError, LockError, MlopsfileError, SpecErrors
from mlopsfile.plan.types import Action, Change

if TYPE_CHECKING:
    from mlopsfile.api import Project

PULL_OPERATION = "pull"  # the audit log's operation for a commit applied in pull mode


@dataclass(frozen=True)
class AgentConfig:
    tick_s: float = 2.0  # rollouts and monitors
    schedule_s: float = 30.0  # batch schedules, and the remote in pull mode
    resync_s: float = 30.0
    self_heal: bool = True
    debounce_s: float = 0.7


class FileEvents(Protocol):
    def start(self, on_change: Callable[[bool], None]) -> None: ...

    def stop(self) -> None: ...


class PullSource(Protocol):
    @property
    def label(self) -> str: ...

    def sync(self) -> str: ...


@dataclass(frozen=True)
class Pending:
    """A reconcile the agent owes: why, whether it may repair drift, and the commit it applies."""

    cause: str
    heal: bool = True
    commit: str | None = None
    resync: bool = False  # the periodic look: what it finds was reported already is not repeated


class Agent:
    def __init__(self, project: Project, events: Events, config: AgentConfig, *, files: FileEvents | None = None,
                 pull: PullSource | None = None, reopen: Callable[[], Project] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.project = project
        self.events = events
        self.config = config
        self.files = files
        self.pull = pull
        self.reopen = reopen
        self.clock = clock
        self.debouncer = Debouncer(config.debounce_s)
        self.wake = threading.Event()
        self.pending: Pending | None = None if pull else Pending("watch started")
        self.head: str | None = None  # pull mode: the commit checked out
        self.drift: dict[str, str] = {}  # address → reason, reported while it lasts
        self.said: dict[str, str] = {}
        self.monitor_errors: dict[str, str | None] = {}
        self.next_resync = self.next_schedule = self.next_pull = 0.0

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event, after_step: Callable[[], None] = lambda: None) -> None:
        """Until ``stop`` is set; the step in progress finishes first (a rollout resumes on restart)."""
        if self.files is not None:
            self.files.start(self._file_changed)
        try:
            while not stop.is_set():
                wait = self.step() - self.clock()
                after_step()
                if wait > 0:
                    self.wake.wait(wait)
                self.wake.clear()
        finally:
            if self.files is not None:
                self.files.stop()

    def stop(self, stop: threading.Event) -> None:
        stop.set()
        self.wake.set()

    def step(self) -> float:
        """One pass of the loop; when the next one is due (the clock's time)."""
        now = self.clock()
        burst = self.debouncer.fire(now)
        if burst is not None:
            if burst.project_file and self.reopen is not None:
                self.project = self.reopen()
            self.pending = Pending("the specs changed")
        if self.pull is not None and now >= self.next_pull:
            self.next_pull = now + self.config.schedule_s
            self._poll()
        if self.pending is None and now >= self.next_resync and (self.pull is None or self.head is not None):
            self.pending = Pending("drift found by resync", heal=self.config.self_heal, resync=True)
        if self.pending is not None:
            try:
                self._converge(self.pending)
            finally:  # counted from the end: an apply that took long has just looked at everything
                self.next_resync = self.clock() + self.config.resync_s
        if now >= self.next_schedule:
            self.next_schedule = now + self.config.schedule_s
            self._run_due()
        self._drive()
        self._monitors()
        deadlines = [now + self.config.tick_s, self.next_resync]
        if (fires := self.debouncer.deadline()) is not None:
            deadlines.append(fires)
        return min(deadlines)

    def _file_changed(self, project_file: bool) -> None:
        self.debouncer.touch(self.clock(), project_file)
        self.wake.set()

    # -- pull mode -----------------------------------------------------------------------

    def _poll(self) -> None:
        assert self.pull is not None
        try:
            head = self.pull.sync()
        except DriverError as exc:
            self._say("source", f"{exc}; trying again in {self.config.schedule_s:g}s")
            return
        self._say("source", f"{self.pull.label} at {head[:12]}")
        if head != self.head:
            self.head = head
            self.pending = Pending(f"commit {head[:12]} of {self.pull.label}", commit=head)

    # -- converging ------------------------------------------------------------------------

    def _converge(self, pending: Pending) -> None:
        """Validate, plan and apply (or only report): ``pending`` stays owed when it must be retried."""
        project = self.project
        try:
            project.validate()
        except SpecErrors as exc:
            self.pending = None
            lines = [f"invalid, nothing applied: {error.line()}" for error in exc.errors]
            if not pending.resync or self.said.get("specs") != lines[0]:
                for line in lines:
                    self.events("watch/specs", line)
            self.said["specs"] = lines[0]
            self._record_pull(pending, "invalid", lines[0])
            return
        self.said.pop("specs", None)
        try:
            with project.locked("watch"):
                plan = project.plan().plan
                changes = [c for c in plan.changes if c.action != Action.RUN]
                if not pending.heal:
                    self.pending = None
                    self._report_drift(changes)
                    return
                self.drift.clear()
                if not plan.has_changes:
                    self.pending = None
                    if not pending.resync:  # a saved edit that changes nothing live says so
                        self.events("watch/specs", f"no changes ({pending.cause}): the live state matches the specs")
                    self._record_pull(pending, "applied", "the live state already matches")
                    return
                for change in changes:
                    self.events(change.address, f"{change.action.value} ({pending.cause}): {change.reason}")
                report = project.apply(plan, lock_held=True, events=self.events)
        except LockError:
            self._say("lock", "another apply holds the state lock; trying again next tick")
            return
        except DriverError as exc:
            if exc.temporary:
                self._say("converge", f"not applied ({pending.cause}): {exc}; trying again next tick")
                return
            self.pending = None
            self.events("watch/specs", f"not applied ({pending.cause}): {exc}")
            self._record_pull(pending, "failed", str(exc))
            return
        except MlopsfileError as exc:  # a plan error: the specs ask for something impossible
            self.pending = None
            self.events("watch/specs", f"not applied ({pending.cause}): {exc}")
            self._record_pull(pending, "failed", str(exc))
            return
        self.pending = None
        self.said.pop("lock", None)
        self.said.pop("converge", None)
        for outcome in report.outcomes:
            message = f"{outcome.change.action.value} {outcome.outcome}"
            self.events(outcome.change.address, message + (f": {outcome.message}" if outcome.message else ""))
        failed = report.failed
        self._record_pull(pending, "failed" if failed else "applied",
                          failed[0].message if failed else f"{len(report.outcomes)} change(s)")

    def _report_drift(self, changes: list[Change]) -> None:
        """self_heal off: each drift once while it lasts, as an event and in the audit log."""
        found = {c.address: c for c in changes}
        for address, change in found.items():
            if self.drift.get(address) == change.reason:
                continue
            self.drift[address] = change.reason
            self.events(address, f"drift, not repaired (self_heal is off): {change.action.value}: {change.reason}")
            self.project.store.audit(operation="drift", outcome="reported", resource=address,
                                     action=change.action.value, message=change.reason)
        for address in set(self.drift) - set(found):
            del self.drift[address]
            self.events(address, "in sync again")

    def _record_pull(self, pending: Pending, outcome: str, message: str) -> None:
        if pending.commit is None or self.pull is None:
            return
        last = last_pull(self.project)
        if last is not None and last["git_commit"] == pending.commit and last["outcome"] == outcome:
            return  # a restart on the same commit: already recorded
        self.project.store.audit(operation=PULL_OPERATION, outcome=outcome, resource=self.pull.label,
                                 message=message, git_commit=pending.commit)

    # -- the reconcile loop's other work -----------------------------------------------------

    def _run_due(self) -> None:
        try:
            report = self.project.run_due(self.events)
        except SpecErrors:
            return  # reported by _converge
        except MlopsfileError as exc:
            self._say("schedules", f"batch schedules not checked: {exc}")
            return
        if report is None:
            self._say("schedules", "another apply holds the state lock; looking again later")
            return
        self.said.pop("schedules", None)
        for outcome in report.outcomes:
            state = "done" if outcome.outcome == "applied" else f"{outcome.outcome}: {outcome.message}"
            self.events(outcome.change.name, f"run {state}")

    def _drive(self) -> None:
        passes = iter([False])  # exactly one pass over the active rollouts
        try:
            self.project.drive(events=self.events, tick_s=0.0, should_stop=lambda: next(passes, True))
        except (LockError, DriverError) as exc:  # another process drives it, or Ray is busy: next tick
            self.events("watch/rollouts", f"not driven this tick: {exc}")

    def _monitors(self) -> None:
        from mlopsfile.api_monitors import sync_monitors

        try:
            syncs = sync_monitors(self.project, self.events)
        except SpecErrors:
            return
        for sync in syncs:
            if sync.error != self.monitor_errors.get(sync.monitor):  # say it when it starts and when it ends
                self.events(f"monitor/{sync.monitor}", sync.error or "readable again")
                self.monitor_errors[sync.monitor] = sync.error

    def _say(self, key: str, message: str) -> None:
        """An event once, until what it says changes."""
        if self.said.get(key) != message:
            self.said[key] = message
            self.events(key if "/" in key else f"watch/{key}", message)


def last_pull(project: Project) -> dict[str, object] | None:
    """The newest commit pull mode handled (applied, invalid or failed), from the audit log."""
    return project.store.last_audit(PULL_OPERATION)


def applied_commit(project: Project) -> str | None:
    """'applied commit abc1234 from URL@branch at …' for `status`, when pull mode applied one."""
    entry = project.store.last_audit(PULL_OPERATION, outcome="applied")
    if entry is None:
        return None
    line = f"applied commit {str(entry['git_commit'])[:12]} from {entry['resource']} at {entry['at']:%Y-%m-%d %H:%M:%S}"
    latest = last_pull(project)
    if latest is not None and latest["git_commit"] != entry["git_commit"]:
        line += f"; newer commit {str(latest['git_commit'])[:12]} {latest['outcome']}: {latest['message']}"
    return line
