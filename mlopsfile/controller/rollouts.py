"""The rollout state machine: start, one step at a time, promote, abort, roll back.

Every transition is written to the state store with a compare-and-set on the rollout's
state (and step) *before* the live change that follows it, and every live change is
idempotent (setting weights that are already set does nothing). So a loop killed at any
point resumes from the store, repeats at most an idempotent live change, and never
carries out a step, a promotion or an abort twice.

States: canary ``step`` (k) → ``promoting`` → ``keeping`` (previous version warm) →
``finalizing`` → ``completed``; blue-green ``preview`` → ``promoting`` → …; A/B and
shadow ``running`` → ``ended`` (or ``promoting`` when promoted by hand); any active state
→ ``aborting`` → ``aborted``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from mlopsfile.controller.gates import DriftWindows, GateReport, evaluate, smoke_window
from mlopsfile.drivers.base import RolloutDriver
from mlopsfile.errors import DriverError, MlopsfileError
from mlopsfile.plan.types import Change
from mlopsfile.resources import (
    DesiredDeployment,
    ObservedDeployment,
    OnlineServing,
    Ownership,
    Traffic,
    TrafficArm,
    candidate_app,
)
from mlopsfile.state.rollouts import RolloutRecord
from mlopsfile.state.store import StateStore
from runtime.traffic import ArmStats, arm_key

Events = Callable[[str, str], None]
# A monitor's recent verdicts (the actor's records: seq, time, arm, is_drift, p_value, ...).
DriftReader = Callable[[str], list[dict[str, Any]]]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RolloutController:
    def __init__(self, store: StateStore, driver: RolloutDriver, project: str, git_commit: str | None = None,
                 events: Events | None = None, now: Callable[[], datetime] = utcnow,
                 drift: DriftReader | None = None) -> None:
        self.drift = drift
        self.store = store
        self.driver = driver
        self.project = project
        self.git_commit = git_commit
        self.events = events or (lambda *_: None)
        self.now = now

    # -- starting and ending (the executor calls these for planned changes) ------------

    def start(self, change: Change, live: ObservedDeployment) -> RolloutRecord:
        """Deploy the candidate and send it its first share of traffic."""
        desired = change.desired
        assert desired is not None and live.serving is not None and live.ownership is not None
        settings = desired.rollout
        self._clear_candidate(live, "superseded", f"superseded by revision {change.revision}")
        candidate = _candidate_serving(desired)
        record = self.store.start_rollout(
            name=desired.name, revision=change.revision, strategy=settings.strategy, state="starting",
            from_version=live.serving.model_version, to_version=candidate.model_version,
            spec_digest=desired.spec_digest, desired=desired.model_dump(mode="json"),
            previous={"serving": live.serving.model_dump(), "ownership": live.ownership.model_dump()},
        )
        ownership = Ownership(project=self.project, resource=f"deployment/{desired.name}",
                              spec_digest=desired.spec_digest, revision=change.revision, role="candidate")
        self.events(desired.name, f"{settings.strategy}: starting version {candidate.model_version} beside "
                                  f"version {live.serving.model_version}")
        try:
            self.driver.deploy_candidate(desired.name, candidate, ownership, settings.preview_route)
        except DriverError as exc:
            self._finish(record, "starting", "failed", f"the candidate did not start: {exc}", hold=True)
            self.driver.delete_candidate(desired.name)
            raise
        live = self.driver.observe_one(desired.name) or live  # the candidate and any cleared traffic show now
        first_state = {"canary": "step", "blue-green": "preview"}.get(settings.strategy, "running")
        self.store.advance_rollout(record.id, "starting", state=first_state, step=0,
                                   step_started_at=self.now(), baseline=self._counters(live))
        record = self._reload(record)
        self._apply_weights(record, live)
        return record

    def end(self, change: Change, live: ObservedDeployment) -> None:
        """The specs no longer ask for the candidate: traffic back to stable, candidate removed."""
        record = self.store.active_rollout(change.name)
        if record is not None:
            self._abort(record, "the specs no longer ask for it", outcome="ended", hold=False)
        else:
            self._clear_candidate(live, "ended", "the specs no longer ask for it")

    # -- by hand --------------------------------------------------------------------

    def request(self, name: str, action: str) -> RolloutRecord:
        record = self.store.active_rollout(name)
        if record is None:
            raise MlopsfileError(f"deployment {name!r} has no rollout in progress")
        if record.state in ("aborting", "finalizing"):
            raise MlopsfileError(f"the rollout of {name!r} is {record.state}; it can no longer be changed")
        if action == "promote" and record.state in ("promoting", "keeping"):
            raise MlopsfileError(f"the rollout of {name!r} to version {record.to_version} is already promoted")
        self.store.request_rollout_action(record.id, action)
        return self._reload(record)

    # -- one step of the loop -----------------------------------------------------------

    def tick(self, record: RolloutRecord) -> RolloutRecord:
        """Look at one active rollout and take at most one transition."""
        record = self._reload(record)
        if not record.active:
            return record
        live = self.driver.observe_one(record.name)
        if live is None or live.serving is None:
            return self._finish(record, record.state, "failed", "the deployment disappeared during its rollout",
                                hold=False)
        if record.state == "aborting":
            return self._on_aborting(record, live)
        if record.requested == "abort" and record.state == "keeping":
            return self.rollback_warm(record)
        if record.requested == "abort" and record.state != "finalizing":
            return self._abort(record, "aborted by hand (`mlopsfile abort`)")
        if record.state in ("step", "preview", "running"):
            if live.candidate is None:
                return self._abort(record, "its candidate application disappeared")
            if record.requested == "promote":
                return self._to(record, "promoting", f"promoted by hand at step {record.step + 1}")
        handler = getattr(self, f"_on_{record.state}")
        return handler(record, live)

    def _on_starting(self, record: RolloutRecord, live: ObservedDeployment) -> RolloutRecord:
        # Killed between recording the start and deploying the candidate: start it again.
        return self._abort(record, "interrupted while starting; run apply again", outcome="failed", hold=False)

    def _on_step(self, record: RolloutRecord, live: ObservedDeployment) -> RolloutRecord:
        settings = self._desired(record).rollout
        weight, pause = settings.steps[record.step]
        self._apply_weights(record, live)
        report = self._window_report(record, live)
        self.store.advance_rollout(record.id, "step", gates=report.as_json())
        if report.failed:
            return self._abort(record, "gate failed at step "
                               f"{record.step + 1} ({weight:g}%): " + "; ".join(g.text for g in report.failed))
        if pause is None or self._elapsed(record) < pause or not report.enough:
            return self._reload(record)
        if record.step + 1 < len(settings.steps):
            next_weight = settings.steps[record.step + 1][0]
            moved = self.store.advance_rollout(
                record.id, "step", expected_step=record.step, step=record.step + 1, step_started_at=self.now(),
                baseline=self._counters(live), gates=[],
            )
            if moved:
                self.events(record.name, f"step {record.step + 1} passed ({report.summary()}); "
                                         f"step {record.step + 2}/{len(settings.steps)}: {next_weight:g}% to "
                                         f"version {record.to_version}")
                record = self._reload(record)
                self._apply_weights(record, live)
            return self._reload(record)
        return self._to(record, "promoting", f"all {len(settings.steps)} steps passed ({report.summary()})")

    def _on_preview(self, record: RolloutRecord, live: ObservedDeployment) -> RolloutRecord:
        settings = self._desired(record).rollout
        if record.step == 0:
            route = settings.preview_route or ""
            count = max(settings.smoke_requests, settings.min_requests)
            self.events(record.name, f"smoke: {count} requests to the preview route {route}")
            results = self.driver.smoke(route, settings.smoke_body, count)
            report = evaluate(smoke_window(results), settings)
            errors = [text for status, _, text in results if not 200 <= status < 400]
            if report.failed or not report.enough:
                detail = "; ".join(g.text for g in report.failed) or report.summary()
                first_error = f" (first error: {errors[0]})" if errors else ""
                return self._abort(record, f"preview checks failed: {detail}{first_error}")
            if self.store.advance_rollout(record.id, "preview", expected_step=0, step=1, step_started_at=self.now(),
                                          gates=report.as_json()):
                self.events(record.name, f"preview checks passed ({report.summary()})")
            return self._reload(record)
        if settings.pause_s is None or self._elapsed(record) < settings.pause_s:
            return record
        return self._to(record, "promoting", "preview checks passed; switching all traffic")

    def _on_running(self, record: RolloutRecord, live: ObservedDeployment) -> RolloutRecord:
        settings = self._desired(record).rollout
        self._apply_weights(record, live)
        if settings.duration_s is not None and self._elapsed(record) >= settings.duration_s:
            summary = self._arm_summary(live, record)
            return self._abort(record, f"the {settings.strategy} test ran its duration of "
                                       f"{settings.duration_s:g}s ({summary})", outcome="ended")
        return record

    def _on_promoting(self, record: RolloutRecord, live: ObservedDeployment) -> RolloutRecord:
        settings = self._desired(record).rollout
        self._apply_weights(record, live)
        keep_until = self.now() + timedelta(seconds=settings.keep_previous_s)
        if self.store.advance_rollout(record.id, "promoting", state="keeping", keep_until=keep_until, requested=None):
            self.store.set_revision_outcome(record.name, record.revision, "promoted",
                                            f"version {record.to_version} promoted: {record.message or ''}".strip())
            self.store.audit(operation="promote", outcome="applied", resource=f"deployment/{record.name}",
                             action="rollout", revision=record.revision, git_commit=self.git_commit,
                             message=f"version {record.to_version} takes 100%; version {record.from_version} "
                                     f"kept warm for {settings.keep_previous_s:g}s")
            self.events(record.name, f"promoted: version {record.to_version} takes 100%")
        return self._reload(record)

    def _on_keeping(self, record: RolloutRecord, live: ObservedDeployment) -> RolloutRecord:
        self._apply_weights(record, live)
        if record.keep_until is not None and self.now() < record.keep_until:
            return record
        return self._to(record, "finalizing", "previous version released")

    def _on_finalizing(self, record: RolloutRecord, live: ObservedDeployment) -> RolloutRecord:
        desired = self._desired(record)
        candidate = _candidate_serving(desired)
        ownership = Ownership(project=self.project, resource=f"deployment/{record.name}",
                              spec_digest=desired.spec_digest, revision=record.revision)
        # New ingress replicas load the promoted model and score it in-process; the old ones
        # keep forwarding to the candidate until they are gone, so no request finds no model.
        if live.serving is None or live.serving.model_digest != candidate.model_digest or live.traffic is not None:
            self.driver.replace_serving(record.name, candidate, ownership)
        self.driver.delete_candidate(record.name)
        outcome = "completed"
        if self.store.advance_rollout(record.id, "finalizing", state=outcome):
            self.events(record.name, f"completed: version {record.to_version} is stable; "
                                     f"version {record.from_version} removed")
            if desired.rollout.experiment:
                self.store.put_hold(name=record.name, spec_digest=desired.spec_digest, outcome="promoted",
                                    reason=f"model {desired.experiment.model.name if desired.experiment else '?'} "
                                           f"version {record.to_version} was promoted by hand",
                                    live_version=record.to_version)
        return self._reload(record)

    def _on_aborting(self, record: RolloutRecord, live: ObservedDeployment) -> RolloutRecord:
        # Interrupted half-way through ending: finish it the way it began (see _abort).
        ending = record.requested or "aborted"
        outcome = ending.rstrip("!")
        return self._abort(record, record.message or "aborted", outcome=outcome, hold=not ending.endswith("!"),
                           revision_outcome=outcome if outcome == "rolled-back" else None)

    # -- rollback ---------------------------------------------------------------------

    def rollback_warm(self, record: RolloutRecord) -> RolloutRecord:
        """Promoted but the previous version is still loaded: flip traffic back at once."""
        if not self.store.advance_rollout(record.id, record.state, state="aborting", requested="rolled-back",
                                          message="rolled back by hand (`mlopsfile rollback`)"):
            raise MlopsfileError(f"the rollout of {record.name!r} changed while rolling back; try again")
        return self._abort(self._reload(record), "rolled back by hand (`mlopsfile rollback`)",
                           outcome="rolled-back", revision_outcome="rolled-back")

    # -- helpers ----------------------------------------------------------------------

    def _to(self, record: RolloutRecord, state: str, message: str) -> RolloutRecord:
        if self.store.advance_rollout(record.id, record.state, expected_step=record.step, state=state,
                                      message=message, requested=None):
            self.events(record.name, message)
        return self._reload(record)

    def _abort(self, record: RolloutRecord, reason: str, outcome: str = "aborted", hold: bool = True,
               revision_outcome: str | None = None) -> RolloutRecord:
        """100% back to stable at once, then the candidate removed; the reason recorded."""
        # The way it ends rides along in 'requested', so a loop resumed mid-way ends it the same way.
        if record.state != "aborting" and not self.store.advance_rollout(
                record.id, record.state, state="aborting", message=reason, requested=outcome + ("" if hold else "!")):
            return self._reload(record)
        self.events(record.name, f"aborting: {reason}")
        live = self.driver.observe_one(record.name)
        if live is not None:
            self._back_to_stable(live)
        else:
            self.driver.delete_candidate(record.name)
        self.events(record.name, f"{outcome}: {reason}; all traffic on version "
                                 f"{live.serving.model_version if live and live.serving else record.from_version}")
        return self._finish(record, "aborting", outcome, reason, hold=hold, revision_outcome=revision_outcome)

    def _finish(self, record: RolloutRecord, expected: str, outcome: str, reason: str, hold: bool,
                revision_outcome: str | None = None) -> RolloutRecord:
        if self.store.advance_rollout(record.id, expected, state=outcome, message=reason, requested=None):
            self.store.set_revision_outcome(record.name, record.revision, revision_outcome or outcome, reason)
            self.store.audit(operation="rollout", outcome=outcome, resource=f"deployment/{record.name}",
                             action=record.strategy, revision=record.revision, message=reason,
                             git_commit=self.git_commit)
            if hold and record.spec_digest:
                self.store.put_hold(name=record.name, spec_digest=record.spec_digest, outcome=outcome,
                                    reason=f"the {record.strategy} rollout to version {record.to_version} "
                                           f"was {outcome.replace('-', ' ')}: {reason}",
                                    live_version=record.from_version)
        return self._reload(record)

    def _clear_candidate(self, live: ObservedDeployment, outcome: str, reason: str) -> None:
        active = self.store.active_rollout(live.name)
        self._back_to_stable(live)
        if active is not None:
            self._finish(active, active.state, outcome, reason, hold=False)

    def _back_to_stable(self, live: ObservedDeployment) -> None:
        """Every request on the stable version (in place), then the candidate removed."""
        if live.traffic is not None and live.serving is not None and live.ownership is not None:
            stable_only = _stable_only(live)
            if (live.traffic.mode, live.traffic.arms) != (stable_only.mode, stable_only.arms):
                self.driver.set_traffic(live.name, live.serving, live.ownership, stable_only)
        if live.candidate is not None:
            self.driver.delete_candidate(live.name)

    def _apply_weights(self, record: RolloutRecord, live: ObservedDeployment) -> None:
        """Make the live traffic table what this state of the rollout wants (idempotent)."""
        settings = self._desired(record).rollout
        mode = {"ab": "ab", "shadow": "shadow"}.get(settings.strategy, "split")
        weight = {"step": lambda: settings.steps[record.step][0], "preview": lambda: 0.0,
                  "running": lambda: settings.weight if settings.strategy == "ab" else 0.0,
                  "promoting": lambda: 100.0, "keeping": lambda: 100.0}[record.state]()
        if record.state in ("promoting", "keeping"):
            mode = "split"
        wanted = _traffic(record.name, live, record, weight, mode=mode, sticky=settings.sticky_header,
                          sample=settings.sample if mode == "shadow" else 0.0)
        current = live.traffic
        if current is not None and (current.mode, current.arms, current.sticky_header, current.shadow_sample) == \
                (wanted.mode, wanted.arms, wanted.sticky_header, wanted.shadow_sample):
            return
        assert live.serving is not None and live.ownership is not None
        self.driver.set_traffic(record.name, live.serving, live.ownership, wanted)

    def _counters(self, live: ObservedDeployment) -> dict[str, Any]:
        """Every arm's cumulative counters ({'candidate/4': {...}, ...}); empty when unreadable."""
        try:
            return dict(self.driver.traffic_stats(live).get("arms", {}))
        except DriverError:
            return {}

    def _window_report(self, record: RolloutRecord, live: ObservedDeployment) -> GateReport:
        key = arm_key("candidate", str(record.to_version))
        settings = self._desired(record).rollout
        drift = self._drift_windows(settings.drift_monitor, key, record.started_at) if settings.drift_monitor else None
        return evaluate(window_stats(self._counters(live), record.baseline, key), settings, drift)

    def _drift_windows(self, monitor: str, key: str, since: datetime) -> DriftWindows:
        """The candidate's windows the monitor tested since the rollout started."""
        if self.drift is None:
            return DriftWindows(monitor, 0, 0, readable=False)
        try:
            verdicts = self.drift(monitor)
        except DriverError:
            return DriftWindows(monitor, 0, 0, readable=False)
        mine = [v for v in verdicts if v.get("arm") == key and float(v.get("time") or 0) >= since.timestamp()]
        p_values = [float(v["p_value"]) for v in mine if v.get("p_value") is not None]
        return DriftWindows(monitor, len(mine), sum(1 for v in mine if v.get("is_drift")),
                            min(p_values) if p_values else None)

    def _arm_summary(self, live: ObservedDeployment, record: RolloutRecord) -> str:
        counters = self._counters(live)
        parts = []
        for role, version in (("stable", record.from_version), ("candidate", record.to_version)):
            stats = window_stats(counters, record.baseline, arm_key(role, str(version)))
            parts.append(f"{role} version {version}: {stats.requests} requests, {stats.errors} errors")
        return "; ".join(parts)

    def _elapsed(self, record: RolloutRecord) -> float:
        started = record.step_started_at or record.started_at
        return (self.now() - started).total_seconds()

    def _desired(self, record: RolloutRecord) -> DesiredDeployment:
        return DesiredDeployment.model_validate(record.desired)

    def _reload(self, record: RolloutRecord) -> RolloutRecord:
        fresh = self.store.rollout(record.id)
        assert fresh is not None
        return fresh


