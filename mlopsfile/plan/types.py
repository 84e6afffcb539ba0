"""The Plan: a frozen, JSON-serialisable list of changes that apply walks."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import Field

from mlopsfile.edge_resources import DesiredEdge
from mlopsfile.monitor_resources import DesiredMonitor
from mlopsfile.resources import DesiredBatch, DesiredDeployment, ResolvedModel, Value

PLAN_FORMAT_VERSION = 1


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    ROLLOUT = "rollout"
    RUN = "run"


ACTION_ORDER = {Action.DELETE: 0, Action.REPLACE: 1, Action.ROLLOUT: 2, Action.UPDATE: 3, Action.CREATE: 4,
                Action.RUN: 5}


class RolloutChange(Value):
    """What a change starts or ends besides replacing: a rollout or an experiment."""

    strategy: str = Field(description="direct, canary, blue-green, ab or shadow.")
    operation: Literal["start", "end"] = Field(default="start", description="'end' stops an experiment or rollout.")
    from_version: str | None = Field(default=None, description="Model version serving now.")
    to_version: str | None = Field(default=None, description="Model version the candidate serves.")
    candidate_model: str | None = Field(default=None, description="Model document of the candidate.")
    description: str = Field(description="The strategy in words: steps, split, preview, sample.")
    supersedes: str | None = Field(default=None, description="Version of a rollout in progress that this one replaces.")


class EdgeChange(Value):
    """What apply does for an edge deployment, in order: build, push, bundle, move tags."""

    build: bool = Field(default=False, description="Convert, check and build a new image.")
    push: bool = Field(default=False, description="Push the image to the spec's registry.")
    bundle: bool = Field(default=False, description="Write the bundle tarball.")
    tags: tuple[str, ...] = Field(default=(), description="Channels moved onto the image: stable, canary.")


class Hold(Value):
    """A change the planner will not propose again on its own: an aborted rollout or a rollback."""

    name: str
    spec_digest: str = Field(description="The deployment spec this hold is for; a new spec lifts it.")
    outcome: str = Field(description="aborted | rolled-back | ended | failed")
    reason: str
    at: str
    live_version: str | None = None


class Notice(Value):
    """Something a reviewer must know that is not a change."""

    name: str
    kind: str = "Deployment"
    message: str


class FieldDiff(Value):
    """One field that differs between the live state and the specs."""

    field: str = Field(description="Field name, e.g. 'replicas' or 'model_version'.")
    old: Any = Field(default=None, description="Live value (None when created).")
    new: Any = Field(default=None, description="Desired value (None when deleted).")
    forces_replacement: bool = Field(default=False, description="Whether this field alone needs new replicas.")


class Change(Value):
    """One resource to create, update in place, replace or delete, and why."""

    action: Action
    kind: str = Field(default="Deployment", description="Spec kind of the resource.")
    name: str
    target: str = Field(default="online", description="Target type: online, batch, edge.")
    reason: str = Field(description="Why this change is needed, in one sentence.")
    diffs: tuple[FieldDiff, ...] = ()
    desired: DesiredDeployment | None = Field(default=None, description="What apply deploys (absent for delete).")
    revision: int = Field(description="Revision number this change records.")
    rollout: RolloutChange | None = Field(default=None, description="The rollout or experiment this change starts or ends.")
    batch: DesiredBatch | None = Field(default=None, description="The batch job a run change starts.")
    edge: DesiredEdge | None = Field(default=None, description="The edge image a change builds or tags.")
    edge_steps: EdgeChange | None = Field(default=None, description="The steps of an edge change.")
    monitor: DesiredMonitor | None = Field(default=None, description="The monitor a change starts (absent for delete).")

    @property
    def address(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


class LifecycleChange(Value):
    """A resource's ``lifecycle.prevent_destroy`` differs from what the state store remembers."""

    kind: str = "Deployment"
    name: str
    prevent_destroy: bool = Field(description="The flag the specs set; apply records it.")


class Unchanged(Value):
    name: str
    kind: str = "Deployment"
    reason: str


class Plan(Value):
    """Desired × observed → ordered changes. Apply carries it out exactly."""

    format_version: int = PLAN_FORMAT_VERSION
    mode: Literal["apply", "destroy"] = Field(default="apply", description="'destroy' removes everything the project owns.")
    project: str
    created_at: str = Field(description="When the plan was made (ISO 8601, UTC).")
    specs_digest: str = Field(description="Digest of the spec set the plan was made from.")
    spec_digests: dict[str, str] = Field(default_factory=dict, description="Digest of each deployment's documents.")
    observed: dict[str, str] = Field(default_factory=dict, description="Fingerprint of each live managed resource.")
    batch_outputs: dict[str, str] = Field(default_factory=dict, description="Output directory of each batch deployment.")
    edge_bundles: dict[str, str | None] = Field(default_factory=dict, description="Bundle directory of each edge deployment.")
    models: tuple[ResolvedModel, ...] = ()
    changes: tuple[Change, ...] = ()
    unchanged: tuple[Unchanged, ...] = ()
    notices: tuple[Notice, ...] = ()
    lifecycle: tuple[LifecycleChange, ...] = Field(default=(), description="prevent_destroy flags apply records.")

    @property
    def has_changes(self) -> bool:
        return bool(self.changes or self.lifecycle)

    def counts(self) -> dict[Action, int]:
        return {action: sum(1 for c in self.changes if c.action == action) for action in Action}
