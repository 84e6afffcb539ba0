"""The plan is a pure function of its inputs and a frozen value that survives JSON."""

from __future__ import annotations

import builtins
import socket
from typing import Any

import pytest
from pydantic import ValidationError

from mlopsfile.errors import PlanError
from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.render import render_json
from mlopsfile.plan.types import Plan
from mlopsfile.resources import DesiredState, ObservedState

CREATED_AT = "2024-05-01T12:00:00Z"


def inputs(make: Any) -> tuple[DesiredState, ObservedState, dict[str, int]]:
    """Something of everything: create, update, replace, delete, unchanged, and foreign apps."""
    create = make.desired("alpha", memory=2**30, custom_resources={"tpu": 1.0})
    update_old, update_new = make.desired("bravo"), make.desired(
        "bravo", spec_digest="spec-bravo-2", replicas=None,
        autoscaling={"min_replicas": 1.0, "max_replicas": 4.0, "target_ongoing_requests": 2.0},
        max_batch_size=8, batch_wait_timeout_s=0.01)
    replace_old, replace_new = make.desired("charlie"), make.desired("charlie", version="2", num_gpus=0.5)
    keep = make.desired("echo")
    observed = make.observed(
        make.live(update_old), make.live(replace_old, revision=2), make.live(make.desired("delta"), revision=5),
        make.live(keep), make.live(make.desired("grafana"), owned=False),
        make.live(make.desired("fraud"), project="payments"),
    )
    return make.state(create, update_new, replace_new, keep), observed, {"charlie": 2, "delta": 5}


def test_same_inputs_same_plan(make: Any) -> None:
    desired, observed, revisions = inputs(make)
    first = make_plan(desired, observed, revisions, CREATED_AT)
    second = make_plan(desired, observed, dict(revisions), CREATED_AT)
    assert first == second
    assert render_json(first) == render_json(second)
    assert len(first.changes) == 4 and len(first.unchanged) == 1


def test_order_of_observations_does_not_matter(make: Any) -> None:
    desired, observed, revisions = inputs(make)
    shuffled = ObservedState(deployments=tuple(reversed(observed.deployments)))
    assert make_plan(desired, observed, revisions, CREATED_AT) == make_plan(desired, shuffled, revisions, CREATED_AT)


def test_plan_round_trips_through_json(make: Any) -> None:
    desired, observed, revisions = inputs(make)
    plan = make_plan(desired, observed, revisions, CREATED_AT)
    restored = Plan.model_validate_json(render_json(plan))
    assert restored == plan
    assert render_json(restored) == render_json(plan)


def test_plan_and_its_changes_are_frozen(make: Any) -> None:
    desired, observed, revisions = inputs(make)
    plan = make_plan(desired, observed, revisions, CREATED_AT)
    with pytest.raises(ValidationError):
        plan.project = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        plan.changes[0].revision = 99  # type: ignore[misc]
    with pytest.raises(ValidationError):
        plan.changes[0].diffs[0].new = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        plan.changes.append(plan.changes[0])  # type: ignore[attr-defined]


def test_planning_does_no_io(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    desired, observed, revisions = inputs(make)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("make_plan did I/O")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(socket, "socket", refuse)
    plan = make_plan(desired, observed, revisions, CREATED_AT)
    assert plan.created_at == CREATED_AT


def test_conflicts_are_all_reported_at_once(make: Any) -> None:
    iris, rose = make.desired("iris"), make.desired("rose")
    observed = make.observed(make.live(iris, owned=False), make.live(rose, project="payments"))
    with pytest.raises(PlanError) as caught:
        make_plan(make.state(iris, rose), observed, {}, CREATED_AT)
    message = str(caught.value)
    assert "specs/iris.yaml:8:1: Deployment 'iris'" in message and "was not created by mlopsfile" in message
    assert "specs/rose.yaml:8:1: Deployment 'rose'" in message and "belongs to mlopsfile project 'payments'" in message


def test_destroy_plan_deletes_only_what_the_project_owns(make: Any) -> None:
    _, observed, revisions = inputs(make)
    plan = make_plan(make.state(), observed, revisions, CREATED_AT, mode="destroy")
    assert plan.mode == "destroy"
    assert [(c.action.value, c.name) for c in plan.changes] == [
        ("delete", "bravo"), ("delete", "charlie"), ("delete", "delta"), ("delete", "echo"),
    ]