def window_stats(current: dict[str, Any], baseline: dict[str, Any], key: str) -> ArmStats:
    """One arm's counters since the baseline was taken."""
    now = ArmStats.from_dict(current.get(key, {}))
    return now.minus(ArmStats.from_dict(baseline[key])) if key in baseline else now


def _candidate_serving(desired: DesiredDeployment) -> OnlineServing:
    return desired.experiment.serving if desired.experiment is not None else desired.serving


def _stable_only(live: ObservedDeployment) -> Traffic:
    assert live.serving is not None
    return Traffic(generation=(live.traffic.generation if live.traffic else 0) + 1,
                   arms=(TrafficArm(role="stable", version=live.serving.model_version, weight=100.0),))


def _traffic(name: str, live: ObservedDeployment, record: RolloutRecord, weight: float, mode: str,
             sticky: str | None = None, sample: float = 0.0) -> Traffic:
    assert live.serving is not None
    generation = (live.traffic.generation if live.traffic is not None else 0) + 1
    return Traffic(
        generation=generation, mode=mode, sticky_header=sticky if mode == "ab" else None, shadow_sample=sample,
        arms=(TrafficArm(role="stable", version=live.serving.model_version, weight=100.0 - weight),
              TrafficArm(role="candidate", version=str(record.to_version), app=candidate_app(name), weight=weight)),
    )
