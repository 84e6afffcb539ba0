"""The pull-request comment beyond the golden cases: batch versions, notices of any kind, escaping, stability."""

from __future__ import annotations

import re

from mlopsfile.plan.render_markdown import render_markdown
from mlopsfile.plan.types import Change, FieldDiff, Notice, Plan
from mlopsfile.resources import BatchRollout
from tests.unit.golden_cases import plan_of
from tests.unit.test_batch_planner import batch, desired, live, plan, published

UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def table_rows(markdown: str) -> list[str]:
    """The rows of the summary table (between its header and the blank line after it)."""
    lines = markdown.splitlines()
    start = lines.index("| | Resource | Action | Model version | Rollout | Why |") + 2
    return lines[start:lines.index("", start)]


def with_change(base: Plan, **update: object) -> Plan:
    return base.model_copy(update={"changes": (base.changes[0].model_copy(update=update),)})


def test_batch_canary_run_names_the_published_and_the_new_version() -> None:
    before = batch(version="1")
    after = batch(version="2").model_copy(update={"rollout": BatchRollout(strategy="canary", sample=0.1)})
    first = published(before).model_copy(update={"model_uri": "models:/iris/1"})
    markdown = render_markdown(plan(desired(after), (live(output=first),), {"nightly": 1}))
    [row] = table_rows(markdown)
    assert row.startswith("| `>` | `deployment/nightly` | run | `iris` 1 → 2 | canary on 10% of rows | model iris")


def test_notices_of_any_kind_are_listed_as_warnings() -> None:
    # The lock file's check reports an alias that moved as a notice of kind Model.
    moved = Notice(kind="Model", name="iris", message="alias @champion now points to version 3; mlopsfile.lock pins 2")
    markdown = render_markdown(plan_of("identical_no_changes").model_copy(update={"notices": (moved,)}))
    warnings = markdown.split("#### Warnings\n\n", 1)[1].split("\n\n", 1)[0]
    assert warnings == "- `model/iris`: alias @champion now points to version 3; mlopsfile.lock pins 2"
    assert "**No changes.** Nothing will be applied; see the warnings below. · 1 unchanged · 1 warning" in markdown


def test_a_destroy_plan_says_so_first() -> None:
    markdown = render_markdown(plan_of("spec_removed_delete").model_copy(update={"mode": "destroy"}))
    warnings = [line for line in markdown.splitlines() if line.startswith("- ")]
    assert warnings[0] == "- **This plan destroys everything the project runs.**"
    assert warnings[1].startswith("- `deployment/iris` **is destroyed**: its spec was removed; route `/iris` stops")


def test_table_cells_escape_pipes_html_and_stray_backticks() -> None:
    reason = "a | b, `x|y` quoted, <img src=x> and *stars* and it`s odd"
    [row] = table_rows(render_markdown(with_change(plan_of("model_alias_new_version_replace"), reason=reason)))
    assert len(UNESCAPED_PIPE.findall(row)) == 7, row  # six cells, whatever the reason holds
    why = UNESCAPED_PIPE.split(row)[6].strip()
    assert why == r"a \| b, \`x\|y\` quoted, &lt;img src=x&gt; and \*stars\* and it\`s odd"


def test_balanced_backticks_stay_code_spans() -> None:
    [row] = table_rows(render_markdown(with_change(plan_of("model_alias_new_version_replace"),
                                                   reason="run `mlopsfile apply --retry` for <it>")))
    assert row.endswith("| run `mlopsfile apply --retry` for &lt;it&gt; |")


def test_backticks_in_names_and_values_cannot_break_out() -> None:
    base = plan_of("replicas_update_in_place").model_copy(update={"project": "odd`name"})
    tricky = FieldDiff(field="route", old="/a", new="/b```\n<details>")
    markdown = render_markdown(with_change(base, diffs=(tricky,)))
    assert "### mlopsfile plan · project ``odd`name``" in markdown
    assert "<!-- mlopsfile-plan project=odd`name -->" in markdown
    block = markdown.split("````diff\n", 1)[1].split("\n````\n", 1)[0]  # the fence outgrows the value's backticks
    assert block == '- route = "/a"\n+ route = "/b```\\n<details>"'


def test_the_same_plan_renders_the_same_bytes_whenever_it_was_made() -> None:
    first = plan_of("mixed_changes_ordering")
    later = first.model_copy(update={"created_at": "2031-01-01T00:00:00Z"})
    assert render_markdown(first) == render_markdown(later)
    assert "2024" not in render_markdown(first)


def test_every_change_has_a_row_and_the_strategy_is_named() -> None:
    for case, strategy in [("rollout_canary_model_move", "canary 20% → 50% → 100%"),
                           ("rollout_blue_green_model_move", "blue-green via `/iris/preview`"),
                           ("rollout_ab_start", "ab 50% to `rose`"),
                           ("model_alias_new_version_replace", "direct")]:
        result = plan_of(case)
        rows = table_rows(render_markdown(result))
        assert len(rows) == len(result.changes) == 1
        cells = [cell.strip() for cell in UNESCAPED_PIPE.split(rows[0])[1:-1]]
        assert cells[4] == strategy, case
        change: Change = result.changes[0]
        assert cells[1] == f"`{change.address}`" and cells[2] == change.action.value
