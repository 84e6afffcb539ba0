"""`mlopsfile watch`: the GitOps agent in the foreground, until stopped.

The agent (mlopsfile.controller.agent) applies spec changes as they are saved (or new
commits of a branch, in pull mode), repairs or reports drift at every resync, drives
rollouts and monitors' actions and runs due batch deployments. This module only wires
it to files, git, signals and the terminal.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from mlopsfile.cli import _fail, _project, app, err, guarded


@app.command()
def watch(
    path: Annotated[Optional[Path], typer.Argument(
        help="Spec directory or file (default: the project's specs); with --git, the specs' directory inside the repository.")] = None,
    interval: Annotated[float, typer.Option(
        "--interval", help="Seconds between two looks at batch schedules and inputs (and at the remote, with --git).")] = 30.0,
    tick: Annotated[float, typer.Option("--tick", help="Seconds between two looks at rollouts and monitors.")] = 2.0,
    resync: Annotated[Optional[str], typer.Option(
        "--resync", help="How often to look for drift, e.g. 30s or 5m (default: mlopsfile.yaml's watch.resync, 30s).")] = None,
    self_heal: Annotated[Optional[bool], typer.Option(
        "--self-heal/--no-self-heal", help="Repair drift, or only report it (default: mlopsfile.yaml's watch.self_heal, on).")] = None,
    git: Annotated[Optional[str], typer.Option(
        "--git", help="Pull mode: apply the specs of this repository's branch, fetched every --interval.")] = None,
    branch: Annotated[str, typer.Option("--branch", help="The branch pull mode follows.")] = "main",
) -> None:
    """Keep the live systems matching the specs: apply changes, repair drift, drive rollouts and schedules.

    Runs until stopped (Ctrl-C or SIGTERM): the step in progress finishes, a rollout resumes
    where it stood when watch starts again, a batch run in progress continues on Ray.
    """
    from mlopsfile.cli_rollouts import print_event
    from mlopsfile.controller.agent import Agent, AgentConfig
    from mlopsfile.spec.rollout import duration_seconds

    stop = threading.Event()

    def body() -> int:
        try:
            resync_s = duration_seconds(resync) if resync is not None else None
        except ValueError as exc:
            _fail(f"--resync: {exc}")
        if resync_s is not None and resync_s <= 0:
            _fail("--resync: the resync interval must be longer than zero")
        project = _project(path if git is None else None)
        files = pull = None
        if git is None:
            from mlopsfile.drivers.spec_files import SpecFiles

            files = SpecFiles(project.settings.specs, project.settings.root)
            source = str(project.settings.specs)
        else:
            from mlopsfile.drivers.git_source import GitSource, checkout_dir

            checkout = checkout_dir(project.settings.state_dir, git, branch)
            pull = GitSource(git, branch, checkout)
            project = _project((checkout / (path or Path("specs"))).resolve())
            source = f"{pull.label} (every {interval:g}s)"
        config = AgentConfig(tick_s=tick, schedule_s=interval,
                             resync_s=resync_s if resync_s is not None else project.settings.watch_resync_s,
                             self_heal=project.settings.watch_self_heal if self_heal is None else self_heal)
        agent = Agent(project, print_event, config, files=files, pull=pull,
                      reopen=(lambda: _project(path)) if git is None else None)

        def on_signal(signum: int, frame: object) -> None:
            if stop.is_set():  # asked twice: do not wait for the step in progress
                raise _Stopped
            agent.stop(stop)

        def keep_handlers() -> None:
            # Ray's client installs its own SIGTERM handler (exit 15) when it first connects.
            for number in (signal.SIGTERM, signal.SIGINT):
                if signal.getsignal(number) is not on_signal:
                    signal.signal(number, on_signal)

        keep_handlers()
        heal = "repaired" if config.self_heal else "only reported"
        err.print(f"Watching {source}: drift looked for every {config.resync_s:g}s ({heal}), rollouts and monitors "
                  f"every {tick:g}s, batch schedules every {interval:g}s. Ctrl-C stops.")
        agent.run(stop, keep_handlers)
        err.print("stopped")
        return 0

    try:
        guarded(body)
    except _Stopped:
        err.print("stopped")


class _Stopped(BaseException):
    """A second SIGTERM or Ctrl-C: stop now, without finishing the step in progress."""
