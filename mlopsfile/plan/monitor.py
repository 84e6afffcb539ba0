"""Drift monitors in the plan: start, restart or stop monitor actors. Pure.

A monitor actor runs one configuration; any change to it (detector, window, actions,
reference file) starts a new actor, whose windows start empty. Verdicts already synced
stay in the state store.
"""

from __future__ import annotations

from mlopsfile.monitor_resources import DesiredMonitor, ObservedMonitor
from mlopsfile.plan.types import Action, Change, FieldDiff, Unchanged
from mlopsfile.resources import DesiredState, ObservedState

KIND = "Monitor"


def plan_monitors(desired: DesiredState, observed: ObservedState) -> list[Change | Unchanged]:
    outcomes: list[Change | Unchanged] = []
    for want in desired.monitors:
        live = observed.monitor(want.name)
        if live is not None and live.project != desired.project:
            live = None  # another project's monitor of the same name: creating ours fails loudly at apply
        outcomes.append(_monitor_outcome(want, live))
    wanted = {m.name for m in desired.monitors}
    for live in observed.monitors:
        if live.project == desired.project and live.name not in wanted:
            outcomes.append(Change(action=Action.DELETE, kind=KIND, name=live.name, target="monitor", revision=0,
                                   reason="its spec was removed; the actor stops (its synced verdicts stay)",
                                   diffs=(FieldDiff(field="digest", old=live.digest, new=None),)))
    return outcomes


def _monitor_outcome(want: DesiredMonitor, live: ObservedMonitor | None) -> Change | Unchanged:
    detector = want.config["detector"]["kind"]
    window = (f"{want.config['window_rows']} rows" if want.config.get("window_rows")
              else f"{want.config['window_seconds']:g}s")
    what = (f"{detector} on {len(want.prepared.features)} {want.config['target']} of deployment/{want.deployment}, "
            f"windows of {window}, reference {want.prepared.reference_rows} rows")
    if live is None:
        return Change(action=Action.CREATE, kind=KIND, name=want.name, target="monitor", revision=0, monitor=want,
                      reason=f"new monitor: {what}", diffs=(FieldDiff(field="digest", old=None, new=want.digest),))
    if live.digest != want.digest:
        return Change(action=Action.REPLACE, kind=KIND, name=want.name, target="monitor", revision=0, monitor=want,
                      reason=f"its configuration or reference changed: {what}; the new actor's windows start empty",
                      diffs=(FieldDiff(field="digest", old=live.digest, new=want.digest, forces_replacement=True),))
    if live.state not in ("ALIVE", "PENDING_CREATION", "RESTARTING"):
        return Change(action=Action.REPLACE, kind=KIND, name=want.name, target="monitor", revision=0, monitor=want,
                      reason=f"its actor is {live.state}: started again", diffs=())
    return Unchanged(name=want.name, kind=KIND, reason=f"up to date ({what})")
