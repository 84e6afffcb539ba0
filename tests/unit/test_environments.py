"""Environment overlays through the real loader: three effective plans from one tree, patch
semantics, error positions in base and overlay files, unknown environments."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlopsfile.cli import app
from mlopsfile.config import load_settings
from mlopsfile.desired import build_desired
from mlopsfile.errors import ConfigError, SpecErrors
from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.types import Action, Plan
from mlopsfile.resources import ObservedDeployment, ObservedState, Ownership
from mlopsfile.spec.effective import effective_yaml
from mlopsfile.spec.loader import load_specs
from mlopsfile.spec.overlay import merge_documents
from mlopsfile.spec.yaml_source import read_yaml_documents
from tests.unit.conftest import MODEL
from tests.unit.rollout_fakes import RUNNING
from tests.unit.test_desired import InMemoryResolver

BASE = MODEL + """\
---
apiVersion: mlopsfile/v1
kind: Deployment
metadata:
  name: iris
  labels: {team: ml, tier: web}
spec:
  model: iris
  target:
    type: online
    route: /iris
    replicas: 1
    batching: {max_batch_size: 8}
"""

STAGING = """\
kind: Deployment
metadata: {name: iris}
spec:
  target:
    route: /staging/iris
    replicas: 2
"""

PROD = """\
kind: Model
metadata: {name: iris}
spec: {uri: "models:/iris@prod"}
---
kind: Deployment
metadata:
  name: iris
  labels: {tier: critical}
spec:
  target:
    replicas: 4
    batching: null
