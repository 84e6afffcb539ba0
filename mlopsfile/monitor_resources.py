"""Drift monitors as the planner sees them: what the specs want and what runs on Ray.

A monitor is one detached Ray actor (``drift-monitor:<name>``) holding the detector built
from the reference data, fed by the ingress of its deployment through a tap. The actor
runs exactly the ``config`` of its DesiredMonitor; its digest names that config, so a
live actor with another digest is replaced.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mlopsfile.values import Value


class DriftTap(Value):
    """What the ingress of a deployment hands one monitor: a share of its requests."""

    monitor: str = Field(description="Name of the Monitor document.")
    sample: float = Field(description="Share of requests handed over, in (0, 1].")
    target: Literal["inputs", "predictions"] = Field(description="Hand over the request, or also its predictions.")


class PreparedMonitor(Value):
    """What planning learns from the reference data and the model signature."""

    features: tuple[str, ...] = Field(description="Columns the detector tests, in order.")
    categorical: tuple[int, ...] = Field(default=(), description="Indices of categorical features.")
    reference_path: str = Field(description="Local file the reference rows are read from at apply.")
    reference_sha256: str = Field(description="sha256 of the reference file: a new file rebuilds the detector.")
    reference_rows: int = Field(description="Rows in the reference data.")


class DesiredMonitor(Value):
    """A Monitor as the specs want it: the actor's whole configuration."""

    name: str
    deployment: str = Field(description="The Deployment whose traffic the monitor tests.")
    deployment_target: Literal["online", "batch"] = "online"
    spec_digest: str = Field(description="Digest of the monitor document.")
    source: str = Field(description="file:line:column of the document.")
    reference: str = Field(description="The reference as written in the spec.")
    prepared: PreparedMonitor
    config: dict[str, Any] = Field(description="What the monitor actor runs (detector, window, actions, cooldown).")
    digest: str = Field(description="Digest of config and reference: what a live actor is compared by.")

    @property
    def actions(self) -> list[dict[str, Any]]:
        return list(self.config.get("actions") or [])


class ObservedMonitor(Value):
    """A monitor actor found on Ray."""

    name: str
    project: str
    digest: str
    state: str = Field(description="Ray's actor state: ALIVE, RESTARTING, PENDING_CREATION, ...")
