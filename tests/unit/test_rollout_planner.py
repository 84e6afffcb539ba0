"""Rollouts as the planner sees them through the online driver's own observation (no Ray).

The golden cases give the planner hand-written observed values; these build them with
``observe_application``/``attach_candidates`` from Serve details shaped like the ones the
dashboard returns while a rollout runs, so a mismatch between what the controller deploys
and what the planner expects shows up.
"""

from __future__ import annotations

from typing import Any

from mlopsfile.drivers.online import OWNER_KEY, attach_candidates, observe_application
from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.types import Action
from mlopsfile.resources import (
    DesiredDeployment,
    ObservedState,
    OnlineServing,
    Ownership,
    RolloutSettings,
    Traffic,
    TrafficArm,
    candidate_app,
)
from tests.unit.conftest import Factory

CANARY = RolloutSettings(strategy="canary", steps=((20.0, 60.0),), keep_previous_s=60.0)
BLUE_GREEN = RolloutSettings(strategy="blue-green", preview_route="/iris/preview", smoke_requests=5)


def serve_app(route: str | None, ownership: Ownership, serving: OnlineServing,
              traffic: Traffic | None = None) -> dict[str, Any]:
    """One application of Serve's REST details, as the online driver deploys it."""
    user_config: dict[str, Any] = {OWNER_KEY: ownership.model_dump(), "serving": serving.model_dump()}
    if traffic is not None:
        user_config["traffic"] = traffic.model_dump()
    return {
        "status": "RUNNING", "route_prefix": route,
        "deployments": {"model": {
            "deployment_config": {"user_config": user_config, "num_replicas": serving.replicas,
                                  "max_ongoing_requests": serving.max_ongoing_requests,
                                  "ray_actor_options": {"num_cpus": serving.num_cpus, "num_gpus": serving.num_gpus}},
            "replicas": [{"state": "RUNNING"}], "target_num_replicas": 1,
        }},
    }


def in_flight(make: Factory, rollout: RolloutSettings, candidate_route: str | None) -> tuple[DesiredDeployment,
                                                                                            ObservedState]:
    """Version 1 stable, the rollout to version 2 under way with its candidate app deployed at
    ``candidate_route`` (None: reachable only through the ingress, as for a canary)."""
    old = make.desired("iris", version="1", spec_digest="spec-iris-1")
    want = make.desired("iris", version="2", spec_digest="spec-iris-2").model_copy(update={"rollout": rollout})
    stable = Ownership(project=make.project, resource="deployment/iris", spec_digest="spec-iris-1", revision=1)
    candidate = Ownership(project=make.project, resource="deployment/iris", spec_digest="spec-iris-2", revision=2,
                          role="candidate")
    weight = rollout.steps[0][0] if rollout.steps else 0.0
    traffic = Traffic(generation=1, arms=(TrafficArm(role="stable", version="1", weight=100 - weight),
                                          TrafficArm(role="candidate", version="2", app=candidate_app("iris"),
                                                     weight=weight)))
    details = {
        "iris": serve_app("/iris", stable, old.serving, traffic),
        candidate_app("iris"): serve_app(candidate_route, candidate, want.serving),
    }
    observed = attach_candidates([observe_application(name, app) for name, app in sorted(details.items())])
    return want, ObservedState(deployments=tuple(observed))


def test_the_candidate_is_attached_to_its_deployment(make: Factory) -> None:
    _, observed = in_flight(make, CANARY, None)
    assert [d.name for d in observed.deployments] == ["iris"]
    live = observed.deployment("iris")
    assert live is not None and live.candidate is not None
    assert live.candidate.serving.model_version == "2"
    assert live.candidate.ownership.role == "candidate"


def test_a_canary_in_flight_is_left_alone(make: Factory) -> None:
    want, observed = in_flight(make, CANARY, None)
    plan = make_plan(make.state(want), observed, {"iris": 2}, "2024-05-01T12:00:00Z")
    assert plan.changes == ()
    assert [u.reason for u in plan.unchanged] == ["rollout of version 2 in progress (canary); see `mlopsfile status`"]


def test_a_new_version_during_a_canary_supersedes_it(make: Factory) -> None:
    _, observed = in_flight(make, CANARY, None)
    newer = make.desired("iris", version="3", spec_digest="spec-iris-2").model_copy(update={"rollout": CANARY})
    plan = make_plan(make.state(newer), observed, {"iris": 2}, "2024-05-01T12:00:00Z")
    assert [(c.action, c.revision) for c in plan.changes] == [(Action.ROLLOUT, 3)]
    rollout = plan.changes[0].rollout
    assert rollout is not None and (rollout.from_version, rollout.to_version, rollout.supersedes) == ("1", "3", "2")


def test_a_blue_green_preview_in_flight_is_left_alone(make: Factory) -> None:
    want, observed = in_flight(make, BLUE_GREEN, "/iris/preview")
    plan = make_plan(make.state(want), observed, {"iris": 2}, "2024-05-01T12:00:00Z")
    assert [(c.action, c.reason) for c in plan.changes] == []
    assert [u.reason for u in plan.unchanged] == [
        "rollout of version 2 in progress (blue-green); see `mlopsfile status`",
    ]
