"""The operations behind the CLI: validate, plan, apply, destroy, status, down.

This is where specs, registry, drivers and state meet. It returns values and raises
typed errors; rendering and exit codes belong to the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from mlopsfile.apply.executor import ApplyReport, Executor, Progress
from mlopsfile.apply.staleness import check_fresh
from mlopsfile.config import Settings, load_settings
from mlopsfile.desired import ModelResolver, build_desired
from mlopsfile.drivers.base import DeploymentDriver
from mlopsfile.errors import DriverError
from mlopsfile.gitinfo import git_commit
from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.types import Plan
from mlopsfile.resources import DesiredState, Health, ObservedState
from mlopsfile.spec.loader import load_specs
from mlopsfile.spec.specset import SpecSet, canonical_digest
from mlopsfile.state.store import Lock, StateStore


@dataclass
class Project:
    """One project: its settings and, created on first use, its registry, drivers and store.

    Tests hand in their own resolver or drivers; everything else is built from settings.
    """

    settings: Settings
    resolver_override: ModelResolver | None = None
    drivers_override: Mapping[str, DeploymentDriver] | None = None
    runtime_digest_override: str | None = None

    @classmethod
    def open(cls, start: Path | None = None, specs: Path | None = None) -> Project:
        return cls(load_settings(start, specs))

    @cached_property
    def store(self) -> StateStore:
        return StateStore(self.settings.state_url)

    @cached_property
    def resolver(self) -> ModelResolver:
        if self.resolver_override is not None:
            return self.resolver_override
        from mlopsfile.drivers.registry import MlflowResolver

        return MlflowResolver(self.settings.tracking_uri, self.settings.registry_uri, self.settings.state_dir / "cache")

    @cached_property
    def drivers(self) -> Mapping[str, DeploymentDriver]:
        if self.drivers_override is not None:
            return self.drivers_override
        from mlopsfile.drivers.online import OnlineDriver

        return {"online": OnlineDriver(self.settings)}

    @property
    def runtime_digest(self) -> str:
        if self.runtime_digest_override is not None:
            return self.runtime_digest_override
        from mlopsfile.drivers.runtime_package import runtime_digest

        return runtime_digest()

    # -- operations ------------------------------------------------------------------

    def validate(self) -> SpecSet:
        return load_specs(self.settings.specs, self.settings.root)

    def desired(self, specset: SpecSet | None = None) -> DesiredState:
        specset = specset or self.validate()
        return build_desired(specset, self.resolver, self.settings.project, self.runtime_digest)

    def observe(self) -> ObservedState:
        found = []
        for driver in self.drivers.values():
            found.extend(driver.observe())
        return ObservedState(deployments=tuple(found))

    def plan(self, destroy: bool = False) -> PlanResult:
        desired = self.empty_desired() if destroy else self.desired()
        observed = self.observe()
        plan = make_plan(desired, observed, self.store.last_revisions(), _now(), mode="destroy" if destroy else "apply")
        return PlanResult(plan, observed)

    def empty_desired(self) -> DesiredState:
        return DesiredState(project=self.settings.project, specs_digest=canonical_digest({}))

    @contextmanager
    def locked(self, operation: str) -> Iterator[Lock]:
        """Hold the state lock: a second apply or destroy fails at once, naming this one."""
        lock = self.store.acquire_lock(operation)
        try:
            yield lock
        finally:
            self.store.release_lock(lock)

    def apply(self, plan: Plan, progress: Progress | None = None, lock_held: bool = False) -> ApplyReport:
        """Apply exactly ``plan`` after checking it is still true (under the state lock)."""
        if not lock_held:
            with self.locked("destroy" if plan.mode == "destroy" else "apply"):
                return self.apply(plan, progress, lock_held=True)
        observed = self.observe()
        if plan.mode == "destroy":
            specs_digest, spec_digests = plan.specs_digest, dict(plan.spec_digests)
        else:
            specset = self.validate()
            specs_digest = specset.digest()
            spec_digests = {name: specset.deployment_digest(name) for name in specset.deployments}
        check_fresh(plan, specs_digest, spec_digests, observed, self.settings.project)
        executor = Executor(self.drivers, self.store, observed, git_commit(self.settings.specs), plan_id(plan), progress)
        return executor.run(plan)

    def status(self) -> list[StatusRow]:
        specset = self.validate()
        observed = self.observe()
        latest = self.store.latest_applied()
        rows = []
        names = sorted(set(specset.deployments) | {d.name for d in observed.deployments
                                                   if d.managed_by(self.settings.project)})
        for name in names:
            live = observed.deployment(name)
            record = latest.get(name)
            in_specs = name in specset.deployments
            synced = None
            if live is not None and live.ownership is not None and in_specs:
                synced = live.ownership.spec_digest == specset.deployment_digest(name)
            rows.append(StatusRow(
                name=name, target="online", in_specs=in_specs,
                revision=live.ownership.revision if live and live.ownership else (record.revision if record else None),
                model_version=live.serving.model_version if live and live.serving else None,
                health=live.health if live else None,
                route=live.serving.route if live and live.serving else None,
                url=live.details.get("url") if live and live.serving else None,
                synced=synced,
                applied_by=record.user if record else None,
                applied_at=record.created_at.isoformat(timespec="seconds") if record else None,
            ))
        return rows

    def down(self) -> bool:
        from mlopsfile.drivers.ray_cluster import LocalHead

        if not self.settings.manages_local_ray:
            raise DriverError(f"mlopsfile did not start the Ray cluster at {self.settings.ray_address}; it stays up")
        return LocalHead(self.settings.state_dir).stop()


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    observed: ObservedState


@dataclass(frozen=True)
class StatusRow:
    name: str
    target: str
    in_specs: bool
    revision: int | None
    model_version: str | None
    health: Health | None
    route: str | None
    url: str | None
    synced: bool | None
    applied_by: str | None = None
    applied_at: str | None = None


def plan_id(plan: Plan) -> str:
    return canonical_digest(plan.model_dump(mode="json"))[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
