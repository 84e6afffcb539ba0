"""Checks across documents: unique names, models that exist, routes used once."""

from __future__ import annotations

from mlopsfile.errors import SpecError
from mlopsfile.spec.documents import LocatedDocument
from mlopsfile.spec.specset import SpecSet


def check_references(specset: SpecSet, documents: list[LocatedDocument]) -> list[SpecError]:
    errors: list[SpecError] = []
    errors.extend(_duplicate_names(specset, documents))
    for name, located in specset.deployments.items():
        model = specset.deployment(name).spec.model
        if model not in specset.models:
            known = ", ".join(sorted(specset.models)) or "none"
            errors.append(located.error(f"no Model named {model!r} in the specs (known: {known})", "spec", "model"))
        candidate = getattr(specset.deployment(name).spec.rollout, "candidate", None)
        if candidate is not None and candidate not in specset.models:
            known = ", ".join(sorted(specset.models)) or "none"
            errors.append(located.error(f"no Model named {candidate!r} in the specs (known: {known})",
                                        "spec", "rollout", "candidate"))
    errors.extend(_route_conflicts(specset))
    errors.extend(_monitor_references(specset))
    return errors


def _monitor_references(specset: SpecSet) -> list[SpecError]:
    """A monitor watches a deployment of the specs; its `run` actions start batch deployments; a
    canary's drift gate names a monitor of that same deployment."""
    errors = []
    for name, located in specset.deployments.items():
        analysis = getattr(specset.deployment(name).spec.rollout, "analysis", None)
        gate = getattr(analysis, "drift", None)
        if gate is None:
            continue
        if gate not in specset.monitors:
            known_monitors = ", ".join(sorted(specset.monitors)) or "none"
            errors.append(located.error(f"no Monitor named {gate!r} in the specs (known: {known_monitors})",
                                        "spec", "rollout", "analysis", "drift"))
        elif specset.monitor(gate).spec.deployment != name:
            errors.append(located.error(f"Monitor {gate!r} watches Deployment "
                                        f"{specset.monitor(gate).spec.deployment!r}, not this one",
                                        "spec", "rollout", "analysis", "drift"))
    known = ", ".join(sorted(specset.deployments)) or "none"
    for name, located in specset.monitors.items():
        spec = specset.monitor(name).spec
        if spec.deployment not in specset.deployments:
            errors.append(located.error(f"no Deployment named {spec.deployment!r} in the specs (known: {known})",
                                        "spec", "deployment"))
        for index, action in enumerate(spec.on_drift):
            target = getattr(action, "deployment", None)
            if target is None:
                continue
            if target not in specset.deployments:
                errors.append(located.error(f"no Deployment named {target!r} in the specs (known: {known})",
                                            "spec", "on_drift", index, "deployment"))
            elif specset.deployment(target).spec.target.type != "batch":
                errors.append(located.error(f"Deployment {target!r} is not a batch deployment: `run` starts batch "
                                            "deployments", "spec", "on_drift", index, "deployment"))
    return errors


def _duplicate_names(specset: SpecSet, documents: list[LocatedDocument]) -> list[SpecError]:
    errors = []
    first_of = {"Model": specset.models, "Deployment": specset.deployments, "Monitor": specset.monitors}
    for located in documents:
        first = first_of[located.kind][located.name]
        if first is not located:
            errors.append(located.error(
                f"duplicate {located.kind} name {located.name!r} (first defined at {first.at('metadata', 'name')})",
                "metadata", "name",
            ))
    return errors


def _route_conflicts(specset: SpecSet) -> list[SpecError]:
    errors = []
    owner_of: dict[str, LocatedDocument] = {}
    # Source order decides which deployment owns a route: compare (file, line, column) as a tuple,
    # because as text line 17 would sort before line 8.
    def source_order(name: str) -> tuple[str, int, int]:
        position = specset.deployments[name].positions.value(())
        return (position.file, position.line, position.column)

    for name in sorted(specset.deployments, key=source_order):
        located = specset.deployments[name]
        deployment = specset.deployment(name)
        if deployment.spec.target.type != "online":
            continue
        routes = [(deployment.route(), ("spec", "target", "route"))]
        preview = deployment.preview_route()
        if preview is not None:
            routes.append((preview, ("spec", "rollout", "preview_route")))
        for route, path in routes:
            if route in owner_of:
                other = owner_of[route]
                errors.append(located.error(
                    f"route {route!r} is already served by Deployment {other.name!r} ({other.at('spec', 'target')})",
                    *path,
                ))
            else:
                owner_of[route] = located
    return errors
