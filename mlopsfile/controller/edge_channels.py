"""`promote` and `rollback` of edge deployments: moving the `stable` tag between kept images.

Promotion moves `stable` onto the `canary` image once its gates hold (the parity report
it was built with, and a smoke run of the image when the spec declares one). Rollback
moves `stable` back onto the `previous` image; the image it leaves becomes `previous`,
so a second rollback rolls forward again. Either way the old image stays in the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlopsfile.edge_resources import DesiredEdge, EdgeImage, ObservedEdge
from mlopsfile.errors import MlopsfileError
from mlopsfile.gitinfo import git_commit

if TYPE_CHECKING:
    from mlopsfile.api import Project


def _edge_state(project: Project, name: str) -> tuple[DesiredEdge, ObservedEdge]:
    want = project.desired().edge(name)
    if want is None:
        raise MlopsfileError(f"no edge Deployment named {name!r} in the specs")
    live = next((e for e in project.edge.observe({name: want.bundle}) if e.name == name), None)
    if live is None or not live.images:
        raise MlopsfileError(f"deployment/{name} has no image yet: run `mlopsfile apply` first")
    return want, live


def promote_edge(project: Project, name: str) -> str:
    with project.locked("promote"):
        want, live = _edge_state(project, name)
        canary, stable = live.tagged("canary"), live.tagged("stable")
        if canary is None:
            raise MlopsfileError(f"deployment/{name} has no canary image to promote")
        if stable is not None and stable.build_key == canary.build_key:
            raise MlopsfileError(f"deployment/{name}: the canary (version {canary.model_version}) is already stable")
        if not canary.parity.startswith("parity passed"):
            raise MlopsfileError(f"deployment/{name}: the canary's parity report did not pass: {canary.parity}")
        if want.smoke_requests:
            if canary.build_key != want.build.key:
                raise MlopsfileError(f"deployment/{name}: the canary is not the build the specs describe; "
                                     "run `mlopsfile apply` first")
            failure = project.edge.smoke(f"{live.repository}:canary", Path(want.edge_dir), want.smoke_requests)
            if failure is not None:
                _record(project, name, want, "promote", "failed", f"smoke run of the canary failed: {failure}")
                raise MlopsfileError(f"deployment/{name}: smoke run of the canary failed: {failure}")
        project.edge.point(name, live.repository, "stable", canary.build_key)
        if want.registry and canary.build_key == want.build.key:
            project.edge.push(want)
        message = (f"{_named(canary)} is stable" +
                   (f"; {_named(stable)} is kept as `previous`" if stable is not None else ""))
        project.store.clear_hold(name)
        _record(project, name, want, "promote", "applied", message)
        return message


def rollback_edge(project: Project, name: str) -> str:
    with project.locked("rollback"):
        want, live = _edge_state(project, name)
        previous, stable = live.tagged("previous"), live.tagged("stable")
        if previous is None or (stable is not None and previous.build_key == stable.build_key):
            raise MlopsfileError(f"deployment/{name} has no previous image to roll back to")
        project.edge.point(name, live.repository, "stable", previous.build_key)
        message = f"stable is {_named(previous)} again" + (
            f"; {_named(stable)} is kept as `previous`" if stable is not None else "")
        project.store.put_hold(name=name, spec_digest=want.spec_digest, outcome="rolled-back",
                               reason=f"stable was rolled back to version {previous.model_version} by hand",
                               live_version=previous.model_version)
        _record(project, name, want, "rollback", "applied", message)
        return message


def _named(image: EdgeImage) -> str:
    return f"version {image.model_version} (build {image.build_key[:8]})"


def _record(project: Project, name: str, want: DesiredEdge, action: str, outcome: str, message: str) -> None:
    store = project.store
    revision = store.last_revisions().get(name, 0) + 1
    commit = git_commit(project.settings.specs)
    store.record_revision(kind="Deployment", name=name, revision=revision, action=action, outcome=outcome,
                          spec_digest=want.spec_digest, model_version=want.model.version,
                          model_digest=want.model.digest, config=want.build.model_dump(), message=message,
                          git_commit=commit, plan_id=None)
    store.audit(operation=action, outcome=outcome, resource=f"deployment/{name}", action=action, revision=revision,
                message=message, git_commit=commit)
