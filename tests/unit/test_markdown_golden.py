"""Golden pull-request comments: a planner golden case (tests/unit/golden/<case>/) → the markdown it renders.

Each ``golden_markdown/<case>.md`` is the comment for the plan the real planner makes from
that case's desired and observed state. ``UPDATE_GOLDEN=1 pytest tests/unit/test_markdown_golden.py``
rewrites them from the renderer's current output; review the diff before keeping it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlopsfile.plan.render_markdown import render_markdown
from tests.unit.golden_cases import GOLDEN, plan_of

EXPECTED = Path(__file__).parent / "golden_markdown"
CASES = sorted(path.stem for path in EXPECTED.glob("*.md"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
# What a reviewer must be able to decide from; each needs its golden comment.
REQUIRED = {
    "rollout_canary_model_move",       # a model-version change through a canary
    "rollout_blue_green_model_move",   # ... through blue-green
    "spec_removed_delete",             # a delete
    "model_alias_new_version_replace",  # a replace
    "identical_no_changes",            # nothing to do
}


def test_required_cases_have_golden_comments() -> None:
    assert set(CASES) >= REQUIRED
    assert all((GOLDEN / case).is_dir() for case in CASES), "every golden comment names a planner golden case"


@pytest.mark.parametrize("case_name", CASES)
def test_golden_comment(case_name: str) -> None:
    markdown = render_markdown(plan_of(case_name))
    path = EXPECTED / f"{case_name}.md"
    if UPDATE:
        path.write_text(markdown, encoding="utf-8")
        return
    assert markdown == path.read_text(encoding="utf-8")
