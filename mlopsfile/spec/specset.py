"""A validated set of documents: the desired state before model resolution."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from mlopsfile.spec.deployment import DeploymentDocument
from mlopsfile.spec.documents import LocatedDocument
from mlopsfile.spec.model import ModelDocument
from mlopsfile.spec.monitor import MonitorDocument


def canonical_digest(value: object) -> str:
    """sha256 of a value's canonical JSON: equal content, equal digest."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class SpecSet:
    """Documents by kind and name; the first of a duplicated name wins (the rest are errors)."""

    models: dict[str, LocatedDocument] = field(default_factory=dict)
    deployments: dict[str, LocatedDocument] = field(default_factory=dict)
    monitors: dict[str, LocatedDocument] = field(default_factory=dict)

    @classmethod
    def from_documents(cls, documents: list[LocatedDocument]) -> SpecSet:
        specset = cls()
        table = {"Model": specset.models, "Deployment": specset.deployments, "Monitor": specset.monitors}
        for located in documents:
            table[located.kind].setdefault(located.name, located)
        return specset

    def model(self, name: str) -> ModelDocument:
        return self.models[name].document  # type: ignore[return-value]

    def deployment(self, name: str) -> DeploymentDocument:
        return self.deployments[name].document  # type: ignore[return-value]

    def monitor(self, name: str) -> MonitorDocument:
        return self.monitors[name].document  # type: ignore[return-value]

    def deployment_digest(self, name: str) -> str:
        """Digest of what a deployment's behaviour depends on in the specs: itself and its model."""
        deployment = self.deployment(name)
        model = self.model(deployment.spec.model)
        parts = {
            "deployment": deployment.model_dump(mode="json", exclude={"metadata": {"annotations"}, "lifecycle": True}),
            "model": model.model_dump(mode="json", exclude={"metadata": {"annotations"}}),
        }
        candidate = getattr(deployment.spec.rollout, "candidate", None)
        if candidate is not None and candidate in self.models:
            parts["candidate"] = self.model(candidate).model_dump(mode="json", exclude={"metadata": {"annotations"}})
        return canonical_digest(parts)

    def digest(self) -> str:
        """Digest of the whole desired state as written in the specs."""
        return canonical_digest({
            "models": {name: self.model(name).model_dump(mode="json") for name in sorted(self.models)},
            "deployments": {name: self.deployment(name).model_dump(mode="json") for name in sorted(self.deployments)},
            "monitors": {name: self.monitor(name).model_dump(mode="json") for name in sorted(self.monitors)},
        })
