"""Batch commands (run, logs) and the batch part of `status`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mlopsfile.cli import AutoApprove, PlanFormat, _confirm, _print_plan, _project, _run_apply, app, err, guarded

if TYPE_CHECKING:
    from mlopsfile.api import StatusRow

DeploymentArg = Annotated[str, typer.Argument(help="Name of a batch Deployment.")]


@app.command("run")
def run_batch(deployment: DeploymentArg, auto_approve: AutoApprove = False,
              no_color: Annotated[bool, typer.Option("--no-color", help="Plain text output.")] = False) -> None:
    """Run a batch deployment now, even if its output is current."""

    def body() -> int:
        project = _project()
        with project.locked("run"):
            plan = project.run_one(deployment)
            _print_plan(plan, PlanFormat.text, no_color)
            _confirm(auto_approve, "run")
            return _run_apply(project, plan)

    guarded(body)


@app.command()
def logs(deployment: DeploymentArg) -> None:
    """The logs of a batch deployment's newest run (its Ray Job)."""

    def body() -> None:
        job_id, text = _project().logs(deployment)
        err.print(f"[dim]job {escape(job_id)}[/dim]")
        print(text, end="" if text.endswith("\n") else "\n")

    guarded(body)


def print_batches(console: Console, rows: list[StatusRow]) -> None:
    """The batch table under `status`: last run, what readers see, next scheduled run."""
    batches = [r for r in rows if r.batch is not None]
    if not batches:
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title="batch runs", title_justify="left")
    for column in ("DEPLOYMENT", "LAST RUN", "STATE", "MODEL", "SECONDS", "PUBLISHED", "ROWS", "NEXT RUN"):
        table.add_column(column)
    for row in batches:
        view = row.batch
        assert view is not None
        table.add_row(
            row.name, view.last_job or "-", view.last_state or "never run", view.last_model_version or "-",
            f"{view.last_seconds:.1f}" if view.last_seconds is not None else "-",
            f"v{view.published_version} at {view.published_at}" if view.published_run else "nothing published",
            str(view.published_rows) if view.published_rows is not None else "-", view.next_run or "-",
        )
    console.print()
    console.print(table)
    for row in batches:
        if row.batch is not None and row.batch.last_message:
            console.print(f"deployment/{escape(row.name)}: last run {row.batch.last_state}: "
                          f"{escape(row.batch.last_message)}")
