"""Shared fixtures of the unit tests: spec files on disk and ready-made planner inputs."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlopsfile.resources import (
    DesiredDeployment,
    DesiredState,
    Health,
    ObservedDeployment,
    ObservedState,
    OnlineServing,
    Ownership,
    ResolvedModel,
)

PROJECT = "demo"

WriteSpecs = Callable[[dict[str, str]], Path]

# The Model most spec tests start from (lines 1-6 of their files).
MODEL = """\
apiVersion: mlopsfile/v1
kind: Model
metadata:
  name: iris
spec:
  uri: models:/iris@champion
"""


@pytest.fixture
def write_specs(tmp_path: Path) -> WriteSpecs:
    """Write ``{relative path: yaml text}`` under tmp_path/specs and return that directory.

    Texts are dedented so tests can keep specs indented with the code; line numbers in
    assertions count from the first line of the dedented text.
    """

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / "specs"
        root.mkdir(exist_ok=True)
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return root

    return write


@dataclass(frozen=True)
class Factory:
    """Builds planner inputs that differ from a known-good baseline only where a test says so."""

    project: str = PROJECT

    def model(self, name: str = "iris", version: str = "1", alias: str | None = "champion") -> ResolvedModel:
        uri = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
        return ResolvedModel(
            name=name, uri=uri, registered_name=name, version=version, alias=alias,
            pinned_uri=f"models:/{name}/{version}", digest=f"sha256:{name}-v{version}", run_id=f"run-{name}-{version}",
        )

    def serving(self, name: str = "iris", model: ResolvedModel | None = None, **overrides: Any) -> OnlineServing:
        model = model or self.model(name)
        values: dict[str, Any] = {
            "route": f"/{name}", "model_uri": model.pinned_uri, "model_version": model.version,
            "model_digest": model.digest, "runtime_digest": "runtime-1", "num_cpus": 1.0, "num_gpus": 0.0,
            "memory": None, "custom_resources": {}, "replicas": 1, "autoscaling": None, "max_batch_size": None,
            "batch_wait_timeout_s": None, "max_ongoing_requests": 5,
        }
        values.update(overrides)
        return OnlineServing(**values)

    def desired(self, name: str = "iris", *, version: str = "1", spec_digest: str | None = None,
                labels: dict[str, str] | None = None, **serving: Any) -> DesiredDeployment:
        model = self.model(name, version)
        return DesiredDeployment(
            name=name, spec_digest=spec_digest or f"spec-{name}-1", source=f"specs/{name}.yaml:8:1",
            model=model, serving=self.serving(name, model, **serving), labels=labels or {},
        )

    def state(self, *deployments: DesiredDeployment, specs_digest: str = "specs-1") -> DesiredState:
        models = {d.model.name: d.model for d in deployments}
        return DesiredState(project=self.project, specs_digest=specs_digest, deployments=deployments,
                            models=tuple(models[n] for n in sorted(models)))

    def live(self, want: DesiredDeployment, *, project: str | None = None, revision: int = 1,
             owned: bool = True, **serving: Any) -> ObservedDeployment:
        """What apply leaves running for ``want``, changed by ``serving`` overrides."""
        ownership = Ownership(project=project or self.project, resource=want.name, spec_digest=want.spec_digest,
                              revision=revision) if owned else None
        return ObservedDeployment(
            name=want.name, ownership=ownership, serving=want.serving.model_copy(update=serving),
            health=Health(status="RUNNING", running_replicas=1, target_replicas=1),
        )

    def observed(self, *deployments: ObservedDeployment) -> ObservedState:
        return ObservedState(deployments=deployments)


@pytest.fixture
def make() -> Factory:
    return Factory()
