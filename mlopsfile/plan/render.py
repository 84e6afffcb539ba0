"""Plan renderers: a terminal view like Terraform's and JSON (markdown for pull requests: render_markdown.py)."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from mlopsfile.plan.types import Action, Change, Plan

SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "-/+", Action.DELETE: "-", Action.ROLLOUT: "~>",
          Action.RUN: ">"}
COLOR = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.REPLACE: "magenta", Action.DELETE: "red",
         Action.ROLLOUT: "cyan", Action.RUN: "blue"}
VERB = {Action.CREATE: "will be created", Action.UPDATE: "will be updated in place",
        Action.REPLACE: "must be replaced", Action.DELETE: "will be destroyed", Action.ROLLOUT: "will roll out",
        Action.RUN: "will run"}


def value_text(value: Any) -> str:
    """A field value as a diff shows it: JSON, keys sorted."""
    return json.dumps(value, sort_keys=True, default=str)


def summary_line(plan: Plan) -> str:
    counts = plan.counts()
    if not plan.has_changes:
        return "No changes."
    rollouts = f", {counts[Action.ROLLOUT]} to roll out" if counts[Action.ROLLOUT] else ""
    runs = f", {counts[Action.RUN]} to run" if counts[Action.RUN] else ""
    return (f"Plan: {counts[Action.CREATE]} to add, {counts[Action.UPDATE]} to change, "
            f"{counts[Action.REPLACE]} to replace{rollouts}{runs}, {counts[Action.DELETE]} to destroy.")


def rollout_line(change: Change) -> str | None:
    rollout = change.rollout
    if rollout is None:
        return None
    if rollout.operation == "end":
        return f"ends: {rollout.description}"
    versions = f"version {rollout.from_version or '-'} -> {rollout.to_version}"
    if rollout.candidate_model and rollout.strategy in ("ab", "shadow"):
        versions = f"candidate {rollout.candidate_model} version {rollout.to_version}"
    return f"{rollout.strategy} rollout: {versions}; {rollout.description}"


def diff_lines(change: Change) -> list[tuple[str, str]]:
    """(marker, text) per field: what a reviewer needs to see for this change."""
    lines = []
    width = max((len(d.field) for d in change.diffs), default=0)
    for diff in change.diffs:
        name = diff.field.ljust(width)
        if change.action == Action.CREATE or (change.action == Action.RUN and diff.old is None):
            lines.append(("+", f"{name} = {value_text(diff.new)}"))
        elif change.action == Action.DELETE:
            lines.append(("-", f"{name} = {value_text(diff.old)}"))
        else:
            note = "  # forces replacement" if change.action == Action.REPLACE and diff.forces_replacement else ""
            lines.append(("~", f"{name} = {value_text(diff.old)} -> {value_text(diff.new)}{note}"))
    return lines


def render_text(plan: Plan, color: bool = True, width: int = 120) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width, highlight=False, soft_wrap=True)
    if plan.models:
        console.print("[bold]Models[/bold]")
        for model in plan.models:
            pinned = f"version {model.version}" + (" (mlopsfile.lock)" if model.locked else "")
            console.print(f"  {escape(model.name)}: {escape(model.uri)} -> {pinned} ({model.digest[:19]}…)")
        console.print()
    for notice in plan.notices:
        console.print(f"[bold yellow]! {notice.kind.lower()}/{escape(notice.name)}:[/bold yellow] {escape(notice.message)}")
    if plan.notices:
        console.print()
    if not plan.has_changes:
        up_to_date = len(plan.unchanged)
        if plan.notices:
            console.print("[bold]No changes.[/bold] Nothing will be applied; see the notes above.")
        else:
            console.print("[bold green]No changes.[/bold green] The live state matches the specs"
                          + (f" ({up_to_date} up to date)." if up_to_date else "."))
        for item in plan.unchanged:
            if "in progress" in item.reason or "running" in item.reason or "pending" in item.reason:
                console.print(f"  [dim]deployment/{item.name}: {escape(item.reason)}[/dim]")
        return buffer.getvalue()
    console.print("mlopsfile will perform the following actions:\n")
    for change in plan.changes:
        tint = COLOR[change.action]
        console.print(f"  [bold]# {change.address}[/bold] {VERB[change.action]}: {escape(change.reason)}")
        console.print(f"[{tint}]{SYMBOL[change.action]:>3}[/{tint}] {change.kind.lower()} "
                      f"[bold]\"{change.name}\"[/bold] ({change.target}, revision {change.revision})")
        if rollout_line(change):
            console.print(f"      [cyan]>[/cyan] {escape(rollout_line(change) or '')}")
        for marker, text in diff_lines(change):
            console.print(f"      [{COLOR[_action_of(marker, change)]}]{marker}[/] {escape(text)}")
        console.print()
    for item in plan.unchanged:
        console.print(f"  [dim]deployment/{item.name}: {escape(item.reason)}[/dim]")
    if plan.unchanged:
        console.print()
    console.print(f"[bold]{summary_line(plan)}[/bold]")
    return buffer.getvalue()


def _action_of(marker: str, change: Change) -> Action:
    return {"+": Action.CREATE, "-": Action.DELETE}.get(marker, change.action)


def render_json(plan: Plan) -> str:
    return plan.model_dump_json(indent=2) + "\n"
