"""Where ingress replicas pool their per-arm counters, so one read sees them all.

Each application with a traffic table has one small detached actor, named after the
application, holding the latest cumulative snapshot of every ingress replica. Replicas
publish in the background at most every ``PUBLISH_INTERVAL_S``, fire-and-forget: a
request never waits on it. A replica that is gone leaves its last snapshot behind, so
the sums only grow and the control plane can take differences between two reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray import serve

from runtime.traffic import ArmStats, merge_snapshots

NAMESPACE = "mlopsfile"
PUBLISH_INTERVAL_S = 0.25


def stats_actor_name(app_name: str) -> str:
    return f"traffic-stats:{app_name}"


@ray.remote(num_cpus=0, max_restarts=-1)
class TrafficStats:
    def __init__(self) -> None:
        self.snapshots: dict[str, dict[str, Any]] = {}

    def put(self, replica: str, snapshot: dict[str, Any]) -> None:
        self.snapshots[replica] = snapshot

    def snapshots_list(self) -> list[dict[str, Any]]:
        return list(self.snapshots.values())


class StatsPublisher:
    """Owned by one ingress replica: pushes its counters when they changed."""

    def __init__(self, app_name: str) -> None:
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.actor = TrafficStats.options(  # type: ignore[attr-defined]
            name=stats_actor_name(app_name), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        ).remote()
        self.dirty = False
        self.task: asyncio.Task[None] | None = None
        self.latest: dict[str, ArmStats] = {}

    async def ready(self) -> None:
        await self.actor.snapshots_list.remote()

    def changed(self, stats: dict[str, ArmStats]) -> None:
        self.latest = stats
        self.dirty = True
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._publish_soon())

    async def _publish_soon(self) -> None:
        await asyncio.sleep(PUBLISH_INTERVAL_S)
        self.dirty = False
        self.actor.put.remote(self.replica, _snapshot(self.latest, self.replica))

    async def merged(self, own: dict[str, ArmStats]) -> dict[str, Any]:
        snapshots = await self.actor.snapshots_list.remote()
        # This replica's own counters are fresher than what it last published.
        others = [s for s in snapshots if s.get("__replica__") != self.replica]
        merged = merge_snapshots([_strip(s) for s in others] + [_strip(_snapshot(own, self.replica))])
        return {version: stats.to_dict() for version, stats in merged.items()}


def _snapshot(stats: dict[str, ArmStats], replica: str) -> dict[str, Any]:
    return {"__replica__": replica, **{version: s.to_dict() for version, s in stats.items()}}


def _strip(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in snapshot.items() if k != "__replica__"}
