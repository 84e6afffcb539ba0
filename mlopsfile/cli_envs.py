"""`mlopsfile render`: the effective specs of an environment, for review."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mlopsfile.cli import EnvOption, SpecsOption, _project, app, guarded


@app.command()
def render(specs: SpecsOption = None, env: EnvOption = None,
           out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write to this file.")] = None) -> None:
    """Print the effective specs (base with environments/ENV/ merged in) as YAML. Touches nothing live."""
    from mlopsfile.spec.effective import effective_yaml

    def body() -> None:
        text = effective_yaml(_project(specs, env).validate())
        if out_file:
            out_file.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)

    guarded(body)
