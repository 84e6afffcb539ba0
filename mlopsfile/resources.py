"""Desired and observed resources: the two inputs of the planner, as plain frozen values.

Desired values come from the specs (after model resolution); observed values are read
from the live systems by drivers. Both describe an online deployment with the same
``OnlineServing`` shape so the planner can diff them field by field.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlopsfile.spec.specset import canonical_digest


class Value(BaseModel):
    """Immutable, JSON-serialisable value type."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResolvedModel(Value):
    """A Model document pinned to one registry version and the digest of its artifacts."""

    name: str = Field(description="Name of the Model document.")
    uri: str = Field(description="URI as written in the spec.")
    registered_name: str | None = Field(default=None, description="Registered model name, for models:/ URIs.")
    version: str = Field(description="Pinned registry version (or run id for runs:/ URIs).")
    alias: str | None = Field(default=None, description="Alias the version was resolved from, if any.")
    pinned_uri: str = Field(description="URI that names exactly this version: what apply deploys.")
    digest: str = Field(description="sha256 over the model's artifact files.")
    run_id: str | None = Field(default=None, description="MLflow run that produced the model.")


class OnlineServing(Value):
    """Everything that decides how an online deployment runs on Ray Serve."""

    route: str
    model_uri: str
    model_version: str
    model_digest: str
    runtime_digest: str
    num_cpus: float
    num_gpus: float
    memory: int | None
    custom_resources: dict[str, float] = Field(default_factory=dict)
    replicas: int | None
    autoscaling: dict[str, float] | None
    max_batch_size: int | None
    batch_wait_timeout_s: float | None
    max_ongoing_requests: int


# Changing any of these means new replicas (new code, new weights or new resources);
# everything else Serve applies to running replicas in place.
REPLACING_FIELDS = frozenset({
    "route", "model_uri", "model_version", "model_digest", "runtime_digest",
    "num_cpus", "num_gpus", "memory", "custom_resources",
})


def replace_digest(serving: OnlineServing) -> str:
    """Digest of the fields whose change needs new replicas."""
    return canonical_digest(serving.model_dump(include=set(REPLACING_FIELDS)))[:16]


class RolloutSettings(Value):
    """``spec.rollout`` with durations in seconds, as the planner and controller use it."""

    strategy: Literal["direct", "canary", "blue-green", "ab", "shadow"] = "direct"
    steps: tuple[tuple[float, float | None], ...] = Field(default=(), description="Canary (weight, pause_s).")
    max_error_rate: float = 0.01
    max_p99_ms: float | None = None
    min_requests: int = 20
    keep_previous_s: float = 0.0
    preview_route: str | None = None
    smoke_requests: int = 0
    smoke_body: dict[str, Any] | None = None
    pause_s: float | None = 0.0
    weight: float = 0.0
    sticky_header: str | None = None
    duration_s: float | None = None
    sample: float = 0.0

    @property
    def progressive(self) -> bool:
        """A new version of the deployment's own model rolls out through this strategy."""
        return self.strategy in ("canary", "blue-green")

    @property
    def experiment(self) -> bool:
        """A second Model runs beside the stable one (A/B test or shadow)."""
        return self.strategy in ("ab", "shadow")

    def describe(self) -> str:
        if self.strategy == "canary":
            steps = ", ".join(f"{w:g}%" + (f" for {p:g}s" if p is not None else " until promoted")
                              for w, p in self.steps)
            return f"canary: {steps}, then 100%"
        if self.strategy == "blue-green":
            return f"blue-green: preview on {self.preview_route}, {self.smoke_requests} smoke requests, then switch"
        if self.strategy == "ab":
            until = f" for {self.duration_s:g}s" if self.duration_s else ""
            return f"A/B: {self.weight:g}% to the candidate{until}, sticky on header {self.sticky_header}"
        if self.strategy == "shadow":
            until = f" for {self.duration_s:g}s" if self.duration_s else ""
            return f"shadow: mirror {self.sample * 100:g}% of requests to the candidate{until}"
        return "direct: new replicas healthy before the old ones go"