"""

REGISTRY = {"models:/iris@champion": ("3", "sha256:iris3"), "models:/iris@prod": ("2", "sha256:iris2")}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``{path: yaml}`` under ``root``; return its specs/ directory."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root / "specs"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path, {"specs/iris.yaml": BASE, "environments/staging/iris.yaml": STAGING,
                                 "environments/prod/iris.yaml": PROD})


def plan_for(specs: Path, env: str | None, observed: ObservedState | None = None) -> Plan:
    settings = load_settings(specs.parent, specs, env)
    specset = load_specs(specs, specs.parent, env)
    desired = build_desired(specset, InMemoryResolver(REGISTRY), settings.project, "runtime-1")
    return make_plan(desired, observed or ObservedState(), {}, "2024-05-01T12:00:00+00:00")


def serving_of(plan: Plan) -> dict[str, object]:
    (change,) = plan.changes
    assert change.desired is not None
    return change.desired.serving.model_dump(include={"route", "replicas", "model_version", "max_batch_size"})


def test_one_tree_gives_three_different_effective_plans(tree: Path) -> None:
    plans = {env: plan_for(tree, env) for env in (None, "staging", "prod")}

    assert serving_of(plans[None]) == {"route": "/iris", "replicas": 1, "model_version": "3", "max_batch_size": 8}
    assert serving_of(plans["staging"]) == {"route": "/staging/iris", "replicas": 2, "model_version": "3",
                                            "max_batch_size": 8}
    assert serving_of(plans["prod"]) == {"route": "/iris", "replicas": 4, "model_version": "2",
                                         "max_batch_size": None}
    # Each environment owns what it creates under a name of its own.
    assert [p.project for p in plans.values()] == [tree.parent.name.lower(), f"{tree.parent.name.lower()}-staging",
                                                   f"{tree.parent.name.lower()}-prod"]


def test_plan_env_prod_diffs_the_effective_spec_against_what_runs(tree: Path) -> None:
    """prod's deployment as the base made it is live: the plan shows only what prod's overlay changes."""
    base = plan_for(tree, None).changes[0].desired
    assert base is not None
    project = load_settings(tree.parent, tree, "prod").project
    live = ObservedDeployment(name="iris", serving=base.serving, health=RUNNING,
                              ownership=Ownership(project=project, resource="deployment/iris", revision=1,
                                                  spec_digest="old"))
    (change,) = plan_for(tree, "prod", ObservedState(deployments=(live,))).changes
    assert change.action == Action.REPLACE
    assert {d.field: (d.old, d.new) for d in change.diffs} == {
        "replicas": (1, 4), "model_version": ("3", "2"), "model_uri": ("models:/iris/3", "models:/iris/2"),
        "model_digest": ("sha256:iris3", "sha256:iris2"), "max_batch_size": (8, None),
        "batch_wait_timeout_s": (base.serving.batch_wait_timeout_s, None)}


def test_mappings_merge_lists_and_scalars_replace_and_null_removes() -> None:
    (base,), _ = read_yaml_documents(textwrap.dedent("""\
        kind: Monitor
        metadata: {name: m, labels: {a: "1", b: "2"}}
        spec:
          features: [x, y, z]
          window: {rows: 100}
          sample: 0.5
          cooldown: 1h
        """), "specs/m.yaml")
    (patch,), _ = read_yaml_documents(textwrap.dedent("""\
        kind: Monitor
        metadata: {name: m, labels: {b: "3"}}
        spec:
          features: [w]
          sample: 0.1
          cooldown: null
          detector: {kind: mmd}
        """), "environments/prod/m.yaml")

    merged = merge_documents(base, patch)

    assert merged.data == {"kind": "Monitor", "metadata": {"name": "m", "labels": {"a": "1", "b": "3"}},
                           "spec": {"features": ["w"], "window": {"rows": 100}, "sample": 0.1,
                                    "detector": {"kind": "mmd"}}}
    where = {path: str(merged.positions.value(path)) for path in [
        ("metadata", "labels", "a"), ("metadata", "labels", "b"), ("spec", "features", 0), ("spec", "window", "rows"),
        ("spec", "detector", "kind"), ("spec", "cooldown"), ("spec", "features", 2)]}
    assert where == {
        ("metadata", "labels", "a"): "specs/m.yaml:2:33",
        ("metadata", "labels", "b"): "environments/prod/m.yaml:2:33",
        ("spec", "features", 0): "environments/prod/m.yaml:4:14",
        ("spec", "window", "rows"): "specs/m.yaml:5:18",
        ("spec", "detector", "kind"): "environments/prod/m.yaml:7:20",
        # removed and replaced values leave nothing behind: the nearest survivor is named
        ("spec", "cooldown"): "specs/m.yaml:4:3",
        ("spec", "features", 2): "environments/prod/m.yaml:4:13",
    }


def spec_error_lines(specs: Path, env: str) -> list[str]:
    with pytest.raises(SpecErrors) as caught:
        load_specs(specs, specs.parent, env)
    return [error.line() for error in caught.value.errors]


def test_an_error_names_the_file_its_field_came_from(tmp_path: Path) -> None:
    bad_base = BASE.replace("replicas: 1", "replicas: -1").replace("max_batch_size: 8", "max_batch_size: 8, nope: 1")
    specs = write_tree(tmp_path, {"specs/iris.yaml": bad_base, "environments/qa/iris.yaml": """\
        kind: Deployment
        metadata: {name: iris}
        spec:
          target:
            replicas: many
            route: no-slash
        """})

    lines = spec_error_lines(specs, "qa")

    assert any(line.startswith("environments/qa/iris.yaml:5:15: spec.target.replicas:") for line in lines), lines
    assert any(line.startswith("environments/qa/iris.yaml:6:12: spec.target.route:") for line in lines), lines
    assert any(line.startswith("specs/iris.yaml:19:35: spec.target.batching.nope: unknown field") for line in lines), lines
    # the base's bad replicas is replaced by the overlay's, so only the overlay's is reported
    assert not any("specs/iris.yaml" in line and "replicas" in line for line in lines), lines


def test_a_new_resource_in_an_overlay_must_be_complete(tmp_path: Path) -> None:
    whole = BASE.split("---\n")[1].replace("name: iris\n  labels", "name: iris-shadow\n  labels").replace(
        "route: /iris", "route: /shadow")
    specs = write_tree(tmp_path, {"specs/iris.yaml": BASE, "environments/dev/extra.yaml": whole,
                                  "environments/broken/extra.yaml": "kind: Deployment\nmetadata: {name: irs}\n"
                                                                    "spec: {target: {replicas: 2}}\n"})

    assert sorted(load_specs(specs, specs.parent, "dev").deployments) == ["iris", "iris-shadow"]
    lines = spec_error_lines(specs, "broken")
    assert lines[0] == ("environments/broken/extra.yaml:1:1: Deployment 'irs' matches no document of the base "
                        "specs, so it is a new resource and must be complete")
    assert any("apiVersion" in line and line.startswith("environments/broken/extra.yaml") for line in lines)


def test_an_unknown_environment_is_one_line_naming_the_known_ones(tree: Path) -> None:
    with pytest.raises(ConfigError, match=r"^unknown environment 'qa'; known: prod, staging$"):
        load_settings(tree.parent, tree, "qa")
    result = CliRunner().invoke(app, ["-C", str(tree.parent), "validate", "--env", "qa"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown environment 'qa'; known: prod, staging"


def test_each_environment_has_its_own_state_store(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPSFILE_STATE_URL", raising=False)
    base, prod = load_settings(tree.parent, tree), load_settings(tree.parent, tree, "prod")
    assert base.state_url.endswith("/.mlopsfile/state.db")
    assert prod.state_url.endswith("/.mlopsfile/envs/prod/state.db")
    assert (prod.env, base.env) == ("prod", None)


def test_render_shows_the_merged_documents_and_their_sources(tree: Path) -> None:
    text = effective_yaml(load_specs(tree, tree.parent, "prod"))

    documents = list(yaml.safe_load_all(text))
    assert documents[1]["metadata"]["labels"] == {"team": "ml", "tier": "critical"}
    assert documents[1]["spec"]["target"] == {"type": "online", "route": "/iris", "replicas": 4}
    assert "# specs/iris.yaml:8:1, patched by environments/prod/iris.yaml" in text.splitlines()
    result = CliRunner().invoke(app, ["-C", str(tree.parent), "render", "--env", "staging"])
    assert result.exit_code == 0, result.output
    assert "route: /staging/iris" in result.output
