"""The mlopsfile command line: parse arguments, call the API, render, pick the exit code."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from mlopsfile.api import Project, StatusRow
from mlopsfile.errors import MlopsfileError, SpecErrors
from mlopsfile.plan.render import render_json, render_text
from mlopsfile.plan.render_markdown import render_markdown
from mlopsfile.plan.types import Action, Change, Plan

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Declarative MLOps: plan and apply model deployments from YAML specs.",
)

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Options:
    debug = False
    chdir: Path | None = None


class PlanFormat(str, Enum):
    text = "text"
    markdown = "markdown"
    json = "json"


SpecsOption = Annotated[Optional[Path], typer.Option("--specs", "-s", help="Spec file or directory (default: ./specs or mlopsfile.yaml's 'specs').")]
AutoApprove = Annotated[bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")]
EnvOption = Annotated[Optional[str], typer.Option(
    "--env", "-e", help="Layer environments/ENV/ over the specs (default: $MLOPSFILE_ENV).")]
TargetOption = Annotated[Optional[list[str]], typer.Option(
    "--target", "-t", help="Plan only this Deployment or Monitor and what it needs (repeatable).")]
RetryOption = Annotated[bool, typer.Option(
    "--retry", help="Propose again what an aborted rollout, ended test or rollback left held.")]


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    chdir: Annotated[Optional[Path], typer.Option("--chdir", "-C", help="Run as if started in this directory.")] = None,
) -> None:
    Options.debug = debug or bool(os.environ.get("MLOPSFILE_DEBUG"))
    Options.chdir = chdir


def _project(specs: Path | None = None, env: str | None = None, targets: list[str] | None = None) -> Project:
    project = Project.open(Options.chdir, specs, env or os.environ.get("MLOPSFILE_ENV") or None)
    project.targets = tuple(targets or ())
    return project


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", markup=True) if sys.stderr.isatty() else print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def guarded(action: Callable[[], int | None]) -> None:
    """Run a command body; typed errors become one line each and exit code 1."""
    try:
        code = action() or 0
    except typer.Exit:
        raise
    except SpecErrors as exc:
        for error in exc.errors:
            print(error.line(), file=sys.stderr)
        print(f"{len(exc.errors)} error(s) in the specs", file=sys.stderr)
        raise typer.Exit(1) from None
    except MlopsfileError as exc:
        if Options.debug:
            traceback.print_exc()
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # last resort: one line, traceback only on request
        if Options.debug:
            traceback.print_exc()
        _fail(f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (run with --debug for details)")
    raise typer.Exit(code)


@app.command()
def validate(specs: SpecsOption = None, env: EnvOption = None) -> None:
    """Check the specs: syntax, fields, names and references. Touches nothing live."""

    def body() -> None:
        specset = _project(specs, env).validate()
        out.print(f"Valid: {len(specset.models)} model(s), {len(specset.deployments)} deployment(s).")

    guarded(body)


@app.command()
def plan(
    specs: SpecsOption = None,
    output_format: Annotated[PlanFormat, typer.Option("--format", "-f", help="text, markdown (for a pull request) or json.")] = PlanFormat.text,
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Save the plan (JSON) for 'apply PLANFILE'.")] = None,
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 0: no changes, 1: error, 2: changes.")] = False,
    destroy: Annotated[bool, typer.Option("--destroy", help="Plan the removal of everything this project runs.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain text output.")] = False,
    retry: RetryOption = False,
    env: EnvOption = None,
    target: TargetOption = None,
) -> None:
    """Show what apply would change, without changing anything."""

    def body() -> int:
        result = _project(specs, env, target).plan(destroy=destroy, retry=retry)
        _print_plan(result.plan, output_format, no_color)
        if out_file:
            out_file.write_text(render_json(result.plan))
            if output_format == PlanFormat.text:
                out.print(f"\nSaved the plan to {out_file}. Apply exactly it with: mlopsfile apply {out_file}")
        return 2 if detailed_exitcode and result.plan.has_changes else 0

    guarded(body)


@app.command()
def apply(
    plan_file: Annotated[Optional[Path], typer.Argument(help="A plan saved with 'plan -o'; applied exactly, refused if stale.")] = None,
    specs: SpecsOption = None,
    auto_approve: AutoApprove = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain text output.")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Drive rollouts in the foreground until they end (safe to interrupt; run again to resume).")] = False,
    retry: RetryOption = False,
    env: EnvOption = None,
    target: TargetOption = None,
) -> None:
    """Make the live systems match the specs (or carry out a saved plan)."""

    def body() -> int:
        project = _project(specs, env, target)
        if plan_file is None:
            code = _plan_confirm_apply(project, "apply", auto_approve, no_color, retry)
        else:
            with project.locked("apply"):
                code = _run_apply(project, _read_plan(plan_file))
        if code == 0 and wait:
            from mlopsfile.cli_rollouts import drive_in_foreground

            code = drive_in_foreground(project)
        return code

    guarded(body)


@app.command()
def destroy(specs: SpecsOption = None, auto_approve: AutoApprove = False,
            no_color: Annotated[bool, typer.Option("--no-color", help="Plain text output.")] = False,
            env: EnvOption = None) -> None:
    """Remove everything this project runs. Applications it did not create stay."""

    def body() -> int:
        return _plan_confirm_apply(_project(specs, env), "destroy", auto_approve, no_color)

    guarded(body)


@app.command()
def status(
    specs: SpecsOption = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    env: EnvOption = None,
) -> None:
    """Each deployment: revision, model version, live health, route."""

    def body() -> None:
        project = _project(specs, env)
        rows = project.status()
        from mlopsfile.api_monitors import monitor_rows
        from mlopsfile.cli_monitors import monitor_json, print_monitors

        monitors = monitor_rows(project)
        if output_format == "json":
            print(json.dumps([_row_json(r) for r in rows] + [monitor_json(m) for m in monitors], indent=2, default=str))
            return
        from mlopsfile.controller.agent import applied_commit

        if (commit := applied_commit(project)) is not None:
            out.print(f"Pull mode: {commit}.")
        if not rows:
            out.print("No deployments in the specs and none live.")
            return
        table = Table(box=None, pad_edge=False)
        for column in ("DEPLOYMENT", "TARGET", "REVISION", "MODEL", "HEALTH", "REPLICAS", "IN SYNC", "URL"):
            table.add_column(column)
        for row in rows:
            if row.batch is not None:
                table.add_row(row.name + ("" if row.in_specs else " (not in specs)"), row.target,
                              str(row.revision or "-"), row.model_version or "-", row.batch.last_state or "NEVER RUN",
                              "-", "-", row.batch.output)
                continue
            if row.channels is not None:
                table.add_row(row.name + ("" if row.in_specs else " (not in specs)"), row.target,
                              str(row.revision or "-"), row.model_version or "-", row.channels, "-",
                              "held" if row.held else "-", row.url or "-")
                continue
            health = row.health
            table.add_row(
                row.name + ("" if row.in_specs else " (not in specs)"), row.target,
                str(row.revision or "-"), row.model_version or "-",
                health.status if health else "NOT DEPLOYED",
                f"{health.running_replicas}/{health.target_replicas}" if health else "-",
                "held" if row.held else {True: "yes", False: "no", None: "-"}[row.synced], row.url or "-",
            )
        out.print(table)
        from mlopsfile.cli_rollouts import print_rollouts

        print_rollouts(out, rows)
        from mlopsfile.cli_batch import print_batches

        print_batches(out, rows)
        print_monitors(out, monitors)

    guarded(body)


@app.command()
def history(
    deployment: Annotated[str, typer.Argument(help="Deployment name.")],
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Revisions applied to a deployment: model version, spec digest, when, who, git commit, outcome."""

    def body() -> None:
        records = _project().store.history(deployment)
        if output_format == "json":
            print(json.dumps([r.__dict__ for r in records], indent=2, default=str))
            return
        if not records:
            _fail(f"no revisions recorded for deployment {deployment!r} in this project's state store")
        table = Table(box=None, pad_edge=False)
        for column in ("REVISION", "ACTION", "OUTCOME", "MODEL", "SPEC", "WHEN", "WHO", "GIT COMMIT", "NOTE"):
            table.add_column(column)
        for r in records:
            table.add_row(str(r.revision), r.action, r.outcome, r.model_version or "-", (r.spec_digest or "-")[:12],
                          f"{r.created_at:%Y-%m-%d %H:%M:%S}", r.user or "-", (r.git_commit or "-")[:12], r.message or "")
        out.print(table)

    guarded(body)


