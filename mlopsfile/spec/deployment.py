"""The Deployment kind: where and how a Model is served."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from mlopsfile.spec.batch import BatchTarget
from mlopsfile.spec.common import API_VERSION, Metadata, ResourceName, Strict, check_memory, check_route
from mlopsfile.spec.edge import EdgeTarget
from mlopsfile.spec.lifecycle import Lifecycle
from mlopsfile.spec.rollout import BlueGreenRollout, CanaryRollout, DirectRollout, Rollout, ShadowRollout


class Resources(Strict):
    """What one replica reserves on the Ray cluster (Ray actor options)."""

    num_cpus: float = Field(default=1.0, ge=0, description="CPUs reserved per replica; fractions allowed (e.g. 0.1).")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs reserved per replica; fractions allowed.")
    memory: int | str | None = Field(
        default=None,
        description="Memory reserved per replica, in bytes or with a unit ('512Mi', '2Gi').",
    )
    custom: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources reserved per replica, e.g. {accelerator_type_a10: 1}.",
    )

    _valid_memory = field_validator("memory")(check_memory)


class Autoscaling(Strict):
    """Replica autoscaling on Ray Serve, driven by ongoing requests per replica."""

    min_replicas: int = Field(default=1, ge=0, description="Fewest replicas kept running.")
    max_replicas: int = Field(ge=1, description="Most replicas ever started.")
    target_ongoing_requests: float = Field(
        default=2.0, gt=0, description="Ongoing requests per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(default=30.0, ge=0, description="Seconds of sustained load before adding replicas.")
    downscale_delay_s: float = Field(default=600.0, ge=0, description="Seconds of low load before removing replicas.")

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self


class Batching(Strict):
    """Dynamic request batching: requests arriving together are scored in one model call."""

    max_batch_size: int = Field(default=16, ge=1, le=4096, description="Most requests scored in one model call.")
    batch_wait_timeout_s: float = Field(
        default=0.01, ge=0, le=10, description="Longest wait for a batch to fill before scoring what has arrived."
    )


class OnlineTarget(Strict):
    """Serve the model over HTTP on Ray Serve."""

    type: Literal["online"] = Field(description="Target kind: 'online' serves over HTTP on Ray Serve.")
    route: str | None = Field(
        default=None,
        description="HTTP route prefix (default '/<deployment name>'); requests go to POST <route>/predict.",
    )
    replicas: int | None = Field(
        default=None, ge=0, le=1000, description="Fixed replica count (default 1); leave unset when autoscaling."
    )
    autoscaling: Autoscaling | None = Field(default=None, description="Autoscale replicas instead of a fixed count.")
    resources: Resources = Field(default_factory=Resources, description="What each replica reserves on Ray.")
    batching: Batching | None = Field(default=None, description="Dynamic batching of concurrent requests.")
    max_ongoing_requests: int = Field(
        default=32, ge=1, le=10000,
        description=(
            "Requests a replica holds at once (queued inside it) before Serve's router makes callers wait; "
            "at least batching.max_batch_size, so batches can fill."
        ),
    )

    _valid_route = field_validator("route")(check_route)

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> OnlineTarget:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("set either replicas or autoscaling, not both")
        if self.batching is not None and self.batching.max_batch_size > self.max_ongoing_requests:
            raise ValueError(
                f"batching.max_batch_size ({self.batching.max_batch_size}) exceeds max_ongoing_requests "
                f"({self.max_ongoing_requests}): a replica never holds enough requests to fill a batch"
            )
        return self


DeploymentTarget = Annotated[Union[OnlineTarget, BatchTarget, EdgeTarget], Field(discriminator="type")]


class DeploymentSpec(Strict):
    """A model served somewhere."""

    model: ResourceName = Field(description="Name of a Model document in the same spec set.")
    target: DeploymentTarget = Field(description="Where and how the model is served; chosen by 'type'.")
    rollout: Rollout = Field(
        default_factory=DirectRollout,
        description="How a new model version reaches callers: direct, canary, blue-green, ab or shadow.",
    )

    @model_validator(mode="after")
    def _rollout_fits_target(self) -> DeploymentSpec:
        rollout = self.rollout
        if isinstance(self.target, BatchTarget):
            _check_batch_rollout(rollout)
            return self
        if isinstance(self.target, EdgeTarget):
            _check_edge_rollout(rollout)
            return self
        if isinstance(rollout, CanaryRollout):
            if not rollout.steps:
                raise ValueError("a canary of an online target needs steps: [{weight: ..., pause: ...}, ...]")
            if rollout.sample is not None:
                raise ValueError("rollout.sample is for batch targets; an online canary shifts traffic in steps")
        analysis = getattr(rollout, "analysis", None)
        if analysis is not None and (analysis.min_agreement is not None or analysis.max_mean_shift is not None):
            raise ValueError("analysis.min_agreement and max_mean_shift are gates of batch canaries")
        return self


def _check_batch_rollout(rollout: Rollout) -> None:
    """A batch target rolls out directly, through a sampled canary, or with a shadow candidate."""
    if isinstance(rollout, CanaryRollout) and rollout.analysis.drift is not None:
        raise ValueError("analysis.drift gates online canaries; a batch canary's gates are min_agreement and "
                         "max_mean_shift")
    if isinstance(rollout, CanaryRollout):
        if rollout.steps:
            raise ValueError("a batch canary has no traffic steps: it scores a `sample` of the input with both "
                             "versions and runs in full if the analysis gates pass")
        return
    if isinstance(rollout, ShadowRollout):
        extra = sorted(rollout.model_fields_set & {"sample", "duration"})
        if extra:
            raise ValueError(f"a batch shadow scores every input row on every run; {' and '.join(extra)} "
                             "are for online targets")
        return
    if not isinstance(rollout, DirectRollout):
        raise ValueError(f"rollout strategy {rollout.strategy!r} is for online targets; a batch target takes "
                         "direct, canary or shadow")


def _check_edge_rollout(rollout: Rollout) -> None:
    """An edge image moves through channels: `canary` first, `stable` on promotion."""
    if isinstance(rollout, CanaryRollout):
        extra = sorted(rollout.model_fields_set & {"steps", "sample", "analysis", "keep_previous"})
        if extra:
            raise ValueError(f"an edge canary moves the image's `canary` tag and waits for `mlopsfile promote`; "
                             f"{', '.join(extra)} do not apply (its gates are the parity report and target.smoke)")
        return
    if not isinstance(rollout, DirectRollout):
        raise ValueError(f"rollout strategy {rollout.strategy!r} is for online targets; an edge target takes "
                         "direct (the `stable` tag moves at once) or canary (`canary` first, `stable` on promotion)")


class DeploymentDocument(Strict):
    """Serve a Model on a target."""

    apiVersion: Literal["mlopsfile/v1"] = Field(description=f"Spec language version; always '{API_VERSION}'.")
    kind: Literal["Deployment"] = Field(description="Document kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: DeploymentSpec = Field(description="Model, target and rollout.")
    lifecycle: Lifecycle = Field(default_factory=Lifecycle, description="Guards on what apply may do: prevent_destroy.")

    def route(self) -> str:
        target = self.spec.target
        return (target.route if isinstance(target, OnlineTarget) else None) or f"/{self.metadata.name}"

    def preview_route(self) -> str | None:
        rollout = self.spec.rollout
        if not isinstance(rollout, BlueGreenRollout):
            return None
        return rollout.preview_route or f"{self.route().rstrip('/')}/preview"
