"""``lifecycle.prevent_destroy``: refuse plans that would destroy a protected resource. Pure.

The flag of a resource whose spec was removed is gone with the spec, so apply records
every flag in the state store; a delete is checked against both the specs (when they
still name the resource) and that record. A replace is checked against the specs alone:
the resource is still in them.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlopsfile.errors import PlanError
from mlopsfile.plan.types import Action, Change, LifecycleChange, Notice, Plan
from mlopsfile.spec.specset import SpecSet

Address = tuple[str, str]  # (kind, name)

# Targets whose replace stops the live resource before its successor runs: a monitor's
# actor (its open windows are lost). An online replace starts new replicas first and a
# new edge image keeps the previous one tagged, so neither destroys anything.
DESTROYING_REPLACE = frozenset({"monitor"})


def spec_flags(specset: SpecSet | None) -> dict[Address, bool]:
    """prevent_destroy of every Deployment and Monitor of the specs."""
    if specset is None:
        return {}
    flags = {("Deployment", n): specset.deployment(n).lifecycle.prevent_destroy for n in specset.deployments}
    flags.update({("Monitor", n): specset.monitor(n).lifecycle.prevent_destroy for n in specset.monitors})
    return flags


def destroys(change: Change) -> bool:
    return change.action == Action.DELETE or (change.action == Action.REPLACE and change.target in DESTROYING_REPLACE)


def check_protected(plan: Plan, flags: Mapping[Address, bool], remembered: Mapping[Address, bool]) -> None:
    """Raise one PlanError naming every protected resource the plan would delete or replace-destroy."""
    refused = []
    for change in plan.changes:
        if not destroys(change):
            continue
        key = (change.kind, change.name)
        in_specs = flags.get(key, False)
        recorded = change.action == Action.DELETE and remembered.get(key, False)
        if not (in_specs or recorded):
            continue
        verb = "delete" if change.action == Action.DELETE else "replace (stop, then start again)"
        if in_specs:
            fix = "set lifecycle.prevent_destroy: false in its spec and apply that first"
        else:
            fix = ("it was applied with lifecycle.prevent_destroy: true; put its spec back with "
                   "prevent_destroy: false and apply that first")
        refused.append(f"{change.address} is protected by prevent_destroy and the plan would {verb} it "
                       f"({change.reason}); {fix}")
    if refused:
        raise PlanError("; ".join(refused))


def lifecycle_changes(flags: Mapping[Address, bool], remembered: Mapping[Address, bool]) -> tuple[LifecycleChange, ...]:
    """The flags of the specs that differ from the record: apply records them."""
    return tuple(LifecycleChange(kind=kind, name=name, prevent_destroy=flag)
                 for (kind, name), flag in sorted(flags.items()) if flag != remembered.get((kind, name), False))


def with_lifecycle(plan: Plan, flags: Mapping[Address, bool], remembered: Mapping[Address, bool]) -> Plan:
    """The plan carrying the flag changes apply records, each told in a notice."""
    changes = lifecycle_changes(flags, remembered)
    if not changes:
        return plan
    notices = tuple(Notice(name=c.name, kind=c.kind, message=(
        "lifecycle.prevent_destroy becomes " + ("true: apply records it, and from then on no plan may delete this "
                                                "resource" if c.prevent_destroy else
                                                "false: apply records it; the resource may then be deleted")))
        for c in changes)
    return plan.model_copy(update={"lifecycle": changes, "notices": (*plan.notices, *notices)})