@app.command()
def schema(
    check: Annotated[bool, typer.Option("--check", help="Fail if the files differ from the models.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Directory (default: ./schema).")] = None,
) -> None:
    """Write the JSON Schema of spec files (for editors and CI)."""
    from mlopsfile.schema_gen import stale_schemas, write_schemas

    def body() -> int:
        directory = out_dir or ((Options.chdir or Path.cwd()) / "schema")
        if check:
            stale = stale_schemas(directory)
            if stale:
                _fail(f"schema files are out of date: {', '.join(stale)} (run: mlopsfile schema)")
            out.print(f"{directory} is current.")
            return 0
        for path in write_schemas(directory):
            out.print(f"wrote {path}")
        return 0

    guarded(body)


@app.command("force-unlock")
def force_unlock(lock_id: Annotated[str, typer.Argument(help="The lock id an error message named.")]) -> None:
    """Free the state lock left by a run that is gone."""

    def body() -> None:
        if not _project().store.force_unlock(lock_id):
            _fail(f"no lock with id {lock_id}")
        out.print(f"Lock {lock_id} released.")

    guarded(body)


@app.command()
def down() -> None:
    """Stop the local Ray head that mlopsfile started (its models stop serving)."""

    def body() -> None:
        stopped = _project().down()
        out.print("Stopped the local Ray head." if stopped else "No local Ray head was running.")

    guarded(body)


