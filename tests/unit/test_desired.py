"""SpecSet → DesiredState through a model resolver; unresolvable models are located spec errors."""

from __future__ import annotations

import pytest

from mlopsfile.desired import build_desired
from mlopsfile.errors import ResolveError, SpecErrors
from mlopsfile.resources import ResolvedModel
from mlopsfile.spec.loader import load_specs
from mlopsfile.spec.specset import SpecSet
from tests.unit.conftest import MODEL, WriteSpecs

SPECS = MODEL + """\
---
apiVersion: mlopsfile/v1
kind: Model
metadata:
  name: rose
spec:
  uri: models:/rose/7
---
apiVersion: mlopsfile/v1
kind: Deployment
metadata:
  name: iris-api
  labels: {team: ml}
  annotations: {note: first}
spec:
  model: iris
  target:
    type: online
    replicas: 2
    resources: {num_cpus: 0.5, memory: 512Mi, custom: {tpu: 1}}
    batching: {max_batch_size: 32, batch_wait_timeout_s: 0.005}
---
apiVersion: mlopsfile/v1
kind: Deployment
metadata:
  name: rose-api
spec:
  model: rose
  target:
    type: online
    route: /flowers/rose
    autoscaling: {min_replicas: 1, max_replicas: 4}
"""


class InMemoryResolver:
    """A registry of uri → (version, digest); unknown URIs fail the way the MLflow one does."""

    def __init__(self, registry: dict[str, tuple[str, str]]) -> None:
        self.registry = registry
        self.calls: list[tuple[str, str]] = []

    def resolve(self, name: str, uri: str) -> ResolvedModel:
        self.calls.append((name, uri))
        if uri not in self.registry:
            raise ResolveError(f"model {uri} not found in the registry")
        version, digest = self.registry[uri]
        registered = uri.removeprefix("models:/").split("@")[0].split("/")[0]
        alias = uri.split("@")[1] if "@" in uri else None
        return ResolvedModel(name=name, uri=uri, registered_name=registered, version=version, alias=alias,
                             pinned_uri=f"models:/{registered}/{version}", digest=digest)


REGISTRY = {"models:/iris@champion": ("3", "sha256:iris3"), "models:/rose/7": ("7", "sha256:rose7")}


def specset_of(write_specs: WriteSpecs, text: str = SPECS) -> SpecSet:
    root = write_specs({"stack.yaml": text})
    return load_specs(root, root.parent)


def test_build_desired_pins_models_and_shapes_serving(write_specs: WriteSpecs) -> None:
    resolver = InMemoryResolver(REGISTRY)
    desired = build_desired(specset_of(write_specs), resolver, "demo", "runtime-abc")

    assert desired.project == "demo"
    assert [m.name for m in desired.models] == ["iris", "rose"]
    assert sorted(resolver.calls) == [("iris", "models:/iris@champion"), ("rose", "models:/rose/7")]
    iris, rose = desired.deployments
    assert (iris.name, rose.name) == ("iris-api", "rose-api")
    assert iris.source == "specs/stack.yaml:15:1"
    assert iris.labels == {"team": "ml"}
    assert iris.model.alias == "champion"
    serving = iris.serving
    assert (serving.route, serving.model_uri, serving.model_version, serving.model_digest) == (
        "/iris-api", "models:/iris/3", "3", "sha256:iris3")
    assert serving.runtime_digest == "runtime-abc"
    assert (serving.num_cpus, serving.memory, serving.custom_resources) == (0.5, 512 * 2**20, {"tpu": 1.0})
    assert (serving.replicas, serving.autoscaling) == (2, None)
    assert (serving.max_batch_size, serving.batch_wait_timeout_s) == (32, 0.005)

    assert rose.serving.route == "/flowers/rose"
    assert rose.serving.replicas is None
    assert rose.serving.autoscaling is not None and rose.serving.autoscaling["max_replicas"] == 4
    assert (rose.serving.max_batch_size, rose.serving.memory) == (None, None)


def test_replicas_default_to_one(write_specs: WriteSpecs) -> None:
    text = SPECS.replace("    replicas: 2\n", "")
    desired = build_desired(specset_of(write_specs, text), InMemoryResolver(REGISTRY), "demo", "r")
    assert desired.deployment("iris-api").serving.replicas == 1


def test_an_unresolvable_model_is_a_spec_error_at_its_uri(write_specs: WriteSpecs) -> None:
    specset = specset_of(write_specs)
    with pytest.raises(SpecErrors) as caught:
        build_desired(specset, InMemoryResolver({"models:/rose/7": ("7", "d")}), "demo", "r")
    assert [e.line() for e in caught.value.errors] == [
        "specs/stack.yaml:6:8: spec.uri: model models:/iris@champion not found in the registry",
    ]


def test_every_unresolvable_model_is_reported(write_specs: WriteSpecs) -> None:
    with pytest.raises(SpecErrors) as caught:
        build_desired(specset_of(write_specs), InMemoryResolver({}), "demo", "r")
    assert [e.line() for e in caught.value.errors] == [
        "specs/stack.yaml:6:8: spec.uri: model models:/iris@champion not found in the registry",
        "specs/stack.yaml:13:8: spec.uri: model models:/rose/7 not found in the registry",
    ]


def test_spec_digest_follows_labels_but_not_annotations(write_specs: WriteSpecs) -> None:
    def digest(text: str) -> str:
        specset = specset_of(write_specs, text)
        return build_desired(specset, InMemoryResolver(REGISTRY), "demo", "r").deployment("iris-api").spec_digest

    base = digest(SPECS)
    assert digest(SPECS) == base
    assert digest(SPECS.replace("note: first", "note: second")) == base
    assert digest(SPECS.replace("team: ml", "team: ds")) != base
    # The model document is part of what a deployment depends on.
    assert digest(SPECS.replace("  name: iris\nspec:\n", "  name: iris\n  labels: {x: y}\nspec:\n")) != base


def test_runtime_digest_does_not_change_the_spec_digest(write_specs: WriteSpecs) -> None:
    specset = specset_of(write_specs)
    first = build_desired(specset, InMemoryResolver(REGISTRY), "demo", "runtime-1")
    second = build_desired(specset, InMemoryResolver(REGISTRY), "demo", "runtime-2")
    assert first.deployment("iris-api").spec_digest == second.deployment("iris-api").spec_digest
    assert first.deployment("iris-api").serving.runtime_digest != second.deployment("iris-api").serving.runtime_digest