class Experiment(Value):
    """The second arm of an A/B test or shadow: another Model served beside the stable one."""

    model: ResolvedModel
    serving: OnlineServing


class DesiredDeployment(Value):
    """A Deployment as the specs want it, model resolved."""

    name: str
    target: Literal["online"] = "online"
    spec_digest: str = Field(description="Digest of the deployment and model documents.")
    source: str = Field(description="file:line:column of the document.")
    model: ResolvedModel
    serving: OnlineServing
    labels: dict[str, str] = Field(default_factory=dict)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    experiment: Experiment | None = None


class DesiredState(Value):
    project: str
    specs_digest: str
    deployments: tuple[DesiredDeployment, ...] = ()
    models: tuple[ResolvedModel, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, DesiredDeployment]:
        return {d.name: d for d in self.deployments}

    def deployment(self, name: str) -> DesiredDeployment | None:
        return self._by_name.get(name)


class Health(Value):
    """What the live system says about a resource right now."""

    status: str = Field(description="Live status, e.g. RUNNING, DEPLOYING, UNHEALTHY, DEPLOY_FAILED.")
    running_replicas: int = 0
    target_replicas: int = 0
    message: str = ""


class Ownership(Value):
    """The marks mlopsfile leaves on what it creates, read back by observation."""

    owner: str = "mlopsfile"
    project: str
    resource: str
    spec_digest: str
    revision: int
    role: Literal["stable", "candidate"] = Field(
        default="stable", description="'candidate': the second application of a rollout, attached to its deployment.",
    )


CANDIDATE_SUFFIX = ".candidate"  # deployment names are DNS labels, so no dot: never a user's name


def candidate_app(name: str) -> str:
    """The Serve application of a deployment's rollout candidate."""
    return f"{name}{CANDIDATE_SUFFIX}"


class TrafficArm(Value):
    role: Literal["stable", "candidate"]
    version: str
    app: str | None = Field(default=None, description="Serve application scoring this arm; None: the ingress itself.")
    weight: float = 0.0


class Traffic(Value):
    """The ingress' traffic table: who gets which share of requests."""

    generation: int = 0
    mode: Literal["split", "ab", "shadow"] = "split"
    sticky_header: str | None = None
    shadow_sample: float = 0.0
    arms: tuple[TrafficArm, ...] = ()

    def weight_of(self, role: str) -> float:
        return sum(arm.weight for arm in self.arms if arm.role == role)


class ObservedArm(Value):
    """The candidate application of a rollout, as found on the live system."""

    app: str
    ownership: Ownership
    serving: OnlineServing
    health: Health


class ObservedDeployment(Value):
    """A deployment as found on the live system."""

    name: str
    target: Literal["online"] = "online"
    ownership: Ownership | None = Field(default=None, description="None: not created by mlopsfile.")
    serving: OnlineServing | None = None
    health: Health
    details: dict[str, Any] = Field(default_factory=dict, description="Driver-specific facts for status.")
    traffic: Traffic | None = Field(default=None, description="The ingress' traffic table, during rollouts.")
    candidate: ObservedArm | None = Field(default=None, description="The candidate application, during rollouts.")

    def managed_by(self, project: str) -> bool:
        return self.ownership is not None and self.ownership.project == project

    def fingerprint(self) -> str:
        """What a saved plan remembers to notice that the live state moved."""
        return canonical_digest({
            "ownership": self.ownership.model_dump() if self.ownership else None,
            "serving": self.serving.model_dump() if self.serving else None,
            "candidate": self.candidate.serving.model_dump() if self.candidate else None,
        })[:16]


class ObservedState(Value):
    deployments: tuple[ObservedDeployment, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, ObservedDeployment]:
        return {d.name: d for d in self.deployments}

    def deployment(self, name: str) -> ObservedDeployment | None:
        return self._by_name.get(name)
