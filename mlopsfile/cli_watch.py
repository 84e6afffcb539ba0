"""`mlopsfile watch`: the reconcile loop in the foreground, until interrupted.

Each tick it drives active rollouts one step, copies monitors' verdicts into the state
store and carries out the rollbacks and runs drift asked for; every ``--interval`` it
runs the batch deployments that are due.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Annotated

import typer

from mlopsfile.cli import _project, app, err, guarded
from mlopsfile.errors import DriverError, LockError


@app.command()
def watch(
    interval: Annotated[float, typer.Option("--interval", help="Seconds between two looks at schedules and inputs.")] = 30.0,
    tick: Annotated[float, typer.Option("--tick", help="Seconds between two looks at rollouts and monitors.")] = 2.0,
) -> None:
    """Keep the live state moving: rollouts, drift monitors' actions, scheduled batch runs.

    Runs until interrupted (Ctrl-C or SIGTERM); a batch run in progress continues on Ray.
    """
    from mlopsfile.api_monitors import sync_monitors
    from mlopsfile.cli_rollouts import print_event

    def body() -> int:
        signal.signal(signal.SIGTERM, _stop)
        project = _project()
        err.print(f"Watching: rollouts and monitors every {tick:g}s, batch schedules every {interval:g}s. "
                  "Ctrl-C stops.")
        next_schedule = 0.0
        reported: dict[str, str | None] = {}
        while True:
            if time.monotonic() >= next_schedule:
                next_schedule = time.monotonic() + interval
                report = project.run_due(print_event)
                if report is None:
                    err.print("[dim]another apply holds the state lock; looking again later[/dim]")
                for outcome in report.outcomes if report else []:
                    state = "done" if outcome.outcome == "applied" else f"{outcome.outcome}: {outcome.message}"
                    print_event(outcome.change.name, f"run {state}")
            try:
                project.drive(events=print_event, tick_s=0.0, should_stop=_once())
            except (LockError, DriverError) as exc:  # another process drives it, or Ray is busy: next tick
                print_event("rollouts", f"not driven this tick: {exc}")
            for sync in sync_monitors(project, print_event):
                if sync.error != reported.get(sync.monitor):  # say it when it starts and when it ends
                    print_event(f"monitor/{sync.monitor}", sync.error or "readable again")
                    reported[sync.monitor] = sync.error
            time.sleep(tick)

    try:
        guarded(body)
    except _Stopped:
        err.print("stopped")


class _Stopped(BaseException):
    """SIGTERM: the normal way a service manager stops `watch`."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopped


def _once() -> Callable[[], bool]:
    """A stop signal that lets the reconcile loop make exactly one pass."""
    passes = iter([False])
    return lambda: next(passes, True)
