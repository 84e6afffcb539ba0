"""The operations behind the CLI: validate, plan, apply, destroy, status, down.

This is where specs, registry, drivers and state meet. It returns values and raises
typed errors; rendering and exit codes belong to the CLI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsfile.apply.executor import ApplyReport, BatchRuns, Executor, Progress
from mlopsfile.apply.lifecycle import record_lifecycle
from mlopsfile.apply.staleness import check_fresh
from mlopsfile.config import Settings, load_settings
from mlopsfile.controller.batch_view import BatchView
from mlopsfile.controller.loop import ReconcileLoop, held_by_other
from mlopsfile.controller.rollouts import Events, RolloutController
from mlopsfile.controller.status import RolloutView, rollout_view
from mlopsfile.desired import ModelResolver, build_desired
from mlopsfile.drivers.base import DeploymentDriver
from mlopsfile.errors import DriverError, LockError, MlopsfileError, PlanError
from mlopsfile.gitinfo import git_commit
from mlopsfile.locking import LockResult, run_lock, through_lock
from mlopsfile.plan.guard import guard_plan
from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.types import Action, Hold, Plan
from mlopsfile.resources import DesiredState, Health, ObservedDeployment, ObservedState
from mlopsfile.spec.loader import load_specs
from mlopsfile.spec.overlay import environment_dir, environments_dir
from mlopsfile.spec.specset import SpecSet, canonical_digest
from mlopsfile.state.rollouts import RolloutRecord
from mlopsfile.state.store import Lock, StateStore

if TYPE_CHECKING:
    from mlopsfile.drivers.edge import EdgeDriver
    from mlopsfile.drivers.monitor import MonitorDriver
    from mlopsfile.drivers.monitor_data import MonitorData
    from mlopsfile.edge_resources import ObservedEdge
    from mlopsfile.monitor_resources import ObservedMonitor


@dataclass
class Project:
    """One project: its settings and, created on first use, its registry, drivers and store.

    Tests hand in their own resolver or drivers; everything else is built from settings.
    """

    settings: Settings
    resolver_override: ModelResolver | None = None
    drivers_override: Mapping[str, DeploymentDriver] | None = None
    runtime_digest_override: str | None = None
    batch_override: BatchRuns | None = None
    targets: tuple[str, ...] = ()  # --target: plan only these resources and what they need

    @classmethod
    def open(cls, start: Path | None = None, specs: Path | None = None, env: str | None = None) -> Project:
        return cls(load_settings(start, specs, env))

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

    @cached_property
    def batch(self) -> BatchRuns:
        if self.batch_override is not None:
            return self.batch_override
        from mlopsfile.drivers.batch import BatchDriver

        return BatchDriver(self.settings)

    @cached_property
    def edge(self) -> EdgeDriver:
        from mlopsfile.drivers.edge import EdgeDriver

        return EdgeDriver(self.settings.project, self.settings.state_dir, self.settings.docker_host,
                          self.settings.tracking_uri)

    @cached_property
    def monitors(self) -> MonitorDriver:
        from mlopsfile.drivers.monitor import MonitorDriver
        from mlopsfile.drivers.online import OnlineDriver

        online = self.drivers["online"]
        return MonitorDriver(online if isinstance(online, OnlineDriver) else OnlineDriver(self.settings))

    @cached_property
    def monitor_data(self) -> MonitorData:
        from mlopsfile.drivers.monitor_data import MonitorData

        return MonitorData(self.settings.tracking_uri, self.settings.state_dir / "cache" / "monitors",
                           self.settings.registry_uri)

    @property
    def runtime_digest(self) -> str:
        if self.runtime_digest_override is not None:
            return self.runtime_digest_override
        from mlopsfile.drivers.runtime_package import runtime_digest

        return runtime_digest()

    # -- operations ------------------------------------------------------------------

    def validate(self) -> SpecSet:
        return load_specs(self.settings.specs, self.settings.root, self.settings.env)

    def desired(self, specset: SpecSet | None = None) -> DesiredState:
        specset = specset or self.validate()
        return build_desired(specset, through_lock(self.resolver, self.lock_dir), self.settings.project,
                             self.runtime_digest,
                             inputs=self.batch, root=self.settings.root, edge=self.edge, monitors=self.monitor_data)

    def lock(self, update: Collection[str] | None = None, check: bool = False) -> LockResult:
        """Pin every model in mlopsfile.lock (``update``: only these), or ``check`` that it is current."""
        return run_lock(self.validate(), self.resolver, self.lock_dir, _now(), update, check)

    @property
    def lock_dir(self) -> Path:
        """Where mlopsfile.lock lives: beside the spec directory (the project root, or the root of
        the repository a pull-mode watch follows), or in an environment's own overlay directory
        (environments may point one model at different aliases, so each pins its own versions)."""
        if self.settings.env:
            return environment_dir(self.settings.specs, self.settings.env)
        return environments_dir(self.settings.specs).parent

    def observe(self, batch_outputs: Mapping[str, str] | None = None,
                edge_bundles: Mapping[str, str | None] | None = None) -> ObservedState:
        """Everything live; ``batch_outputs`` says where each batch deployment of the specs publishes,
        ``edge_bundles`` where each edge deployment writes its bundles."""
        found = []
        for driver in self.drivers.values():
            found.extend(driver.observe())
        return ObservedState(deployments=tuple(found), batches=tuple(self.batch.observe(dict(batch_outputs or {}))),
                             edges=tuple(self._observe_edges(dict(edge_bundles or {}))),
                             monitors=tuple(self._observe_monitors()))

    def _observe_monitors(self) -> list[ObservedMonitor]:
        if self.drivers_override is not None:  # in-memory drivers: no Ray to hold monitors
            return []
        return self.monitors.observe()

    def _observe_edges(self, bundles: dict[str, str | None]) -> list[ObservedEdge]:
        """A project without edge deployments does not need a Docker engine: one that cannot be
        reached then holds nothing of it that the plan must know."""
        try:
            return self.edge.observe(bundles)
        except DriverError:
            if bundles:
                raise
            return []

    def plan(self, destroy: bool = False, retry: bool = False, forced_runs: Collection[str] = ()) -> PlanResult:
        # A spec that fails to load raises here: nothing is ever planned, least of all a delete.
        specset = self._specs_if_valid() if destroy else self.validate()
        desired = self.empty_desired() if destroy else self.desired(specset)
        unknown = sorted(set(forced_runs) - {b.name for b in desired.batches})
        if unknown:
            raise PlanError(f"no batch Deployment named {', '.join(map(repr, unknown))} in the specs")
        observed = self.observe({b.name: b.job.output for b in desired.batches}, {e.name: e.bundle for e in desired.edges})
        plan = make_plan(desired, observed, self.store.last_revisions(), _now(), mode="destroy" if destroy else "apply",
                         holds={} if retry else self.holds(), retry=retry, forced_runs=forced_runs)
        return PlanResult(guard_plan(plan, specset, self.store.protections(), self.targets, destroy), observed)

    def _specs_if_valid(self) -> SpecSet | None:
        """destroy needs no specs; when they load, their prevent_destroy flags count too."""
        try:
            return self.validate()
        except MlopsfileError:
            return None

    def holds(self) -> dict[str, Hold]:
        return {name: Hold(name=name, spec_digest=h.spec_digest, outcome=h.outcome, reason=h.reason,
                           at=h.at.isoformat(timespec="seconds"), live_version=h.live_version)
                for name, h in self.store.holds().items()}

    def controller(self, events: Events | None = None) -> RolloutController:
        drift = None if self.drivers_override is not None else \
            (lambda monitor: list(self.monitors.history(monitor).get("verdicts", [])))
        return RolloutController(self.store, self.drivers["online"], self.settings.project,  # type: ignore[arg-type]
                                 git_commit(self.settings.specs), events, drift=drift)

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

    def apply(self, plan: Plan, progress: Progress | None = None, lock_held: bool = False,
              events: Events | None = None) -> ApplyReport:
        """Apply exactly ``plan`` after checking it is still true (under the state lock)."""
        if not lock_held:
            with self.locked("destroy" if plan.mode == "destroy" else "apply"):
                return self.apply(plan, progress, lock_held=True, events=events)
        observed = self.observe(plan.batch_outputs, plan.edge_bundles)
        if plan.mode == "destroy":
            specs_digest, spec_digests = plan.specs_digest, dict(plan.spec_digests)
        else:
            specset = self.validate()
            specs_digest = specset.digest()
            spec_digests = {name: specset.deployment_digest(name) for name in specset.deployments}
        check_fresh(plan, specs_digest, spec_digests, observed, self.settings.project)
        executor = Executor(self.drivers, self.store, observed, git_commit(self.settings.specs), plan_id(plan), progress,
                            controller=self.controller(events), batch=self.batch, events=events,
                            edge=self.edge if plan.edge_bundles or observed.edges else None,
                            monitors=self.monitors if any(c.target == "monitor" for c in plan.changes) else None)
        report = executor.run(plan)
        record_lifecycle(self.store, plan, report)
        return report

    def drive(self, names: list[str] | None = None, events: Events | None = None, tick_s: float | None = None,
              until: Callable[[RolloutRecord], bool] | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> dict[str, RolloutRecord]:
        """Run the reconcile loop in the foreground until the named (or all) rollouts end."""
        tick = tick_s if tick_s is not None else float(os.environ.get("MLOPSFILE_TICK_S", "1"))
        loop = ReconcileLoop(self.store, self.controller(events), tick_s=tick, events=events)
        return loop.run(names, until=until, should_stop=should_stop)

    def request(self, name: str, action: str, events: Events | None = None) -> RolloutRecord:
        """``promote`` or ``abort`` by hand: the loop driving the rollout (this one if none) carries it out."""
        record = self.controller(events).request(name, action)
        if held_by_other(self.store, name) is None:
            done = (lambda r: r.state in ("keeping", "finalizing", "completed")) if action == "promote" else None
            self.drive([name], events, until=done)
            fresh = self.store.rollout(record.id)
            assert fresh is not None
            return fresh
        return _wait_for_request(self.store, record)

    def is_edge(self, name: str) -> bool:
        specset = self.validate()
        return name in specset.deployments and specset.deployment(name).spec.target.type == "edge"

    def promote_edge(self, name: str) -> str:
        """Move an edge deployment's `stable` tag onto its canary image, once the canary's gates hold."""
        from mlopsfile.controller.edge_channels import promote_edge

        return promote_edge(self, name)

    def rollback(self, name: str, to_revision: int | None = None, events: Events | None = None) -> str:
        if self.is_edge(name):
            from mlopsfile.controller.edge_channels import rollback_edge

            if to_revision is not None:
                raise PlanError("an edge deployment rolls back to its `previous` image; --to is for online targets")
            return rollback_edge(self, name)
        from mlopsfile.controller.rollback import rollback

        return rollback(self, name, to_revision, events)

    def batch_outputs(self, specset: SpecSet) -> dict[str, str]:
        """Where each batch deployment of the specs publishes (absolute paths)."""
        from mlopsfile.desired import output_path

        return {name: output_path(specset.deployment(name), self.settings.root) for name in specset.deployments
                if specset.deployment(name).spec.target.type == "batch"}

    def status(self) -> list[StatusRow]:
        specset = self.validate()
        outputs = self.batch_outputs(specset)
        observed = self.observe(outputs)
        latest = self.store.latest_applied()
        holds = self.store.holds()
        rows = []
        names = sorted(set(specset.deployments) | {d.name for d in observed.deployments
                                                   if d.managed_by(self.settings.project)})
        rows.extend(self._batch_rows(specset, observed, latest, outputs))
        edges = {n for n in specset.deployments if specset.deployment(n).spec.target.type == "edge"}
        edges |= {e.name for e in observed.edges}
        rows.extend(self._edge_rows(specset, edges, latest, holds))
        for name in names:
            if name in outputs or name in edges:
                continue
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
                rollout=self._rollout_view(name, live),
                held=holds[name].reason if name in holds and in_specs
                and holds[name].spec_digest == specset.deployment_digest(name) else None,
            ))
        return sorted(rows, key=lambda r: r.name)

    def _edge_rows(self, specset: SpecSet, names: set[str], latest: Mapping[str, Any],
                   holds: Mapping[str, Any]) -> list[StatusRow]:
        if not names:
            return []
        bundles = {n: None for n in names}
        live_edges = {e.name: e for e in self._observe_edges(bundles)}
        rows = []
        for name in sorted(names):
            live = live_edges.get(name)
            stable = live.tagged("stable") if live else None
            record = latest.get(name)
            channels = ", ".join(f"{tag} v{image.model_version}" for tag in ("stable", "canary", "previous")
                                 if live is not None and (image := live.tagged(tag)) is not None)
            rows.append(StatusRow(
                name=name, target="edge", in_specs=name in specset.deployments,
                revision=record.revision if record else None,
                model_version=stable.model_version if stable else None, health=None, route=None,
                url=f"{live.repository}:stable" if stable and live else None, synced=None,
                applied_by=record.user if record else None,
                applied_at=record.created_at.isoformat(timespec="seconds") if record else None,
                held=holds[name].reason if name in holds else None, channels=channels or "no images",
            ))
        return rows

    def _batch_rows(self, specset: SpecSet, observed: ObservedState, latest: Mapping[str, Any],
                    outputs: Mapping[str, str]) -> list[StatusRow]:
        """The batch deployments of the specs, and those whose jobs outlived their spec."""
        from mlopsfile.controller.batch_view import batch_view

        rows = []
        now = datetime.now(timezone.utc)
        for name, output in sorted(({b.name: b.output for b in observed.batches} | dict(outputs)).items()):
            live = observed.batch(name)
            target = specset.deployment(name).spec.target if name in specset.deployments else None
            schedule = getattr(target, "schedule", None)
            last = live.last_job if live else None
            failure = self.batch.failure(last) if last is not None and last.status == "FAILED" else None
            view = batch_view(live, output, schedule, getattr(target, "timezone", "UTC"), now, failure)
            record = latest.get(name)
            rows.append(StatusRow(
                name=name, target="batch", in_specs=name in specset.deployments,
                revision=last.revision if last else (record.revision if record else None),
                model_version=view.published_version, health=None, route=None, url=None,
                synced=None, applied_by=record.user if record else None,
                applied_at=record.created_at.isoformat(timespec="seconds") if record else None, batch=view,
            ))
        return rows

    def run_one(self, name: str) -> Plan:
        """A plan that runs one batch deployment now, whatever its state (`mlopsfile run`)."""
        plan = self.plan(forced_runs=[name]).plan
        return plan.model_copy(update={"changes": tuple(c for c in plan.changes if c.name == name and c.batch)})

    def logs(self, name: str) -> tuple[str, str]:
        """(job id, logs) of the newest run of a batch deployment."""
        specset = self.validate()
        live = self.observe(self.batch_outputs(specset)).batch(name)
        if live is None or live.last_job is None:
            raise PlanError(f"batch deployment {name!r} has no runs on the Ray cluster")
        return live.last_job.job_id, self.batch.logs(live.last_job.job_id)

    def run_due(self, events: Events | None = None) -> ApplyReport | None:
        """Run the batch deployments whose output is not current or whose schedule is due.

        What the reconcile loop does on each schedule check; None when another apply holds
        the state lock (the next check tries again).
        """
        try:
            with self.locked("schedule"):
                plan = self.plan().plan
                runs = tuple(c for c in plan.changes if c.action == Action.RUN)
                if not runs:
                    return ApplyReport()
                return self.apply(plan.model_copy(update={"changes": runs}), lock_held=True, events=events)
        except LockError:
            return None

    def _rollout_view(self, name: str, live: ObservedDeployment | None) -> RolloutView | None:
        record = self.store.active_rollout(name) or self.store.last_rollout(name)
        if record is None:
            return None
        stats: dict[str, Any] = {}
        if live is not None and live.traffic is not None:
            try:
                stats = self.drivers["online"].traffic_stats(live).get("arms", {})  # type: ignore[attr-defined]
            except DriverError:
                stats = {}
        return rollout_view(record, live, stats, datetime.now(timezone.utc))

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
    rollout: RolloutView | None = None
    held: str | None = None
    batch: BatchView | None = None  # why the live state is kept apart from the specs (abort, rollback)
    channels: str | None = None  # edge: which image each tag points at


def _wait_for_request(store: StateStore, record: RolloutRecord, timeout_s: float = 120.0) -> RolloutRecord:
    """Another process drives this rollout: wait until it has acted on the request."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fresh = store.rollout(record.id)
        assert fresh is not None
        if fresh.requested is None:
            return fresh
        time.sleep(0.5)
    raise DriverError(f"the loop driving {record.name!r} has not acted on the request within {timeout_s:.0f}s; "
                      "it stays queued", temporary=True)


def plan_id(plan: Plan) -> str:
    return canonical_digest(plan.model_dump(mode="json"))[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
