"""The three views of a plan: terminal text, markdown for pull requests, JSON for saved plans."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.render import render_json, render_text
from mlopsfile.plan.render_markdown import render_markdown
from mlopsfile.plan.types import Action, Plan

CREATED_AT = "2024-05-01T12:00:00Z"


@pytest.fixture
def mixed_plan(make: Any) -> Plan:
    """One change of each action: create alpha, update bravo, replace charlie, delete delta."""
    alpha = make.desired("alpha")
    bravo_old, bravo_new = make.desired("bravo"), make.desired("bravo", spec_digest="spec-bravo-2", replicas=3)
    charlie_old, charlie_new = make.desired("charlie"), make.desired("charlie", version="2")
    delta = make.desired("delta")
    observed = make.observed(make.live(bravo_old), make.live(charlie_old, revision=2), make.live(delta, revision=5))
    revisions = {"bravo": 1, "charlie": 2, "delta": 5}
    plan = make_plan(make.state(alpha, bravo_new, charlie_new), observed, revisions, CREATED_AT)
    assert [(c.action, c.name) for c in plan.changes] == [
        (Action.DELETE, "delta"), (Action.REPLACE, "charlie"), (Action.UPDATE, "bravo"), (Action.CREATE, "alpha"),
    ]
    return plan


@pytest.fixture
def empty_plan(make: Any) -> Plan:
    iris = make.desired("iris")
    return make_plan(make.state(iris), make.observed(make.live(iris)), {}, CREATED_AT)


def block(text: str, address: str) -> list[str]:
    """The lines a change renders to in the text view, from its '# address' header to the blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"# {address} "))
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    return lines[start:end]


def test_text_marks_each_action(mixed_plan: Plan) -> None:
    text = render_text(mixed_plan, color=False)
    assert "\x1b[" not in text
    assert block(text, "deployment/alpha")[1].startswith('  + deployment "alpha" (online, revision 1)')
    assert block(text, "deployment/bravo")[1].startswith('  ~ deployment "bravo" (online, revision 2)')
    assert block(text, "deployment/charlie")[1].startswith('-/+ deployment "charlie" (online, revision 3)')
    assert block(text, "deployment/delta")[1].startswith('  - deployment "delta" (online, revision 6)')
    assert text.rstrip().splitlines()[-1] == "Plan: 1 to add, 1 to change, 1 to replace, 1 to destroy."


def test_text_shows_field_diffs_and_what_forces_replacement(mixed_plan: Plan) -> None:
    text = render_text(mixed_plan, color=False)
    charlie = block(text, "deployment/charlie")
    assert "must be replaced: model charlie (alias @champion) moves from version 1 to 2" in charlie[0]
    version = next(line for line in charlie if "model_version" in line)
    assert re.fullmatch(r'\s+~ model_version += "1" -> "2"  # forces replacement', version)
    bravo = block(text, "deployment/bravo")
    assert [line.strip() for line in bravo[2:]] == ["~ replicas = 1 -> 3"]
    assert "# forces replacement" not in "\n".join(block(text, "deployment/alpha") + block(text, "deployment/delta"))
    assert any(line.strip() == '+ route                = "/alpha"' for line in block(text, "deployment/alpha"))
    assert any(line.strip() == '- route                = "/delta"' for line in block(text, "deployment/delta"))


def test_text_lists_pinned_models(mixed_plan: Plan) -> None:
    text = render_text(mixed_plan, color=False)
    assert "  charlie: models:/charlie@champion -> version 2 (sha256:charlie-v2…)" in text.splitlines()


def test_text_with_color_uses_ansi_codes(mixed_plan: Plan) -> None:
    assert "\x1b[" in render_text(mixed_plan, color=True)


def test_text_without_changes(empty_plan: Plan) -> None:
    text = render_text(empty_plan, color=False)
    assert "No changes. The live state matches the specs (1 up to date)." in text
    assert "Plan:" not in text
    assert "will perform" not in text


def test_markdown_has_a_row_and_a_diff_per_change(mixed_plan: Plan) -> None:
    markdown = render_markdown(mixed_plan)
    rows = [line for line in markdown.splitlines() if line.startswith("| `") and "deployment/" in line]
    assert rows == [
        "| `-` | `deployment/delta` | delete | `delta` 1 → — | — | its spec was removed |",
        "| `-/+` | `deployment/charlie` | replace | `charlie` 1 → 2 | direct | "
        "model charlie (alias @champion) moves from version 1 to 2 |",
        "| `~` | `deployment/bravo` | update | `bravo` 1 (unchanged) | in place | spec changed (replicas); applies in place |",
        "| `+` | `deployment/alpha` | create | `alpha` — → 1 | — | it does not exist yet; model alpha version 1 |",
    ]
    assert "**Plan: 1 to add, 1 to change, 1 to replace, 1 to destroy.**" in markdown
    diffs = re.findall(r"```diff\n(.*?)```", markdown, flags=re.S)
    assert len(diffs) == 4
    delta, charlie, bravo, alpha = diffs
    assert bravo == "- replicas = 1\n+ replicas = 3\n"
    assert '- model_version = "1"\n+ model_version = "2"  # forces replacement\n' in charlie
    assert all(line.startswith("- ") for line in delta.splitlines())
    assert all(line.startswith("+ ") for line in alpha.splitlines())


def test_markdown_without_changes(empty_plan: Plan) -> None:
    markdown = render_markdown(empty_plan)
    assert "**No changes.** The live state matches the specs." in markdown
    assert "```diff" not in markdown
    assert "| `iris` | `models:/iris@champion` | 1 | `sha256:iris-v1…` |" in markdown
    assert "#### Warnings" not in markdown


def test_json_is_the_stable_saved_format(mixed_plan: Plan) -> None:
    data = json.loads(render_json(mixed_plan))
    assert data["format_version"] == 1
    assert data["project"] == "demo"
    assert data["created_at"] == CREATED_AT
    assert [c["action"] for c in data["changes"]] == ["delete", "replace", "update", "create"]
    charlie = data["changes"][1]
    assert charlie["desired"]["serving"]["model_version"] == "2"
    assert {"field": "model_version", "old": "1", "new": "2", "forces_replacement": True} in charlie["diffs"]
    assert data["changes"][0]["desired"] is None
