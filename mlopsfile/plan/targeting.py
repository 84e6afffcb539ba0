"""``--target``: narrow a plan to some resources and what they depend on. Pure.

A target names a Deployment or a Monitor (``NAME``, ``deployment/NAME`` or
``monitor/NAME``). Its dependencies come along: a Deployment's canary drift gate
monitor; a Monitor's deployment and the batch deployments its ``run`` actions start.
Models have nothing live of their own: they are resolved for whichever deployment needs
them. Everything outside the closure is left as it is — neither created, changed nor
deleted — and the plan says it is partial.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlopsfile.errors import PlanError
from mlopsfile.plan.types import Notice, Plan
from mlopsfile.spec.specset import SpecSet

Address = tuple[str, str]  # (kind, name)
KINDS = {"deployment": "Deployment", "monitor": "Monitor"}


def resolve_targets(targets: Iterable[str], specset: SpecSet | None, plan: Plan) -> set[Address]:
    """The addresses the targets name; a one-line PlanError for one that names nothing.

    A resource whose spec was removed can be targeted too (its delete is in the plan).
    """
    known: set[Address] = {(c.kind, c.name) for c in plan.changes} | {(u.kind, u.name) for u in plan.unchanged}
    if specset is not None:
        known |= {("Deployment", n) for n in specset.deployments} | {("Monitor", n) for n in specset.monitors}
    found: set[Address] = set()
    unknown = []
    for target in targets:
        prefix, _, name = target.rpartition("/")
        kinds = [KINDS[prefix.lower()]] if prefix.lower() in KINDS else ([] if prefix else list(KINDS.values()))
        matches = {(kind, name) for kind in kinds} & known
        if not matches:
            unknown.append(target)
        found |= matches
    if unknown:
        raise PlanError(f"unknown target {', '.join(map(repr, unknown))}: no Deployment or Monitor of that name "
                        "in the specs or live (write NAME, deployment/NAME or monitor/NAME)")
    return found


def with_dependencies(addresses: set[Address], specset: SpecSet | None) -> set[Address]:
    """``addresses`` and, transitively, everything they need to work."""
    closure = set(addresses)
    pending = list(addresses)
    while pending:
        for needed in _needs(pending.pop(), specset):
            if needed not in closure:
                closure.add(needed)
                pending.append(needed)
    return closure


def _needs(address: Address, specset: SpecSet | None) -> list[Address]:
    kind, name = address
    if specset is None:
        return []
    if kind == "Deployment" and name in specset.deployments:
        analysis = getattr(specset.deployment(name).spec.rollout, "analysis", None)
        gate = getattr(analysis, "drift", None)
        return [("Monitor", gate)] if gate else []
    if kind == "Monitor" and name in specset.monitors:
        spec = specset.monitor(name).spec
        runs = [("Deployment", action.deployment) for action in spec.on_drift if getattr(action, "type", "") == "run"]
        return [("Deployment", spec.deployment), *runs]  # type: ignore[attr-defined]
    return []


def restrict(plan: Plan, closure: set[Address], targets: Iterable[str]) -> Plan:
    """The plan with only the changes inside ``closure``, and a notice that it is partial."""
    kept = tuple(c for c in plan.changes if (c.kind, c.name) in closure)
    left = len(plan.changes) - len(kept)
    message = (f"--target {', '.join(targets)}: only {_listing(closure)} "
               f"{'is' if len(closure) == 1 else 'are'} planned; "
               f"{left} other change(s) the specs need are left out. Resources outside the target are neither "
               "created, changed nor deleted: run a plan without --target to see everything.")
    return plan.model_copy(update={
        "changes": kept,
        "unchanged": tuple(u for u in plan.unchanged if (u.kind, u.name) in closure),
        "notices": (*(n for n in plan.notices if (n.kind, n.name) in closure),
                    Notice(name="partial", kind="Plan", message=message)),
        "lifecycle": tuple(c for c in plan.lifecycle if (c.kind, c.name) in closure),
    })


def _listing(closure: set[Address]) -> str:
    return ", ".join(f"{kind.lower()}/{name}" for kind, name in sorted(closure))
