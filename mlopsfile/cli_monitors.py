"""`mlopsfile drift`, and the monitors part of `status` and `watch`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from mlopsfile.cli import _project, app, err, guarded, out

if TYPE_CHECKING:
    from mlopsfile.api_monitors import DriftHistory, MonitorRow

MonitorArg = Annotated[str, typer.Argument(help="Name of a Monitor.")]


@app.command()
def drift(
    monitor: MonitorArg,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest windows to show.")] = 50,
    arm: Annotated[Optional[str], typer.Option(
        "--arm", help="Only the windows of one arm: stable or candidate.")] = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Also write a PNG of the score (p-value) over time to this file.")] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """A monitor's drift history: each tested window, its verdict, and the actions drift set off."""
    from mlopsfile.api_monitors import drift_history, verdict_json

    def body() -> None:
        if arm not in (None, "stable", "candidate"):
            raise typer.BadParameter("--arm is stable or candidate")
        history = drift_history(_project(), monitor, limit, arm)
        if history.error:
            err.print(f"[yellow]monitor/{escape(monitor)}: showing stored windows; the live monitor is not "
                      f"readable: {escape(history.error)}[/yellow]")
        if output_format == "json":
            print(json.dumps({"monitor": history.name, "deployment": history.deployment,
                              "windows": [verdict_json(v) for v in history.verdicts],
                              "actions": [{"at": a.at.isoformat(timespec="seconds"), "type": a.type,
                                           "outcome": a.outcome, "message": a.message, "window": a.verdict_seq}
                                          for a in history.actions]}, indent=2, default=str))
        else:
            print_history(out, history)
        if plot is not None:
            from mlopsfile.drift_plot import write_plot

            write_plot(history, plot)
            err.print(f"wrote {plot}")

    guarded(body)


def print_history(console: Console, history: DriftHistory) -> None:
    if not history.verdicts:
        console.print(f"monitor/{history.name} has tested no window yet.")
    else:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, title=f"monitor/{history.name} on deployment/{history.deployment}",
                      title_justify="left")
        for column in ("TIME", "ARM", "WINDOW", "ROWS", "DRIFT", "P-VALUE", "STATISTIC", "WORST FEATURE"):
            table.add_column(column)
        for verdict in history.verdicts:
            features = verdict.detail.get("feature_p_values") or {}
            worst = min(features, key=features.__getitem__) if features else None
            table.add_row(verdict.at.strftime("%Y-%m-%d %H:%M:%S"), verdict.arm, str(verdict.seq), str(verdict.rows),
                          "[red]yes[/red]" if verdict.is_drift else "no", _number(verdict.p_value),
                          _number(verdict.statistic),
                          f"{worst} (p {_number(features[worst])})" if worst is not None else "-")
        console.print(table)
    for action in history.actions:
        console.print(f"{action.at.strftime('%Y-%m-%d %H:%M:%S')}  {action.type} after window "
                      f"{action.verdict_seq}: {action.outcome}" + (f": {escape(action.message)}" if action.message else ""))


def print_monitors(console: Console, rows: list[MonitorRow]) -> None:
    """The monitors table under `status`: the latest verdict of each."""
    if not rows:
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title="monitors", title_justify="left")
    for column in ("MONITOR", "DEPLOYMENT", "DETECTOR", "STATE", "WINDOWS", "DRIFTED", "LATEST", "LAST ACTION"):
        table.add_column(column)
    for row in rows:
        latest = row.latest
        verdict = "-" if latest is None else (
            f"{'DRIFT' if latest.is_drift else 'no drift'} (p {_number(latest.p_value)}, {latest.arm}, "
            f"{latest.at.strftime('%H:%M:%S')})")
        action = row.last_action
        table.add_row(row.name, row.deployment, row.detector, row.state, str(row.windows), str(row.drifted), verdict,
                      f"{action.type} {action.outcome}" if action else "-")
    console.print()
    console.print(table)
    for row in rows:
        if row.error:
            console.print(f"monitor/{escape(row.name)}: {escape(row.error)}")


def monitor_json(row: MonitorRow) -> dict[str, Any]:
    from mlopsfile.api_monitors import verdict_json

    return {"kind": "Monitor", "name": row.name, "deployment": row.deployment, "detector": row.detector,
            "state": row.state, "windows": row.windows, "drifted": row.drifted,
            "latest": verdict_json(row.latest) if row.latest else None,
            "last_action": {"type": row.last_action.type, "outcome": row.last_action.outcome,
                            "message": row.last_action.message} if row.last_action else None, "error": row.error}


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
