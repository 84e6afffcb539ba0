"""Copy what monitor actors decided into the state store, and carry out the actions they ask for.

An actor sends alerts itself (they need nothing but the network); rolling a deployment
back or starting a batch run needs the control plane, so the actor queues those and the
loop here carries them out and tells the actor how they went. The actor's cooldown has
already held back repeated actions, so every request that arrives here is carried out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlopsfile.controller.rollouts import Events
from mlopsfile.errors import DriverError, LockError, MlopsfileError
from mlopsfile.resources import PublishedRun
from mlopsfile.state.store import StateStore


class MonitorActors(Protocol):
    """What syncing needs of the monitor driver."""

    def history(self, name: str, since: int = 0) -> dict[str, Any]: ...

    def pending_actions(self, name: str) -> list[dict[str, Any]]: ...

    def ack_action(self, name: str, action_id: Any, outcome: str, message: str) -> None: ...

    def check_published(self, name: str, arm: str, published: PublishedRun, target: str, sample: float) -> int: ...


@dataclass(frozen=True)
class BatchFeed:
    """A monitor of a batch deployment, and the run its readers see now."""

    monitor: str
    published: PublishedRun
    target: str
    sample: float


# (action type, deployment) → what was done, in one line; raises MlopsfileError when it failed.
ActionRunner = Callable[[str, str], str]


@dataclass
class SyncReport:
    monitor: str
    new_verdicts: int = 0
    drifted: int = 0
    actions: list[str] = field(default_factory=list)
    error: str | None = None


class MonitorSync:
    def __init__(self, store: StateStore, actors: MonitorActors, run_action: ActionRunner,
                 events: Events | None = None) -> None:
        self.store = store
        self.actors = actors
        self.run_action = run_action
        self.events = events or (lambda *_: None)

    def sync(self, monitors: Iterable[tuple[str, str]], act: bool = True,
             feeds: Iterable[BatchFeed] = ()) -> list[SyncReport]:
        """Sync each (monitor, deployment); a monitor that cannot be read is reported, not fatal.

        Each batch output in ``feeds`` the monitor has not tested yet is handed to it first.
        ``act=False`` only copies verdicts (what reading the history does)."""
        errors = self._feed(feeds)
        reports = []
        for name, deployment in monitors:
            report = SyncReport(name, error=errors.get(name))
            try:
                self._copy(name, report)
                if act:
                    self._act(name, deployment, report)
                if report.actions:
                    self._copy(name, report)  # the outcomes the actor now records
            except DriverError as exc:
                report.error = str(exc)
            reports.append(report)
        return reports

    def _feed(self, feeds: Iterable[BatchFeed]) -> dict[str, str]:
        errors = {}
        for feed in feeds:
            source = f"run:{feed.published.run_id}"
            if self.store.fed(feed.monitor, source):
                continue
            arm = f"stable/{feed.published.model_version}"
            try:
                rows = self.actors.check_published(feed.monitor, arm, feed.published, feed.target, feed.sample)
            except DriverError as exc:
                errors[feed.monitor] = str(exc)
                continue
            self.store.record_feed(feed.monitor, source, rows)
            self.events(f"monitor/{feed.monitor}", f"testing published run {feed.published.run_id} "
                                                   f"({rows} rows of model version {feed.published.model_version})")
        return errors

    def _copy(self, name: str, report: SyncReport) -> None:
        history = self.actors.history(name, 0)
        incarnation = str(history["incarnation"])
        last = self.store.last_verdict_seq(name, incarnation)
        verdicts = [v for v in history.get("verdicts", []) if int(v["seq"]) > last]
        report.new_verdicts += self.store.record_verdicts(name, incarnation, verdicts)
        for verdict in verdicts:
            if not verdict.get("is_drift"):
                continue
            report.drifted += 1
            p_value = verdict.get("p_value")
            self.events(f"monitor/{name}", f"drift in window {verdict['seq']} of {verdict['arm']} "
                                           f"({verdict.get('rows')} rows"
                                           f"{f', p-value {p_value:.3g}' if p_value is not None else ''})")
        self.store.record_monitor_actions(name, incarnation, list(history.get("actions", [])))

    def _act(self, name: str, deployment: str, report: SyncReport) -> None:
        for action in self.actors.pending_actions(name):
            kind = str(action["type"])
            target = str(action.get("deployment") or deployment)
            try:
                message = self.run_action(kind, target)
                outcome = "done"
            except LockError as exc:  # an apply is running: the request stays queued for the next sync
                self.events(f"monitor/{name}", f"{kind} of deployment/{target} waits: {exc}")
                continue
            except MlopsfileError as exc:
                message, outcome = str(exc), "failed"
            self.actors.ack_action(name, action["id"], outcome, message)
            report.actions.append(f"{kind} {target}: {outcome}: {message}")
            self.events(f"monitor/{name}", f"{kind} of deployment/{target} on drift: {outcome}: {message}")
