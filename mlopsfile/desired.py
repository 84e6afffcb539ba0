"""SpecSet → DesiredState: pin every model through the registry and shape serving configs."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from mlopsfile.desired_monitors import MonitorPreparer, desired_monitors, monitor_taps
from mlopsfile.edge_resources import DesiredEdge, EdgeBuild, PreparedEdge
from mlopsfile.errors import ResolveError, SpecError, SpecErrors
from mlopsfile.resources import (
    BatchRollout,
    BatchScoring,
    DesiredBatch,
    DesiredDeployment,
    DesiredState,
    Experiment,
    InputSnapshot,
    OnlineServing,
    ResolvedModel,
    RolloutSettings,
)
from mlopsfile.spec.batch import BatchTarget
from mlopsfile.spec.common import memory_bytes
from mlopsfile.spec.deployment import DeploymentDocument
from mlopsfile.spec.edge import EdgeTarget
from mlopsfile.spec.rollout import (
    ABRollout,
    BlueGreenRollout,
    CanaryRollout,
    ShadowRollout,
    duration_seconds,
)
from mlopsfile.spec.specset import SpecSet


class ModelResolver(Protocol):
    """Pins a model URI to a version and artifact digest (the MLflow driver implements it)."""

    def resolve(self, name: str, uri: str) -> ResolvedModel: ...


class EdgePreparer(Protocol):
    """Converts a model to ONNX and checks parity, before a plan shows any build (the edge driver)."""

    def prepare(self, name: str, model: ResolvedModel, target: EdgeTarget, root: Path) -> PreparedEdge:
        """Raise ResolveError with the reason when the model cannot be converted or parity fails."""
        ...


class InputLister(Protocol):
    """Lists a batch job's input files (the batch driver implements it)."""

    def snapshot(self, inputs: tuple[str, ...], file_format: str) -> InputSnapshot:
        """Raise ResolveError when nothing matches or a file cannot be read."""
        ...


def build_desired(specset: SpecSet, resolver: ModelResolver, project: str, runtime_digest: str,
                  inputs: InputLister | None = None, root: Path | None = None,
                  edge: EdgePreparer | None = None, monitors: MonitorPreparer | None = None) -> DesiredState:
    """Resolve every Model once; a model that cannot be resolved is a spec error at its uri.

    Batch deployments list their input files through ``inputs``; relative paths start at ``root``.
    """
    resolved: dict[str, ResolvedModel] = {}
    errors: list[SpecError] = []
    for name in sorted(specset.models):
        try:
            resolved[name] = resolver.resolve(name, specset.model(name).spec.uri)
        except ResolveError as exc:
            errors.append(specset.models[name].error(str(exc), "spec", "uri"))
    if errors:
        raise SpecErrors(errors)
    deployments = []
    batches = []
    edges = []
    for name in sorted(specset.deployments):
        document = specset.deployment(name)
        model = resolved[document.spec.model]
        if isinstance(document.spec.target, EdgeTarget):
            try:
                edges.append(desired_edge(specset, name, model, edge, root or Path.cwd()))
            except ResolveError as exc:
                errors.append(specset.deployments[name].error(str(exc), "spec", "target"))
            continue
        if isinstance(document.spec.target, BatchTarget):
            try:
                batches.append(desired_batch(specset, name, resolved, runtime_digest, inputs, root or Path.cwd()))
            except ResolveError as exc:
                errors.append(specset.deployments[name].error(str(exc), "spec", "target", "input"))
            continue
        candidate_name = getattr(document.spec.rollout, "candidate", None)
        experiment = None
        if candidate_name is not None:
            candidate = resolved[candidate_name]
            experiment = Experiment(model=candidate, serving=online_serving(document, candidate, runtime_digest))
        deployments.append(DesiredDeployment(
            name=name,
            spec_digest=specset.deployment_digest(name),
            source=specset.deployments[name].at(),
            model=model,
            serving=online_serving(document, model, runtime_digest).model_copy(
                update={"taps": monitor_taps(specset, name)}),
            labels=document.metadata.labels,
            rollout=rollout_settings(document),
            experiment=experiment,
        ))
    wanted_monitors, monitor_errors = desired_monitors(specset, resolved, monitors, project, root or Path.cwd())
    errors.extend(monitor_errors)
    if errors:
        raise SpecErrors(errors)
    return DesiredState(
        project=project,
        specs_digest=specset.digest(),
        deployments=tuple(deployments),
        batches=tuple(batches),
        edges=tuple(edges),
        monitors=tuple(wanted_monitors),
        models=tuple(resolved[n] for n in sorted(resolved)),
    )


def desired_batch(specset: SpecSet, name: str, resolved: dict[str, ResolvedModel], runtime_digest: str,
                  inputs: InputLister | None, root: Path) -> DesiredBatch:
    document = specset.deployment(name)
    target = document.spec.target
    assert isinstance(target, BatchTarget)
    model = resolved[document.spec.model]
    if inputs is None:
        raise ResolveError("batch deployments need the batch driver to list their input")
    job = BatchScoring(
        model_uri=model.pinned_uri, model_version=model.version, model_digest=model.digest,
        runtime_digest=runtime_digest, inputs=tuple(_absolute(p, root) for p in target.input),
        format=target.format, output=output_path(document, root), columns=tuple(target.columns),
        prediction_column=target.prediction_column, batch_size=target.batch_size,
        concurrency=target.concurrency, num_cpus=target.resources.num_cpus,
        memory=memory_bytes(target.resources.memory) if target.resources.memory is not None else None,
        schedule=target.schedule, timezone=target.timezone,
    )
    return DesiredBatch(name=name, spec_digest=specset.deployment_digest(name), source=specset.deployments[name].at(),
                        model=model, job=job, input=inputs.snapshot(job.inputs, job.format),
                        labels=document.metadata.labels, rollout=batch_rollout(document, resolved))


