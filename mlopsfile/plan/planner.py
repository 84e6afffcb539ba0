"""Desired × observed × records → Plan. Pure: no I/O, no clock, no randomness."""

from __future__ import annotations

from collections.abc import Mapping

from mlopsfile.errors import PlanError
from mlopsfile.plan.types import ACTION_ORDER, Action, Change, FieldDiff, Plan, Unchanged
from mlopsfile.resources import (
    REPLACING_FIELDS,
    DesiredDeployment,
    DesiredState,
    ObservedDeployment,
    ObservedState,
    OnlineServing,
)


def make_plan(
    desired: DesiredState,
    observed: ObservedState,
    last_revisions: Mapping[str, int],
    created_at: str,
    mode: str = "apply",
) -> Plan:
    """Work out what must change so the live state matches the specs.

    ``last_revisions`` comes from the state store: the newest revision recorded per
    deployment. The next revision is one past both that and the revision the live
    application carries, so a fresh or separate state store never reuses a number.
    """
    changes: list[Change] = []
    unchanged: list[Unchanged] = []
    conflicts: list[str] = []
    for want in desired.deployments:
        live = observed.deployment(want.name)
        next_revision = _next_revision(want.name, live, last_revisions)
        if live is not None and not live.managed_by(desired.project):
            conflicts.append(_conflict_message(want, live, desired.project))
            continue
        change = _change_for(want, live, next_revision)
        if change is None:
            unchanged.append(Unchanged(name=want.name, reason=f"up to date (model version {want.model.version})"))
        else:
            changes.append(change)
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
    changes.sort(key=lambda c: (ACTION_ORDER[c.action], c.name))
    return Plan(
        mode=mode,
        project=desired.project,
        created_at=created_at,
        specs_digest=desired.specs_digest,
        spec_digests={d.name: d.spec_digest for d in desired.deployments},
        observed={d.name: d.fingerprint() for d in observed.deployments if d.managed_by(desired.project)},
        models=desired.models,
        changes=tuple(changes),
        unchanged=tuple(sorted(unchanged, key=lambda u: u.name)),
    )


def _next_revision(name: str, live: ObservedDeployment | None, last_revisions: Mapping[str, int]) -> int:
    live_revision = live.ownership.revision if live is not None and live.ownership is not None else 0
    return max(last_revisions.get(name, 0), live_revision) + 1


def _conflict_message(want: DesiredDeployment, live: ObservedDeployment, project: str) -> str:
    owner = "was not created by mlopsfile" if live.ownership is None else f"belongs to mlopsfile project {live.ownership.project!r}"
    return (
        f"{want.source}: Deployment {want.name!r}: a live {live.target} application named {want.name!r} "
        f"{owner}; mlopsfile never touches it (rename the Deployment)"
    )


def _change_for(want: DesiredDeployment, live: ObservedDeployment | None, revision: int) -> Change | None:
    if live is not None and live.serving is None:
        return Change(
            action=Action.REPLACE, name=want.name, target=want.target, desired=want, revision=revision,
            reason="its live configuration cannot be read; it is deployed again from the specs",
            diffs=_diffs(None, want.serving),
        )
    if live is None:
        return Change(
            action=Action.CREATE, name=want.name, target=want.target, desired=want, revision=revision,
            reason=f"it does not exist yet; model {want.model.name} version {want.model.version}",
            diffs=_diffs(None, want.serving),
        )
    diffs = _diffs(live.serving, want.serving)
    spec_changed = live.ownership is not None and live.ownership.spec_digest != want.spec_digest
    if not diffs:
        if spec_changed:
            # Only labels or descriptions moved: nothing live changes, the new digest is recorded.
            return Change(action=Action.UPDATE, name=want.name, target=want.target, desired=want, revision=revision,
                          reason="the spec changed without changing anything that runs; its record is updated")
        return None
    replacing = any(d.forces_replacement for d in diffs)
    return Change(
        action=Action.REPLACE if replacing else Action.UPDATE,
        name=want.name, target=want.target, desired=want, revision=revision, diffs=diffs,
        reason=_reason(want, live.serving, diffs, spec_changed),
    )


def _reason(want: DesiredDeployment, live: OnlineServing, diffs: list[FieldDiff], spec_changed: bool) -> str:
    fields = {d.field for d in diffs}
    if fields & {"model_version", "model_digest", "model_uri"}:
        source = f"alias @{want.model.alias}" if want.model.alias else want.model.uri
        if live.model_version != want.model.version:
            return f"model {want.model.name} ({source}) moves from version {live.model_version} to {want.model.version}"
        return f"model {want.model.name} version {want.model.version} has different artifacts (digest changed)"
    if fields == {"runtime_digest"}:
        return "the serving runtime code changed"
    if not spec_changed:
        return "the live state drifted from the specs (changed outside mlopsfile): " + ", ".join(sorted(fields))
    kind = "needs new replicas" if any(d.forces_replacement for d in diffs) else "applies in place"
    return f"spec changed ({', '.join(sorted(fields))}); {kind}"


def _diffs(old: OnlineServing | None, new: OnlineServing | None) -> list[FieldDiff]:
    old_values = old.model_dump() if old else {}
    new_values = new.model_dump() if new else {}
    diffs = []
    for field in sorted(set(old_values) | set(new_values)):
        before, after = old_values.get(field), new_values.get(field)
        if before != after:
            diffs.append(FieldDiff(field=field, old=before, new=after, forces_replacement=field in REPLACING_FIELDS))
    return diffs