# -- helpers ---------------------------------------------------------------------------


def _print_plan(the_plan: Plan, output_format: PlanFormat, no_color: bool) -> None:
    if output_format == PlanFormat.json:
        sys.stdout.write(render_json(the_plan))
    elif output_format == PlanFormat.markdown:
        sys.stdout.write(render_markdown(the_plan))
    else:
        color = sys.stdout.isatty() and not no_color and not os.environ.get("NO_COLOR")
        sys.stdout.write(render_text(the_plan, color=color, width=out.width))
    sys.stdout.flush()


def _read_plan(path: Path) -> Plan:
    from pydantic import ValidationError

    from mlopsfile.errors import StalePlanError

    try:
        return Plan.model_validate_json(path.read_text())
    except OSError as exc:
        raise StalePlanError(f"cannot read plan file {path}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise StalePlanError(f"{path} is not an mlopsfile plan: {exc.errors()[0]['msg']}") from exc


def _confirm(auto_approve: bool, verb: str) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        _fail(f"{verb} needs --auto-approve when not run from a terminal")
    answer = typer.prompt(f"\nDo you want to {verb}? Only 'yes' will be accepted", default="", show_default=False)
    if answer.strip() != "yes":
        _fail(f"{verb} cancelled", 1)


def _plan_confirm_apply(project: Project, verb: str, auto_approve: bool, no_color: bool, retry: bool = False) -> int:
    """Terraform's flow: take the lock first, then plan, show, ask, apply that plan."""
    with project.locked(verb):
        the_plan = project.plan(destroy=verb == "destroy", retry=retry).plan
        _print_plan(the_plan, PlanFormat.text, no_color)
        if not the_plan.has_changes:
            return 0
        _confirm(auto_approve, verb)
        return _run_apply(project, the_plan)


def _run_apply(project: Project, the_plan: Plan) -> int:
    def progress(event: str, change: Change, outcome: Any) -> None:
        if event == "start":
            err.print(f"{change.address}: {_ing(change.action)}…")
        elif outcome.outcome == "applied":
            err.print(f"{change.address}: {change.action.value} complete after {outcome.seconds:.1f}s")
        elif outcome.outcome == "in-progress":
            err.print(f"{change.address}: rollout started after {outcome.seconds:.1f}s")
        elif outcome.outcome == "failed":
            err.print(f"{change.address}: {change.action.value} FAILED: {outcome.message}")

    from mlopsfile.cli_rollouts import print_event

    report = project.apply(the_plan, progress, lock_held=True, events=print_event)
    for skipped in (o for o in report.outcomes if o.outcome == "skipped"):
        print(f"{skipped.change.address}: not started ({skipped.message})", file=sys.stderr)
    if report.failed:
        _fail(f"apply failed: {report.failed[0].change.address}: {report.failed[0].message}")
    done = {action: sum(1 for o in report.outcomes if o.change.action == action) for action in Action}
    rollouts = f"{done[Action.ROLLOUT]} rolling out, " if done[Action.ROLLOUT] else ""
    runs = f"{done[Action.RUN]} run, " if done[Action.RUN] else ""
    out.print(f"\nApply complete! Resources: {done[Action.CREATE]} added, {done[Action.UPDATE]} changed, "
              f"{done[Action.REPLACE]} replaced, {rollouts}{runs}{done[Action.DELETE]} destroyed.")
    if any(o.outcome == "in-progress" for o in report.outcomes):
        out.print("Rollouts continue with `mlopsfile apply --wait` (or `mlopsfile watch`); "
                  "`mlopsfile status` shows where they stand.")
    return 0


def _ing(action: Action) -> str:
    return {Action.CREATE: "creating", Action.UPDATE: "updating in place", Action.REPLACE: "replacing",
            Action.DELETE: "destroying", Action.ROLLOUT: "starting the rollout", Action.RUN: "running"}[action]


def _row_json(row: StatusRow) -> dict[str, Any]:
    from dataclasses import asdict

    data = dict(row.__dict__)
    data["health"] = row.health.model_dump() if row.health else None
    data["rollout"] = asdict(row.rollout) if row.rollout else None
    data["batch"] = asdict(row.batch) if row.batch else None
    return data


def main() -> None:
    app()


from mlopsfile import cli_batch, cli_edge, cli_envs, cli_lock, cli_monitors, cli_rollouts, cli_watch  # noqa: E402,F401  (register run, logs, watch, drift, render, lock, ...)