def desired_edge(specset: SpecSet, name: str, model: ResolvedModel, edge: EdgePreparer | None,
                 root: Path) -> DesiredEdge:
    document = specset.deployment(name)
    target = document.spec.target
    assert isinstance(target, EdgeTarget)
    if edge is None:
        raise ResolveError("edge deployments need the edge driver to convert their model")
    prepared = edge.prepare(name, model, target, root)
    build = EdgeBuild(model_uri=model.pinned_uri, model_version=model.version, model_digest=model.digest,
                      onnx_sha256=prepared.onnx_sha256, quantized=target.quantize != "none",
                      base_image=target.base_image, python_version=target.python_version,
                      requirements=prepared.requirements, runtime_digest=prepared.runtime_digest)
    return DesiredEdge(
        name=name, spec_digest=specset.deployment_digest(name), source=specset.deployments[name].at(), model=model,
        build=build, image=target.image or name,
        channel="canary" if isinstance(document.spec.rollout, CanaryRollout) else "stable",
        registry=target.registry, bundle=_absolute(target.bundle, root) if target.bundle else None,
        parity=prepared.parity, smoke_requests=target.smoke.requests if target.smoke else None,
        edge_dir=prepared.edge_dir, labels=document.metadata.labels,
    )


def batch_rollout(document: DeploymentDocument, resolved: dict[str, ResolvedModel]) -> BatchRollout:
    rollout = document.spec.rollout
    if isinstance(rollout, CanaryRollout):
        return BatchRollout(strategy="canary", sample=rollout.sample or 0.05,
                            min_agreement=rollout.analysis.min_agreement, max_mean_shift=rollout.analysis.max_mean_shift)
    if isinstance(rollout, ShadowRollout):
        return BatchRollout(strategy="shadow", candidate=resolved[rollout.candidate])
    return BatchRollout()


def output_path(document: DeploymentDocument, root: Path) -> str:
    """The absolute output directory of a batch deployment."""
    target = document.spec.target
    assert isinstance(target, BatchTarget)
    return _absolute(target.output.removeprefix("file://"), root)


def _absolute(path: str, root: Path) -> str:
    """Relative local paths start at the project root; URIs (s3://, gs://, file://) stay as written."""
    if "://" in path:
        return path
    return str((root / path).resolve()) if not Path(path).is_absolute() else path


def online_serving(document: DeploymentDocument, model: ResolvedModel, runtime_digest: str) -> OnlineServing:
    target = document.spec.target
    autoscaling = target.autoscaling.model_dump() if target.autoscaling else None
    return OnlineServing(
        route=document.route(),
        model_uri=model.pinned_uri,
        model_version=model.version,
        model_digest=model.digest,
        runtime_digest=runtime_digest,
        num_cpus=target.resources.num_cpus,
        num_gpus=target.resources.num_gpus,
        memory=memory_bytes(target.resources.memory) if target.resources.memory is not None else None,
        custom_resources=dict(target.resources.custom),
        replicas=None if autoscaling else (target.replicas if target.replicas is not None else 1),
        autoscaling=autoscaling,
        max_batch_size=target.batching.max_batch_size if target.batching else None,
        batch_wait_timeout_s=target.batching.batch_wait_timeout_s if target.batching else None,
        max_ongoing_requests=target.max_ongoing_requests,
    )


def _seconds(value: float | int | str | None) -> float | None:
    return None if value is None else duration_seconds(value)


def rollout_settings(document: DeploymentDocument) -> RolloutSettings:
    rollout = document.spec.rollout
    if isinstance(rollout, CanaryRollout):
        return RolloutSettings(
            strategy="canary", steps=tuple((step.weight, _seconds(step.pause)) for step in rollout.steps or []),
            max_error_rate=rollout.analysis.max_error_rate, max_p99_ms=rollout.analysis.max_p99_ms,
            min_requests=rollout.analysis.min_requests, keep_previous_s=duration_seconds(rollout.keep_previous),
            drift_monitor=rollout.analysis.drift,
        )
    if isinstance(rollout, BlueGreenRollout):
        return RolloutSettings(
            strategy="blue-green", preview_route=document.preview_route(), smoke_requests=rollout.smoke.requests,
            smoke_body=rollout.smoke.body, max_error_rate=rollout.analysis.max_error_rate,
            max_p99_ms=rollout.analysis.max_p99_ms, min_requests=rollout.analysis.min_requests,
            pause_s=_seconds(rollout.pause), keep_previous_s=duration_seconds(rollout.keep_previous),
        )
    if isinstance(rollout, ABRollout):
        return RolloutSettings(strategy="ab", weight=rollout.weight, sticky_header=rollout.sticky_header,
                               duration_s=_seconds(rollout.duration))
    if isinstance(rollout, ShadowRollout):
        return RolloutSettings(strategy="shadow", sample=rollout.sample, duration_s=_seconds(rollout.duration))
    return RolloutSettings()
