"""Is a saved plan still true? Compare what it was made from with what is there now."""

from __future__ import annotations

from mlopsfile.errors import StalePlanError
from mlopsfile.plan.planner import live_fingerprints
from mlopsfile.plan.types import PLAN_FORMAT_VERSION, Plan
from mlopsfile.resources import ObservedState


def check_fresh(plan: Plan, specs_digest: str, spec_digests: dict[str, str], observed: ObservedState, project: str) -> None:
    """Raise StalePlanError naming every resource that moved since the plan was made."""
    if plan.format_version != PLAN_FORMAT_VERSION:
        raise StalePlanError(f"plan format {plan.format_version} is not supported (this mlopsfile reads {PLAN_FORMAT_VERSION})")
    if plan.project != project:
        raise StalePlanError(f"plan was made for project {plan.project!r}, not {project!r}")
    moved: list[str] = []
    if plan.specs_digest != specs_digest:
        for name in sorted(set(plan.spec_digests) | set(spec_digests)):
            before, after = plan.spec_digests.get(name), spec_digests.get(name)
            if before != after:
                state = "added" if before is None else "removed" if after is None else "changed"
                moved.append(f"spec of deployment/{name} {state}")
        if not moved:
            moved.append("the spec files changed")
    live = live_fingerprints(observed, project)
    for name in sorted(set(plan.observed) | set(live)):
        before, after = plan.observed.get(name), live.get(name)
        if before != after:
            state = "appeared" if before is None else "disappeared" if after is None else "changed"
            moved.append(f"live deployment/{name} {state}")
    if moved:
        raise StalePlanError("saved plan is stale: " + "; ".join(moved) + ". Run plan again.")
