"""Edge commands: checking a bundle tarball against its manifest (`verify-bundle`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mlopsfile.cli import app, guarded
from mlopsfile.errors import MlopsfileError

out = Console(highlight=False, soft_wrap=True)


@app.command("verify-bundle")
def verify_bundle(path: Annotated[Path, typer.Argument(help="A bundle tarball an edge Deployment wrote.")]) -> None:
    """Check every file of an edge bundle against the sha256 digests in its manifest."""
    from mlopsfile.drivers.edge_bundle import verify_bundle as verify

    def body() -> None:
        problems = verify(path)
        if problems:
            raise MlopsfileError(f"{path}: does not verify: " + "; ".join(problems))
        out.print(f"{path}: every file matches its manifest.")

    guarded(body)
