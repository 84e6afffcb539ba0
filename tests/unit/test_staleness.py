"""A saved plan is refused once the specs or the live state moved since it was made."""

from __future__ import annotations

from typing import Any

import pytest

from mlopsfile.apply.staleness import check_fresh
from mlopsfile.errors import StalePlanError
from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.types import Plan
from mlopsfile.resources import DesiredState, ObservedState

CREATED_AT = "2024-05-01T12:00:00Z"


def world(make: Any) -> tuple[DesiredState, ObservedState]:
    """Two deployments live and current, plus apps mlopsfile does not own."""
    iris, rose = make.desired("iris"), make.desired("rose", replicas=2)
    observed = make.observed(
        make.live(iris), make.live(rose),
        make.live(make.desired("grafana"), owned=False),
        make.live(make.desired("fraud"), project="payments"),
    )
    return make.state(iris, rose), observed


def saved_plan(desired: DesiredState, observed: ObservedState) -> Plan:
    return make_plan(desired, observed, {}, CREATED_AT)


def digests(desired: DesiredState) -> dict[str, str]:
    return {d.name: d.spec_digest for d in desired.deployments}


def test_nothing_moved_passes(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    assert plan.observed.keys() == {"iris", "rose"}
    check_fresh(plan, desired.specs_digest, digests(desired), observed, "demo")


def test_changed_spec_names_the_deployment(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    now = {**digests(desired), "rose": "spec-rose-2"}
    with pytest.raises(StalePlanError) as caught:
        check_fresh(plan, "specs-2", now, observed, "demo")
    assert str(caught.value) == "saved plan is stale: spec of deployment/rose changed. Run plan again."


def test_added_and_removed_specs_are_named(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    now = {"iris": digests(desired)["iris"], "tulip": "spec-tulip-1"}
    with pytest.raises(StalePlanError) as caught:
        check_fresh(plan, "specs-2", now, observed, "demo")
    assert "spec of deployment/rose removed" in str(caught.value)
    assert "spec of deployment/tulip added" in str(caught.value)


def test_spec_files_changed_without_touching_a_deployment(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    with pytest.raises(StalePlanError, match="the spec files changed"):
        check_fresh(plan, "specs-2", digests(desired), observed, "demo")


def test_live_fingerprint_changed(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    rose = observed.deployment("rose")
    assert rose is not None and rose.serving is not None
    scaled = rose.model_copy(update={"serving": rose.serving.model_copy(update={"replicas": 9})})
    moved = ObservedState(deployments=tuple(scaled if d.name == "rose" else d for d in observed.deployments))
    with pytest.raises(StalePlanError) as caught:
        check_fresh(plan, desired.specs_digest, digests(desired), moved, "demo")
    assert str(caught.value) == "saved plan is stale: live deployment/rose changed. Run plan again."


def test_health_alone_does_not_make_a_plan_stale(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    rose = observed.deployment("rose")
    assert rose is not None
    unhealthy = rose.model_copy(update={"health": rose.health.model_copy(update={"status": "UNHEALTHY"})})
    now = ObservedState(deployments=tuple(unhealthy if d.name == "rose" else d for d in observed.deployments))
    check_fresh(plan, desired.specs_digest, digests(desired), now, "demo")


def test_managed_app_appeared(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    appeared = ObservedState(deployments=(*observed.deployments, make.live(make.desired("tulip"))))
    with pytest.raises(StalePlanError, match=r"live deployment/tulip appeared"):
        check_fresh(plan, desired.specs_digest, digests(desired), appeared, "demo")


def test_managed_app_disappeared(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    gone = ObservedState(deployments=tuple(d for d in observed.deployments if d.name != "iris"))
    with pytest.raises(StalePlanError, match=r"live deployment/iris disappeared"):
        check_fresh(plan, desired.specs_digest, digests(desired), gone, "demo")


def test_apps_owned_by_others_may_come_and_go(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    others = (make.live(make.desired("kibana"), owned=False), make.live(make.desired("loans"), project="payments"))
    now = ObservedState(deployments=(*(d for d in observed.deployments if d.name in ("iris", "rose")), *others))
    check_fresh(plan, desired.specs_digest, digests(desired), now, "demo")


def test_everything_that_moved_is_listed(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    gone = ObservedState(deployments=tuple(d for d in observed.deployments if d.name != "iris"))
    with pytest.raises(StalePlanError) as caught:
        check_fresh(plan, "specs-2", {**digests(desired), "rose": "x"}, gone, "demo")
    assert str(caught.value) == (
        "saved plan is stale: spec of deployment/rose changed; live deployment/iris disappeared. Run plan again."
    )


def test_plan_of_another_project_or_format_is_refused(make: Any) -> None:
    desired, observed = world(make)
    plan = saved_plan(desired, observed)
    with pytest.raises(StalePlanError, match="made for project 'demo', not 'other'"):
        check_fresh(plan, desired.specs_digest, digests(desired), observed, "other")
    future = plan.model_copy(update={"format_version": 2})
    with pytest.raises(StalePlanError, match="plan format 2 is not supported"):
        check_fresh(future, desired.specs_digest, digests(desired), observed, "demo")
