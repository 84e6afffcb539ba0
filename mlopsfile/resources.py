"""Desired and observed resources: the two inputs of the planner, as plain frozen values.

Desired values come from the specs (after model resolution); observed values are read
from the live systems by drivers. Both describe an online deployment with the same
``OnlineServing`` shape so the planner can diff them field by field.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import Field

from mlopsfile.edge_resources import DesiredEdge, ObservedEdge
from mlopsfile.monitor_resources import DesiredMonitor, DriftTap, ObservedMonitor
from mlopsfile.spec.specset import canonical_digest
from mlopsfile.values import ResolvedModel, Value


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
    taps: tuple[DriftTap, ...] = Field(default=(), description="Monitors the ingress hands sampled requests to.")


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
    drift_monitor: str | None = Field(default=None, description="Canary gate: a Monitor testing the candidate's traffic.")

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


class BatchScoring(Value):
    """Everything that decides how a batch deployment's job runs and what it writes."""

    model_uri: str
    model_version: str
    model_digest: str
    runtime_digest: str
    inputs: tuple[str, ...] = Field(description="Input paths, globs or URIs as written, relative ones made absolute.")
    format: Literal["auto", "parquet", "csv"] = "auto"
    output: str = Field(description="Absolute output directory.")
    columns: tuple[str, ...] = ()
    prediction_column: str = "prediction"
    batch_size: int = 4096
    concurrency: int = 1
    num_cpus: float = 1.0
    memory: int | None = None
    schedule: str | None = None
    timezone: str = "UTC"


# A change of any of these changes what a run writes, so the output is made again; the rest
# (batch size, replicas, resources, schedule) only changes how the next run goes.
OUTPUT_FIELDS = ("model_uri", "model_digest", "inputs", "format", "output", "columns", "prediction_column")


def output_digest(job: BatchScoring) -> str:
    """Digest of the settings that decide a run's output (model and input data aside)."""
    return canonical_digest(job.model_dump(include=set(OUTPUT_FIELDS)))[:16]


class InputFile(Value):
    path: str
    size: int
    mtime_ns: int


class InputSnapshot(Value):
    """The input files as listed when the plan was made: what a run reads."""

    digest: str = Field(description="sha256 over every file's path, size and modification time.")
    files: tuple[InputFile, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


class BatchRollout(Value):
    """``spec.rollout`` of a batch deployment: how a new version or a candidate is tried on files."""

    strategy: Literal["direct", "canary", "shadow"] = "direct"
    sample: float = Field(default=0.05, description="Canary: share of input rows scored by both versions first.")
    min_agreement: float | None = None
    max_mean_shift: float | None = None
    candidate: ResolvedModel | None = Field(default=None, description="Shadow: the Model scored into the side output.")

    def describe(self) -> str:
        if self.strategy == "canary":
            gates = [f"agreement >= {self.min_agreement:g}" if self.min_agreement is not None else "",
                     f"mean shift <= {self.max_mean_shift:g} sd" if self.max_mean_shift is not None else ""]
            gates_text = " and ".join(g for g in gates if g) or "no gates (the sample is only reported)"
            return (f"canary: score {self.sample * 100:g}% of the rows with both versions; the full run starts "
                    f"only if {gates_text}")
        if self.strategy == "shadow" and self.candidate is not None:
            return (f"shadow: every row is also scored by {self.candidate.name} version {self.candidate.version} "
                    "into <output>/shadow/, with its agreement")
        return "direct: the next run uses the new version"


class DesiredBatch(Value):
    """A batch Deployment as the specs want it, model resolved and input listed."""

    name: str
    target: Literal["batch"] = "batch"
    spec_digest: str
    source: str = Field(description="file:line:column of the document.")
    model: ResolvedModel
    job: BatchScoring
    input: InputSnapshot
    labels: dict[str, str] = Field(default_factory=dict)
    rollout: BatchRollout = Field(default_factory=BatchRollout)

    @property
    def run_key(self) -> str:
        """What a published output must match to be current: model, input, output settings (and a shadow)."""
        parts = [self.job.model_digest, self.input.digest, output_digest(self.job)]
        if self.rollout.candidate is not None:
            parts.append(self.rollout.candidate.digest)
        return canonical_digest(parts)[:16]


class PublishedRun(Value):
    """The manifest of the output readers see now (``<output>/current/_manifest.json``)."""

    run_id: str
    run_key: str
    model_uri: str = ""
    model_version: str
    model_digest: str
    input_digest: str
    rows: int
    started_at: str = Field(description="ISO 8601, UTC.")
    finished_at: str = Field(description="ISO 8601, UTC.")
    path: str
    input_files: tuple[InputFile, ...] = ()
    settings: dict[str, Any] = Field(default_factory=dict, description="The output settings the run used.")


class JobRun(Value):
    """One Ray Job of a batch deployment, as Ray reports it."""

    job_id: str
    status: str = Field(description="PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED.")
    run_key: str
    revision: int
    model_version: str
    input_digest: str
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    start_time: float | None = Field(default=None, description="Seconds since the epoch.")
    end_time: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ("PENDING", "RUNNING")

    @property
    def failed_on_its_data(self) -> bool:
        """The job itself reported a failure (bad input, missing column), so running it again fails again."""
        return self.status == "FAILED" and self.exit_code == BATCH_FAILURE_EXIT_CODE


BATCH_FAILURE_EXIT_CODE = 3  # runtime.batch_job exits with this when the run itself fails


class ObservedBatch(Value):
    """A batch deployment as found: its published output and its Ray Jobs (newest first)."""

    name: str
    target: Literal["batch"] = "batch"
    project: str
    output: str
    published: PublishedRun | None = None
    jobs: tuple[JobRun, ...] = ()

    @property
    def last_job(self) -> JobRun | None:
        return self.jobs[0] if self.jobs else None

    def fingerprint(self) -> str:
        return canonical_digest({
            "published": self.published.run_id if self.published else None,
            "jobs": [(j.job_id, j.status) for j in self.jobs[:1]],
        })[:16]


class DesiredState(Value):
    project: str
    specs_digest: str
    deployments: tuple[DesiredDeployment, ...] = ()
    batches: tuple[DesiredBatch, ...] = ()
    edges: tuple[DesiredEdge, ...] = ()
    monitors: tuple[DesiredMonitor, ...] = ()
    models: tuple[ResolvedModel, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, DesiredDeployment]:
        return {d.name: d for d in self.deployments}

    def deployment(self, name: str) -> DesiredDeployment | None:
        return self._by_name.get(name)

    def batch(self, name: str) -> DesiredBatch | None:
        return next((b for b in self.batches if b.name == name), None)

    def edge(self, name: str) -> DesiredEdge | None:
        return next((e for e in self.edges if e.name == name), None)

    def monitor(self, name: str) -> DesiredMonitor | None:
        return next((m for m in self.monitors if m.name == name), None)


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
    batches: tuple[ObservedBatch, ...] = ()
    edges: tuple[ObservedEdge, ...] = ()
    monitors: tuple[ObservedMonitor, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, ObservedDeployment]:
        return {d.name: d for d in self.deployments}

    def deployment(self, name: str) -> ObservedDeployment | None:
        return self._by_name.get(name)

    def batch(self, name: str) -> ObservedBatch | None:
        return next((b for b in self.batches if b.name == name), None)

    def edge(self, name: str) -> ObservedEdge | None:
        return next((e for e in self.edges if e.name == name), None)

    def monitor(self, name: str) -> ObservedMonitor | None:
        return next((m for m in self.monitors if m.name == name), None)
