"""Monitor documents → DesiredMonitor values, and the taps their deployments carry."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from mlopsfile.errors import MonitorDataError, SpecError
from mlopsfile.monitor_resources import DesiredMonitor, DriftTap, PreparedMonitor
from mlopsfile.spec.batch import BatchTarget
from mlopsfile.spec.edge import EdgeTarget
from mlopsfile.spec.monitor import MonitorSpec
from mlopsfile.spec.rollout import duration_seconds
from mlopsfile.spec.specset import SpecSet, canonical_digest
from mlopsfile.values import ResolvedModel
from runtime.drift_engine import DetectorSpec

HISTORY_LIMIT = 1000
# Spec field → alibi-detect argument, for the detector parameters a spec may set.
DETECTOR_PARAMETERS = ("correction", "ert", "window_sizes", "n_permutations")


class MonitorPreparer(Protocol):
    """Reads a monitor's reference data and the model signature at plan time (the monitor driver)."""

    def prepare(self, name: str, spec: MonitorSpec, model: ResolvedModel, root: Path) -> PreparedMonitor:
        """Raise MonitorDataError naming the field when the reference or the features do not fit."""
        ...


def monitor_taps(specset: SpecSet, deployment: str) -> tuple[DriftTap, ...]:
    """The monitors an online deployment's ingress feeds, by name."""
    return tuple(DriftTap(monitor=name, sample=specset.monitor(name).spec.sample,
                          target=specset.monitor(name).spec.target)
                 for name in sorted(specset.monitors) if specset.monitor(name).spec.deployment == deployment)


def desired_monitors(specset: SpecSet, resolved: dict[str, ResolvedModel], preparer: MonitorPreparer | None,
                     project: str, root: Path) -> tuple[list[DesiredMonitor], list[SpecError]]:
    monitors: list[DesiredMonitor] = []
    errors: list[SpecError] = []
    for name in sorted(specset.monitors):
        located = specset.monitors[name]
        spec = specset.monitor(name).spec
        target = specset.deployment(spec.deployment).spec.target
        if isinstance(target, EdgeTarget):
            errors.append(located.error("edge deployments serve on devices; a monitor watches online or batch "
                                        "deployments", "spec", "deployment"))
            continue
        if isinstance(target, BatchTarget):
            rollbacks = [i for i, action in enumerate(spec.on_drift) if action.type == "rollback"]
            if rollbacks:
                errors.append(located.error("a batch deployment has no revision to roll back to: use a `run` "
                                            "action (e.g. rescoring with another model)", "spec", "on_drift",
                                            rollbacks[0]))
                continue
        try:
            detector = detector_config(spec, ())
        except ValueError as exc:
            errors.append(located.error(str(exc), "spec", "detector"))
            continue
        if preparer is None:
            errors.append(located.error("monitors need the monitor driver to read their reference", "spec", "reference"))
            continue
        model = resolved[specset.deployment(spec.deployment).spec.model]
        try:
            prepared = preparer.prepare(name, spec, model, root)
        except MonitorDataError as exc:
            errors.append(located.error(str(exc), "spec", exc.field))
            continue
        detector = detector_config(spec, prepared.categorical)
        config = {
            "name": name, "project": project, "deployment": spec.deployment, "detector": detector,
            "features": list(prepared.features), "target": spec.target,
            "window_rows": spec.window.rows,
            "window_seconds": duration_seconds(spec.window.duration) if spec.window.duration is not None else None,
            "cooldown_s": duration_seconds(spec.cooldown),
            "actions": [action.model_dump() for action in spec.on_drift],
            "history_limit": HISTORY_LIMIT,
        }
        digest = canonical_digest({"config": config, "reference": prepared.reference_sha256})[:16]
        monitors.append(DesiredMonitor(
            name=name, deployment=spec.deployment,
            deployment_target="batch" if isinstance(target, BatchTarget) else "online",
            spec_digest=canonical_digest(specset.monitor(name).model_dump(mode="json", exclude={"lifecycle"}))[:16],
            source=located.at(), reference=spec.reference, prepared=prepared,
            config={**config, "digest": digest}, digest=digest,
        ))
    return monitors, errors


def detector_config(spec: MonitorSpec, categorical: tuple[int, ...]) -> dict[str, object]:
    """The engine's DetectorSpec as plain values; checked here so a bad parameter fails at plan time."""
    detector = spec.detector
    parameters = {key: getattr(detector, key) for key in DETECTOR_PARAMETERS if getattr(detector, key) is not None}
    checked = DetectorSpec(kind=detector.kind, p_val=detector.p_val, parameters=parameters,
                           categorical=categorical)
    return {"kind": checked.kind, "p_val": checked.p_val, "parameters": dict(checked.parameters),
            "categorical": list(checked.categorical)}
