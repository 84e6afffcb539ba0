"""After an apply: record the prevent_destroy flags it carried, forget what it deleted."""

from __future__ import annotations

from mlopsfile.apply.executor import ApplyReport
from mlopsfile.plan.types import Action, Plan
from mlopsfile.state.store import StateStore


def record_lifecycle(store: StateStore, plan: Plan, report: ApplyReport) -> None:
    """Flags are recorded even when a change failed: they describe the specs, not the live state."""
    deleted = [(o.change.kind, o.change.name) for o in report.outcomes
               if o.change.action == Action.DELETE and o.outcome == "applied"]
    flags = {(c.kind, c.name): c.prevent_destroy for c in plan.lifecycle}
    if flags or deleted:
        store.record_protections(flags, forget=deleted)
