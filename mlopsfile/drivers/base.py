"""The one interface every target driver implements."""

from __future__ import annotations

from typing import Protocol

from mlopsfile.resources import DesiredDeployment, Health, ObservedDeployment, Ownership


class DeploymentDriver(Protocol):
    """Observe and change the deployments of one target type on a live system."""

    target: str

    def observe(self) -> list[ObservedDeployment]:
        """Everything of this target type that is live, mlopsfile's or not."""
        ...

    def create(self, desired: DesiredDeployment, ownership: Ownership) -> None: ...

    def update(self, desired: DesiredDeployment, ownership: Ownership) -> None:
        """Change in place: running replicas keep serving."""
        ...

    def replace(self, desired: DesiredDeployment, ownership: Ownership) -> None:
        """New replicas become healthy before the old ones go."""
        ...

    def restore(self, previous: ObservedDeployment) -> None:
        """Put back what was live before a failed change."""
        ...

    def delete(self, name: str) -> None: ...

    def health(self, name: str) -> Health | None: ...
