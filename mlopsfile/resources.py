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


class DesiredDeployment(Value):
    """A Deployment as the specs want it, model resolved."""

    name: str
    target: Literal["online"] = "online"
    spec_digest: str = Field(description="Digest of the deployment and model documents.")
    source: str = Field(description="file:line:column of the document.")
    model: ResolvedModel
    serving: OnlineServing
    labels: dict[str, str] = Field(default_factory=dict)


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


class ObservedDeployment(Value):
    """A deployment as found on the live system."""

    name: str
    target: Literal["online"] = "online"
    ownership: Ownership | None = Field(default=None, description="None: not created by mlopsfile.")
    serving: OnlineServing | None = None
    health: Health
    details: dict[str, Any] = Field(default_factory=dict, description="Driver-specific facts for status.")

    def managed_by(self, project: str) -> bool:
        return self.ownership is not None and self.ownership.project == project

    def fingerprint(self) -> str:
        """What a saved plan remembers to notice that the live state moved."""
        return canonical_digest({
            "ownership": self.ownership.model_dump() if self.ownership else None,
            "serving": self.serving.model_dump() if self.serving else None,
        })[:16]


class ObservedState(Value):
    deployments: tuple[ObservedDeployment, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, ObservedDeployment]:
        return {d.name: d for d in self.deployments}

    def deployment(self, name: str) -> ObservedDeployment | None:
        return self._by_name.get(name)
