"""What the API does to every plan after the planner: flags, --target and prevent_destroy. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mlopsfile.plan.protection import Address, check_protected, spec_flags, with_lifecycle
from mlopsfile.plan.targeting import resolve_targets, restrict, with_dependencies
from mlopsfile.plan.types import Plan
from mlopsfile.spec.specset import SpecSet


def guard_plan(plan: Plan, specset: SpecSet | None, remembered: Mapping[Address, bool],
               targets: Sequence[str] = (), destroy: bool = False) -> Plan:
    """Add the prevent_destroy flags apply records, narrow to ``targets``, then refuse what is protected.

    The check comes last so that a delete left out by ``--target`` does not stop the plan.
    """
    flags = spec_flags(specset)
    if not destroy:
        plan = with_lifecycle(plan, flags, remembered)
    if targets:
        plan = restrict(plan, with_dependencies(resolve_targets(targets, specset, plan), specset), targets)
    check_protected(plan, flags, remembered)
    return plan
