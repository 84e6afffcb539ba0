"""Monitor operations behind the CLI: sync verdicts and actions, read a monitor's history, status rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlopsfile.controller.monitors import BatchFeed, MonitorSync, SyncReport
from mlopsfile.controller.rollouts import Events
from mlopsfile.errors import MlopsfileError, PlanError
from mlopsfile.state.monitors import ActionRecord, VerdictRecord

if TYPE_CHECKING:
    from mlopsfile.api import Project


@dataclass(frozen=True)
class MonitorRow:
    """One monitor in `status`."""

    name: str
    deployment: str
    detector: str
    state: str
    windows: int
    drifted: int
    latest: VerdictRecord | None
    last_action: ActionRecord | None
    error: str | None = None


@dataclass(frozen=True)
class DriftHistory:
    name: str
    deployment: str
    verdicts: list[VerdictRecord]
    actions: list[ActionRecord]
    error: str | None = None


def spec_monitors(project: Project) -> list[tuple[str, str]]:
    specset = project.validate()
    return [(name, specset.monitor(name).spec.deployment) for name in sorted(specset.monitors)]


def sync_monitors(project: Project, events: Events | None = None, act: bool = True) -> list[SyncReport]:
    """Copy new verdicts into the state store; with ``act``, carry out queued rollbacks and runs."""
    monitors = spec_monitors(project)
    if not monitors:
        return []

    def run_action(kind: str, deployment: str) -> str:
        if kind == "rollback":
            return project.rollback(deployment, None, events)
        if kind == "run":
            report = project.apply(project.run_one(deployment), events=events)
            if report.failed:
                raise MlopsfileError(report.failed[0].message)
            return "run done" if report.outcomes else "nothing to run"
        raise MlopsfileError(f"unknown action {kind!r}")

    return MonitorSync(project.store, project.monitors, run_action, events).sync(monitors, act=act,
                                                                                  feeds=batch_feeds(project))


def batch_feeds(project: Project) -> list[BatchFeed]:
    """The published output of each batch deployment a monitor watches."""
    specset = project.validate()
    outputs = project.batch_outputs(specset)
    watched = {name: specset.monitor(name) for name in specset.monitors
               if specset.monitor(name).spec.deployment in outputs}
    if not watched:
        return []
    observed = {b.name: b for b in project.batch.observe({d.spec.deployment: outputs[d.spec.deployment]
                                                          for d in watched.values()})}
    feeds = []
    for name, document in sorted(watched.items()):
        live = observed.get(document.spec.deployment)
        if live is not None and live.published is not None:
            feeds.append(BatchFeed(monitor=name, published=live.published, target=document.spec.target,
                                   sample=document.spec.sample))
    return feeds


def drift_history(project: Project, name: str, limit: int = 100, arm: str | None = None) -> DriftHistory:
    known = dict(spec_monitors(project))
    if name not in known:
        raise PlanError(f"no Monitor named {name!r} in the specs (known: {', '.join(sorted(known)) or 'none'})")
    feeds = [feed for feed in batch_feeds(project) if feed.monitor == name]
    reports = MonitorSync(project.store, project.monitors, _no_actions).sync([(name, known[name])], act=False,
                                                                             feeds=feeds)
    return DriftHistory(name=name, deployment=known[name],
                        verdicts=project.store.drift_verdicts(name, limit, arm_role=arm),
                        actions=project.store.drift_actions(name, limit), error=reports[0].error)


def monitor_rows(project: Project) -> list[MonitorRow]:
    specset = project.validate()
    if not specset.monitors:
        return []
    reports = {r.monitor: r for r in sync_monitors(project, act=False)}
    live = {m.name: m for m in project.monitors.observe()}
    rows = []
    for name in sorted(specset.monitors):
        spec = specset.monitor(name).spec
        verdicts = project.store.drift_verdicts(name, limit=1000)
        actions = project.store.drift_actions(name, limit=1)
        stable = [v for v in verdicts if not v.arm.startswith("candidate/")]
        rows.append(MonitorRow(
            name=name, deployment=spec.deployment, detector=spec.detector.kind,
            state=live[name].state if name in live else "not running",
            windows=len(stable), drifted=sum(1 for v in stable if v.is_drift),
            latest=verdicts[-1] if verdicts else None, last_action=actions[-1] if actions else None,
            error=reports[name].error if name in reports else None,
        ))
    return rows


def _no_actions(kind: str, deployment: str) -> str:
    raise MlopsfileError("reading a monitor's history carries out no action")


def verdict_json(verdict: VerdictRecord) -> dict[str, Any]:
    return {"seq": verdict.seq, "arm": verdict.arm, "at": _iso(verdict.at), "is_drift": verdict.is_drift,
            "statistic": verdict.statistic, "p_value": verdict.p_value, "rows": verdict.rows, **verdict.detail}


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds")
