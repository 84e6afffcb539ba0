"""Desired × observed × records → Plan. Pure: no I/O, no clock, no randomness."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from mlopsfile.errors import PlanError
from mlopsfile.plan.batch import plan_batches, stop_orphans
from mlopsfile.plan.edge import plan_edges, remove_orphan_edges
from mlopsfile.plan.monitor import plan_monitors
from mlopsfile.plan.types import (
    ACTION_ORDER,
    Action,
    Change,
    FieldDiff,
    Hold,
    Notice,
    Plan,
    RolloutChange,
    Unchanged,
)
from mlopsfile.resources import (
    REPLACING_FIELDS,
    DesiredDeployment,
    DesiredState,
    ObservedDeployment,
    ObservedState,
    OnlineServing,
    replace_digest,
)

MODEL_FIELDS = frozenset({"model_uri", "model_version", "model_digest"})


def make_plan(
    desired: DesiredState,
    observed: ObservedState,
    last_revisions: Mapping[str, int],
    created_at: str,
    mode: str = "apply",
    holds: Mapping[str, Hold] | None = None,
    retry: bool = False,
    forced_runs: Collection[str] = (),
) -> Plan:
    """Work out what must change so the live state matches the specs.

    ``last_revisions`` comes from the state store: the newest revision recorded per
    deployment. The next revision is one past both that and the revision the live
    application carries, so a fresh or separate state store never reuses a number.
    ``holds`` (also from the store) name rollouts that were aborted, ended or rolled
    back by hand for the current spec: they are reported, not proposed again.
    Batch deployments run when their output is not current or their schedule is due at
    ``created_at``; ``retry`` runs again one whose last run failed on its data, and
    ``forced_runs`` run whatever their state.
    """
    holds = holds or {}
    changes: list[Change] = []
    unchanged: list[Unchanged] = []
    notices: list[Notice] = []
    conflicts: list[str] = []
    for want in desired.deployments:
        live = observed.deployment(want.name)
        next_revision = _next_revision(want.name, live, last_revisions)
        if live is not None and not live.managed_by(desired.project):
            conflicts.append(_conflict_message(want, live, desired.project))
            continue
        hold = holds.get(want.name)
        if hold is not None and hold.spec_digest != want.spec_digest:
            hold = None
        outcome = _change_for(want, live, next_revision, hold)
        if outcome is None or isinstance(outcome, str):
            outcome = Unchanged(name=want.name, reason=outcome or f"up to date (model version {want.model.version})")
        _sort_into(outcome, changes, notices, unchanged)
    if conflicts:
        raise PlanError("; ".join(conflicts))
    wanted = {d.name for d in desired.deployments}
    for live in observed.deployments:
        if live.name not in wanted and live.managed_by(desired.project):
            changes.append(Change(
                action=Action.DELETE,
                name=live.name,
                target=live.target,
                reason="its spec was removed",
                diffs=_diffs(live.serving, None),
                revision=_next_revision(live.name, live, last_revisions),
            ))
    for batch in plan_batches(desired, observed, last_revisions, datetime.fromisoformat(created_at), retry, forced_runs):
        _sort_into(batch, changes, notices, unchanged)
    changes.extend(stop_orphans(desired, observed, desired.project, last_revisions))
    for edge in plan_edges(desired, observed, last_revisions, holds):
        _sort_into(edge, changes, notices, unchanged)
    changes.extend(remove_orphan_edges(desired, observed, desired.project, last_revisions))
    for monitor in plan_monitors(desired, observed):
        _sort_into(monitor, changes, notices, unchanged)
    changes.sort(key=lambda c: (ACTION_ORDER[c.action], c.name))
    notices.extend(Notice(kind="Model", name=m.name, message=m.lock_notice) for m in desired.models if m.lock_notice)
    return Plan(
        mode=mode,
        project=desired.project,
        created_at=created_at,
        specs_digest=desired.specs_digest,
        spec_digests={d.name: d.spec_digest for d in (*desired.deployments, *desired.batches, *desired.edges)},
        observed=live_fingerprints(observed, desired.project),
        batch_outputs={b.name: b.job.output for b in desired.batches},
        edge_bundles={e.name: e.bundle for e in desired.edges},
        models=desired.models,
        changes=tuple(changes),
        unchanged=tuple(sorted(unchanged, key=lambda u: u.name)),
        notices=tuple(notices),
    )


def _sort_into(outcome: Change | Notice | Unchanged, changes: list[Change], notices: list[Notice],
               unchanged: list[Unchanged]) -> None:
    """A held resource is reported twice: as a notice, and among the unchanged."""
    if isinstance(outcome, Change):
        changes.append(outcome)
    elif isinstance(outcome, Notice):
        notices.append(outcome)
        unchanged.append(Unchanged(name=outcome.name, reason="held: " + outcome.message))
    else:
        unchanged.append(outcome)


def live_fingerprints(observed: ObservedState, project: str) -> dict[str, str]:
    """What a saved plan remembers of each live managed resource, to notice it moved."""
    found = {d.name: d.fingerprint() for d in observed.deployments if d.managed_by(project)}
    found.update({b.name: b.fingerprint() for b in observed.batches if b.project == project})
    found.update({e.name: e.fingerprint() for e in observed.edges if e.project == project})
    found.update({f"monitor/{m.name}": m.digest for m in observed.monitors if m.project == project})
    return found


def _next_revision(name: str, live: ObservedDeployment | None, last_revisions: Mapping[str, int]) -> int:
    live_revision = live.ownership.revision if live is not None and live.ownership is not None else 0
    return max(last_revisions.get(name, 0), live_revision) + 1


def _conflict_message(want: DesiredDeployment, live: ObservedDeployment, project: str) -> str:
    owner = "was not created by mlopsfile" if live.ownership is None else f"belongs to mlopsfile project {live.ownership.project!r}"
    return (
        f"{want.source}: Deployment {want.name!r}: a live {live.target} application named {want.name!r} "
        f"{owner}; mlopsfile never touches it (rename the Deployment)"
    )


def _change_for(want: DesiredDeployment, live: ObservedDeployment | None, revision: int,
                hold: Hold | None) -> Change | Notice | str | None:
    """The one change this deployment needs; a Notice when it is held; a reason string or
    None when nothing needs doing."""
    def change(action: Action, reason: str, diffs: list[FieldDiff], rollout: RolloutChange | None = None) -> Change:
        return Change(action=action, name=want.name, target=want.target, desired=want, revision=revision,
                      reason=reason, diffs=tuple(diffs), rollout=rollout)

    if live is None:
        reason = f"it does not exist yet; model {want.model.name} version {want.model.version}"
        return change(Action.CREATE, reason, _diffs(None, want.serving), _experiment_start(want))
    if live.serving is None:
        return change(Action.REPLACE, "its live configuration cannot be read; it is deployed again from the specs",
                      _diffs(None, want.serving))
    diffs = _diffs(live.serving, want.serving)
    model_moves = any(d.field in MODEL_FIELDS for d in diffs)
    candidate = live.candidate
    # A candidate of a progressive rollout runs under a weighted split (A/B and shadow tables say so).
    candidate_is_wanted = (candidate is not None and _same_candidate(candidate.serving, want.serving)
                           and (live.traffic is None or live.traffic.mode == "split"))
    if model_moves and hold is not None:
        return _held(want, live, hold)
    if model_moves and want.rollout.progressive:
        if candidate_is_wanted:
            return f"rollout of version {want.model.version} in progress ({want.rollout.strategy}); see `mlopsfile status`"
        superseded = candidate.serving.model_version if candidate is not None else None
        rollout = RolloutChange(strategy=want.rollout.strategy, from_version=live.serving.model_version,
                                to_version=want.model.version, candidate_model=want.model.name,
                                description=want.rollout.describe(), supersedes=superseded)
        reason = _reason(want, live.serving, diffs, True) + f", through a {want.rollout.strategy} rollout"
        if superseded is not None:
            reason += f" (replaces the rollout to version {superseded} in progress)"
        return change(Action.ROLLOUT, reason, diffs, rollout)
    experiment = _experiment_change(want, live, candidate_is_wanted)
    if experiment is not None and experiment.operation == "start" and hold is not None:
        return _held(want, live, hold)
    spec_changed = live.ownership is not None and live.ownership.spec_digest != want.spec_digest
    if diffs:
        replacing = any(d.forces_replacement for d in diffs)
        reason = _reason(want, live.serving, diffs, spec_changed)
        if experiment is not None:
            reason += "; " + _experiment_reason(experiment)
        return change(Action.REPLACE if replacing else Action.UPDATE, reason, diffs, experiment)
    if experiment is not None:
        return change(Action.ROLLOUT, _experiment_reason(experiment), [], experiment)
    if spec_changed:
        # Only labels or descriptions moved: nothing live changes, the new digest is recorded.
        return change(Action.UPDATE, "the spec changed without changing anything that runs; its record is updated", [])
    return None


def _same_replicas(a: OnlineServing, b: OnlineServing) -> bool:
    return replace_digest(a) == replace_digest(b)


def _same_candidate(candidate: OnlineServing, wanted: OnlineServing) -> bool:
    """A candidate serves on no route, or a blue-green preview route: compare all else."""
    return _same_replicas(candidate.model_copy(update={"route": wanted.route}), wanted)


def _held(want: DesiredDeployment, live: ObservedDeployment, hold: Hold) -> Notice:
    live_version = live.serving.model_version if live.serving else "?"
    versions = ""
    if live_version != want.model.version:
        versions = f"live serves model version {live_version}, the specs want version {want.model.version}: "
    return Notice(name=want.name, message=(
        f"{versions}the live state differs from the specs because {hold.reason} ({hold.outcome} at {hold.at}). "
        "Nothing is started again until the spec changes, or you run `mlopsfile apply --retry`."
    ))


def _experiment_start(want: DesiredDeployment) -> RolloutChange | None:
    if want.experiment is None:
        return None
    return RolloutChange(strategy=want.rollout.strategy, to_version=want.experiment.model.version,
                         from_version=want.model.version, candidate_model=want.experiment.model.name,
                         description=want.rollout.describe())


def _experiment_change(want: DesiredDeployment, live: ObservedDeployment, candidate_is_wanted: bool) -> RolloutChange | None:
    """Start, restart or end the second arm (A/B, shadow) or a rollout the specs no longer want."""
    candidate = live.candidate
    if want.experiment is None:
        if candidate is None or (want.rollout.progressive and candidate_is_wanted):
            return None
        return RolloutChange(strategy=want.rollout.strategy, operation="end",
                             from_version=candidate.serving.model_version, to_version=None,
                             description=f"stop sending requests to version {candidate.serving.model_version} "
                                         "and remove it; the specs no longer ask for it")
    running = (candidate is not None and _same_candidate(candidate.serving, want.experiment.serving)
               and live.traffic is not None and _traffic_matches(want, live))
    return None if running else _experiment_start(want)


def _traffic_matches(want: DesiredDeployment, live: ObservedDeployment) -> bool:
    traffic = live.traffic
    assert traffic is not None
    if want.rollout.strategy == "shadow":
        return traffic.mode == "shadow" and abs(traffic.shadow_sample - want.rollout.sample) < 1e-9
    return (traffic.mode == "ab" and traffic.sticky_header == want.rollout.sticky_header
            and abs(traffic.weight_of("candidate") - want.rollout.weight) < 1e-9)


def _experiment_reason(experiment: RolloutChange) -> str:
    if experiment.operation == "end":
        return f"ends the rollout to version {experiment.from_version}: {experiment.description}"
    return (f"starts {experiment.description} with model {experiment.candidate_model} "
            f"version {experiment.to_version}")


def _reason(want: DesiredDeployment, live: OnlineServing, diffs: list[FieldDiff], spec_changed: bool) -> str:
    fields = {d.field for d in diffs}
    if fields & MODEL_FIELDS:
        source = f"alias @{want.model.alias}" if want.model.alias else want.model.uri
        if live.model_version != want.model.version:
            return f"model {want.model.name} ({source}) moves from version {live.model_version} to {want.model.version}"
        return f"model {want.model.name} version {want.model.version} has different artifacts (digest changed)"
    if fields == {"runtime_digest"}:
        return "the serving runtime code changed"
    if fields == {"taps"}:
        return _taps_reason(live, want.serving)
    if not spec_changed:
        return "the live state drifted from the specs (changed outside mlopsfile): " + ", ".join(sorted(fields))
    kind = "needs new replicas" if any(d.forces_replacement for d in diffs) else "applies in place"
    return f"spec changed ({', '.join(sorted(fields))}); {kind}"


def _taps_reason(live: OnlineServing, want: OnlineServing) -> str:
    """Monitors are documents of their own: adding one changes what the ingress samples, in place."""
    before = {t.monitor: t for t in live.taps}
    after = {t.monitor: t for t in want.taps}
    parts = [f"starts handing {t.sample:.0%} of its requests to monitor/{name}"
             for name, t in after.items() if name not in before]
    parts += [f"stops feeding monitor/{name}" for name in before if name not in after]
    parts += [f"feeds monitor/{name} {t.sample:.0%} of its {t.target}" for name, t in after.items()
              if name in before and before[name] != t]
    return "the ingress " + "; ".join(parts) + " (in place)"


def _diffs(old: OnlineServing | None, new: OnlineServing | None) -> list[FieldDiff]:
    old_values = old.model_dump(mode="json") if old else {}
    new_values = new.model_dump(mode="json") if new else {}
    diffs = []
    for field in sorted(set(old_values) | set(new_values)):
        before, after = old_values.get(field), new_values.get(field)
        if field == "taps" and not before and not after:  # no monitor on either side is no news
            continue
        if before != after:
            diffs.append(FieldDiff(field=field, old=before, new=after, forces_replacement=field in REPLACING_FIELDS))
    return diffs
