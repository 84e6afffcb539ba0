"""The one interface every target driver implements."""

from __future__ import annotations

from typing import Any, Protocol

from mlopsfile.resources import DesiredDeployment, Health, ObservedDeployment, OnlineServing, Ownership, Traffic


class DeploymentDriver(Protocol):
    """Observe and change the deployments of one target type on a live system."""

    target: str

    def observe(self) -> list[ObservedDeployment]:
        """Everything of this target type that is live, mlopsfile's or not."""
        ...

    def create(self, desired: DesiredDeployment, ownership: Ownership) -> None: ...

    def update(self, desired: DesiredDeployment, ownership: Ownership, traffic: Traffic | None = None) -> None:
        """Change in place: running replicas keep serving."""
        ...

    def replace(self, desired: DesiredDeployment, ownership: Ownership, traffic: Traffic | None = None) -> None:
        """New replicas become healthy before the old ones go."""
        ...

    def restore(self, previous: ObservedDeployment) -> None:
        """Put back what was live before a failed change."""
        ...

    def delete(self, name: str) -> None: ...

    def health(self, name: str) -> Health | None: ...


class RolloutDriver(Protocol):
    """What the rollout controller needs from the online driver."""

    def observe_one(self, name: str) -> ObservedDeployment | None: ...

    def deploy_candidate(self, name: str, serving: OnlineServing, ownership: Ownership,
                         preview_route: str | None) -> None: ...

    def set_traffic(self, name: str, serving: OnlineServing, ownership: Ownership, traffic: Traffic) -> None: ...

    def delete_candidate(self, name: str) -> None: ...

    def replace_serving(self, name: str, serving: OnlineServing, ownership: Ownership) -> None:
        """Deploy ``serving`` as the stable model with no traffic table (new replicas first)."""
        ...

    def traffic_stats(self, observed: ObservedDeployment) -> dict[str, Any]: ...

    def smoke(self, route: str, body: dict[str, Any] | None, count: int) -> list[tuple[int, float, str]]:
        """Send ``count`` requests to ``route``; (status, milliseconds, error text) of each."""
        ...
