"""`mlopsfile rollback`: back to a previous revision, instantly when it is still loaded.

Three cases, from fastest to slowest:

* a promoted rollout still keeps the previous version warm: the ingress' weights flip
  back to it (an in-place change, no replica starts);
* a rollout is still in progress: it is aborted (all traffic back to stable at once);
* otherwise the revision's recorded configuration is deployed as a direct rollout (new
  replicas healthy before the old ones go).

Afterwards the live state differs from the specs; a hold makes the plan say so instead
of rolling the spec's version out again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlopsfile.controller.loop import rollout_lock_scope
from mlopsfile.controller.rollouts import Events
from mlopsfile.errors import MlopsfileError
from mlopsfile.resources import OnlineServing, Ownership

if TYPE_CHECKING:
    from mlopsfile.api import Project

GOOD_OUTCOMES = ("applied", "promoted", "completed")


def rollback(project: Project, name: str, to_revision: int | None, events: Events | None) -> str:
    store = project.store
    controller = project.controller(events)
    with project.locked("rollback"):
        lock = store.acquire_lock("rollback", scope=rollout_lock_scope(name))
        try:
            record = store.active_rollout(name)
            if record is not None:
                previous_revision = (record.previous or {}).get("ownership", {}).get("revision")
                if record.state == "keeping" and to_revision in (None, previous_revision):
                    controller.rollback_warm(record)
                    return (f"rolled back at once: all traffic is on version {record.from_version} again "
                            f"(it was still loaded); version {record.to_version} was removed")
                if record.state not in ("keeping", "finalizing"):
                    store.advance_rollout(record.id, record.state, state="aborting",
                                          message="rolled back by hand (`mlopsfile rollback`)")
                    controller.tick(record)
                    return f"the rollout to version {record.to_version} was aborted; version {record.from_version} serves"
            return _redeploy(project, name, to_revision)
        finally:
            store.release_lock(lock, scope=rollout_lock_scope(name))


def _redeploy(project: Project, name: str, to_revision: int | None) -> str:
    store = project.store
    driver = project.drivers["online"]
    live = driver.observe_one(name)  # type: ignore[attr-defined]
    if live is None or live.serving is None or live.ownership is None or not live.managed_by(project.settings.project):
        raise MlopsfileError(f"deployment {name!r} is not live in project {project.settings.project!r}")
    target, config = _target(project, name, to_revision, live.serving.model_version, live.ownership.revision)
    # The monitors watching the deployment keep watching it: they are not part of the model's revision.
    serving = OnlineServing.model_validate(config).model_copy(update={"taps": live.serving.taps})
    revision = max(store.last_revisions().get(name, 0), live.ownership.revision) + 1
    ownership = Ownership(project=project.settings.project, resource=f"deployment/{name}",
                          spec_digest=live.ownership.spec_digest, revision=revision)
    driver.replace_serving(name, serving, ownership)  # type: ignore[attr-defined]
    message = f"rolled back by hand to revision {target} (model version {serving.model_version})"
    from mlopsfile.gitinfo import git_commit

    commit = git_commit(project.settings.specs)
    store.record_revision(kind="Deployment", name=name, revision=revision, action="rollback", outcome="applied",
                          spec_digest=live.ownership.spec_digest, model_version=serving.model_version,
                          model_digest=serving.model_digest, config=serving.model_dump(), message=message,
                          git_commit=commit, plan_id=None)
    store.audit(operation="rollback", outcome="applied", resource=f"deployment/{name}", action="rollback",
                revision=revision, message=message, git_commit=commit)
    store.put_hold(name=name, spec_digest=live.ownership.spec_digest, outcome="rolled-back",
                   reason=f"it was {message}", live_version=serving.model_version)
    return f"{message}; new replicas took over before the old ones stopped (revision {revision})"


def _target(project: Project, name: str, to_revision: int | None, live_version: str,
            live_revision: int) -> tuple[int, dict]:
    store = project.store
    if to_revision is not None:
        config = store.revision_config(name, to_revision)
        if config is None:
            raise MlopsfileError(f"deployment {name!r} has no revision {to_revision} with a recorded configuration "
                                 "(see `mlopsfile history`)")
        return to_revision, config
    for record in reversed(store.history(name)):
        if record.revision >= live_revision or record.outcome not in GOOD_OUTCOMES:
            continue
        if record.model_version == live_version:
            continue
        config = store.revision_config(name, record.revision)
        if config is not None:
            return record.revision, config
    raise MlopsfileError(f"deployment {name!r} has no earlier revision with another model version to return to")
