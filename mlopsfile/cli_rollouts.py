"""Rollout commands (promote, abort, rollback), the foreground loop and rollout status."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from mlopsfile.cli import app, err, guarded, out
from mlopsfile.controller.status import RolloutView

if TYPE_CHECKING:
    from mlopsfile.api import Project, StatusRow

DeploymentArg = Annotated[str, typer.Argument(help="Deployment name.")]


def print_event(name: str, message: str) -> None:
    """One event line; ``name`` is a deployment's name or another resource's address (monitor/NAME)."""
    address = name if "/" in name else f"deployment/{name}"
    err.print(f"[dim]{datetime.now():%H:%M:%S}[/dim] {escape(address)}: {escape(message)}")


def drive_in_foreground(project: Project) -> int:
    """`apply --wait`: run the reconcile loop until every rollout of the project ends."""
    active = project.store.active_rollouts()
    if not active:
        return 0
    names = sorted({r.name for r in active})
    err.print(f"Driving {len(names)} rollout(s): {', '.join(names)}. Ctrl-C stops waiting; "
              "the rollout stays where it is and `mlopsfile apply --wait` resumes it.")
    finished = project.drive(names, print_event)
    failed = [r for r in finished.values() if r.state in ("aborted", "failed")]
    for record in finished.values():
        out.print(f"deployment/{record.name}: rollout to version {record.to_version} {record.state}"
                  + (f": {record.message}" if record.message and record.state != "completed" else ""))
    return 3 if failed else 0


@app.command()
def promote(deployment: DeploymentArg) -> None:
    """Promote the candidate now: skip the remaining steps (or end an A/B test in its favour)."""
    from mlopsfile.cli import _project

    def body() -> None:
        project = _project()
        if project.is_edge(deployment):
            out.print(f"deployment/{deployment}: {project.promote_edge(deployment)}.")
            return
        record = project.request(deployment, "promote", print_event)
        out.print(f"deployment/{deployment}: version {record.to_version} promoted ({record.state}).")

    guarded(body)


@app.command()
def abort(deployment: DeploymentArg) -> None:
    """Abort the rollout: all traffic back to the stable version at once; the candidate is removed."""
    from mlopsfile.cli import _project

    def body() -> None:
        record = _project().request(deployment, "abort", print_event)
        out.print(f"deployment/{deployment}: rollout to version {record.to_version} {record.state}; "
                  f"version {record.from_version} serves all traffic.")

    guarded(body)


@app.command()
def rollback(
    deployment: DeploymentArg,
    to: Annotated[Optional[int], typer.Option("--to", help="Revision to return to (default: the one before).")] = None,
) -> None:
    """Return to a previous revision: instantly while it is still loaded, else new replicas first."""
    from mlopsfile.cli import _project

    def body() -> None:
        message = _project().rollback(deployment, to, print_event)
        out.print(f"deployment/{deployment}: {message}.")
        out.print("The live state now differs from the specs; `mlopsfile plan` says so until the spec changes.")

    guarded(body)


def print_rollouts(console: Console, rows: list[StatusRow]) -> None:
    for row in rows:
        view = row.rollout
        if view is None or not (view.active or view.arms):
            continue
        console.print()
        console.print(_headline(row.name, view))
        for arm in view.arms:
            rate = "-" if arm.error_rate is None else f"{arm.error_rate * 100:.2f}%"
            p99 = "-" if arm.p99_ms is None else f"≤{arm.p99_ms:g} ms"
            line = (f"    {arm.role:<9} version {arm.version:<6} weight {arm.weight:>5.1f}%  requests {arm.requests:<7} "
                    f"errors {arm.errors} ({rate})  p99 {p99}")
            if arm.shadow_requests:
                agreement = "-" if arm.agreement is None else f"{arm.agreement:.4f}"
                diff = "" if arm.mean_abs_diff is None else f", mean |diff| {arm.mean_abs_diff:.4g}"
                line += f"  shadow {arm.shadow_requests} mirrored, agreement {agreement}{diff}"
            console.print(line)
        for gate in view.gates:
            console.print(f"    gate: {'ok ' if gate.get('ok') else 'FAIL'} {escape(str(gate.get('text')))}")
        if view.message and view.active:
            console.print(f"    last: {escape(view.message)}")


def _headline(name: str, view: RolloutView) -> str:
    where = f"step {view.step}" if view.step else view.state
    when = f"; next in {view.next_step_in_s:.0f}s" if view.next_step_in_s is not None else ""
    if view.state == "keeping" and view.keep_until:
        when = f"; version {view.from_version} kept warm until {view.keep_until}"
    if not view.active:
        return (f"  deployment/{escape(name)}: last {view.strategy} rollout (revision {view.revision}) "
                f"{view.state} at {view.ended_at}: {escape(view.message or '')}")
    return (f"  deployment/{escape(name)}: {view.strategy} rollout (revision {view.revision}) "
            f"{view.from_version} -> {view.to_version}: {where}{when}")
