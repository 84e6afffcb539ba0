"""`mlopsfile lock`: pin model versions and artifact digests in mlopsfile.lock."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape

from mlopsfile.cli import EnvOption, SpecsOption, _project, app, guarded, out
from mlopsfile.lockfile import LOCK_FILE


@app.command()
def lock(
    specs: SpecsOption = None,
    env: EnvOption = None,
    update: Annotated[Optional[list[str]], typer.Option(
        "--update", "-u", metavar="MODEL", help="Resolve only this Model again (repeatable); the others keep their locked version.")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Change nothing; exit 1 when the lock is missing or differs from the registry (for CI).")] = False,
) -> None:
    """Pin every Model's version and artifact digest in mlopsfile.lock; plan and apply then use them."""

    def body() -> None:
        result = _project(specs, env).lock(update=update, check=check)
        if check:
            out.print(f"{LOCK_FILE} is current: {len(result.lock.models)} model(s).")
            return
        for change in result.changes:
            mark = {"added": "+", "updated": "~", "removed": "-", "kept": " "}[change.kind]
            out.print(f"{mark} {escape(change.message)}")
        out.print(f"Wrote {LOCK_FILE}: {len(result.lock.models)} model(s), {len(result.moved)} changed."
                  if result.moved else f"{LOCK_FILE} unchanged: {len(result.lock.models)} model(s).")

    guarded(body)
