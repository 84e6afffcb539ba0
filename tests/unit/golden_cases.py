"""Reading the golden planner cases (tests/unit/golden/<case>/): desired, observed, revisions, holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.types import Hold, Plan
from mlopsfile.resources import DesiredState, ObservedState

GOLDEN = Path(__file__).parent / "golden"
CREATED_AT = "2024-05-01T12:00:00Z"


def load(case: Path, name: str) -> Any:
    return yaml.safe_load((case / name).read_text(encoding="utf-8"))


def inputs(case: Path) -> tuple[DesiredState, ObservedState, dict[str, int], dict[str, Hold]]:
    desired = DesiredState.model_validate(load(case, "desired.yaml"))
    observed = ObservedState.model_validate(load(case, "observed.yaml") or {})
    revisions = load(case, "revisions.yaml") or {}
    held = (load(case, "holds.yaml") or []) if (case / "holds.yaml").exists() else []
    holds = {hold.name: hold for hold in (Hold.model_validate(item) for item in held)}
    return desired, observed, revisions, holds


def plan_of(case_name: str) -> Plan:
    """The plan the real planner makes for a golden case."""
    desired, observed, revisions, holds = inputs(GOLDEN / case_name)
    return make_plan(desired, observed, revisions, CREATED_AT, holds=holds)
