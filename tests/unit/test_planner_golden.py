"""Golden planner tests: (desired, observed, revisions) → expected changes, as data files.

Each directory under golden/ is one case:

- desired.yaml    a DesiredState
- observed.yaml   an ObservedState
- revisions.yaml  deployment name → last recorded revision
- holds.yaml      (optional) a list of Holds from the state store
- expected.yaml   either ``plan_error: <substring of the PlanError message>`` or
                  ``changes`` (action, name, revision, ``reason`` (exact) or
                  ``reason_contains``, diffs, and ``rollout`` when the change starts or
                  ends a rollout), ``unchanged`` (name, reason), ``notices`` (when any)
                  and ``observed`` (names of live resources the plan fingerprints)

``UPDATE_GOLDEN=1 pytest tests/unit/test_planner_golden.py`` rewrites every expected.yaml
from the planner's current output; review the diff before keeping it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlopsfile.errors import PlanError
from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.types import Action, Change, Plan
from tests.unit.golden_cases import CREATED_AT, GOLDEN, inputs, load

CASES = sorted(path.name for path in GOLDEN.iterdir() if path.is_dir())
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _change_from(change: Change) -> dict[str, Any]:
    item = {
        "action": change.action.value,
        "name": change.name,
        "revision": change.revision,
        "reason": change.reason,
        "diffs": [diff.model_dump() for diff in change.diffs],
    }
    if change.rollout is not None:
        item["rollout"] = change.rollout.model_dump()
    if change.edge_steps is not None:
        item["edge"] = change.edge_steps.model_dump(mode="json")
    return item


def _expected_from(plan: Plan) -> dict[str, Any]:
    expected: dict[str, Any] = {
        "changes": [_change_from(change) for change in plan.changes],
        "unchanged": [{"name": item.name, "reason": item.reason} for item in plan.unchanged],
    }
    if plan.notices:
        expected["notices"] = [notice.model_dump() for notice in plan.notices]
    expected["observed"] = sorted(plan.observed)
    return expected


def _write_expected(case: Path, expected: dict[str, Any]) -> None:
    text = yaml.safe_dump(expected, sort_keys=False, default_flow_style=None, width=200)
    (case / "expected.yaml").write_text(text, encoding="utf-8")


def test_golden_cases_exist() -> None:
    # Guards against the parametrized test silently collecting nothing (a moved directory).
    assert len(CASES) >= 30
    assert any((GOLDEN / name / "holds.yaml").exists() for name in CASES)


@pytest.mark.parametrize("case_name", CASES)
def test_golden_plan(case_name: str) -> None:
    case = GOLDEN / case_name
    desired, observed, revisions, holds = inputs(case)
    expected_path = case / "expected.yaml"
    expected = load(case, "expected.yaml") if expected_path.exists() else {}

    if "plan_error" in expected:
        with pytest.raises(PlanError) as caught:
            make_plan(desired, observed, revisions, CREATED_AT, holds=holds)
        assert expected["plan_error"] in str(caught.value)
        return

    plan = make_plan(desired, observed, revisions, CREATED_AT, holds=holds)
    if UPDATE:
        _write_expected(case, _expected_from(plan))
        return

    assert expected, f"{expected_path} is missing; run with UPDATE_GOLDEN=1 and review it"
    assert [(c.action.value, c.name) for c in plan.changes] == [(c["action"], c["name"]) for c in expected["changes"]]
    for change, want in zip(plan.changes, expected["changes"], strict=True):
        assert change.revision == want["revision"], change.name
        if "reason" in want:
            assert change.reason == want["reason"], change.name
        else:
            assert want["reason_contains"] in change.reason, change.name
        assert [d.model_dump() for d in change.diffs] == want["diffs"], change.name
        assert (change.rollout.model_dump() if change.rollout else None) == want.get("rollout"), change.name
        assert (change.edge_steps.model_dump(mode="json") if change.edge_steps else None) == want.get("edge"), change.name
        # Apply deploys exactly what was planned, so every non-delete change carries the desired deployment.
        if change.action == Action.DELETE:
            assert change.desired is None and change.edge is None
        elif change.target == "edge":
            assert change.edge == desired.edge(change.name) and change.desired is None
        else:
            assert change.desired == desired.deployment(change.name)
    assert [{"name": u.name, "reason": u.reason} for u in plan.unchanged] == expected["unchanged"]
    assert [n.model_dump() for n in plan.notices] == expected.get("notices", [])
    assert sorted(plan.observed) == expected["observed"]
    assert plan.spec_digests == {d.name: d.spec_digest for d in (*desired.deployments, *desired.edges)}
    assert plan.specs_digest == desired.specs_digest
