"""Edge deployments on a real Docker engine, from a real MLflow registry: ONNX images and their channels."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlopsfile.drivers.edge_bundle import verify_bundle
from runtime.edge.predictor import EdgeModel
from tests.integration.conftest import ProjectDir, Registry, deployment_head
from tests.integration.edge_models import register_regressor, register_torch

pytestmark = pytest.mark.integration


@pytest.fixture
def edge_dir(project_dir: ProjectDir, docker_engine: Any) -> Iterator[ProjectDir]:
    """The test's project, building on the session's Docker engine."""
    settings = project_dir.root / "mlopsfile.yaml"
    settings.write_text(settings.read_text() + f'docker:\n  host: "{docker_engine.host}"\n')
    yield project_dir


def edge_spec(name: str, model: str, uri: str, base_image: str, extra: str = "", rollout: str = "direct") -> str:
    return deployment_head(name, model, uri) + f"""\
    type: edge
    base_image: {base_image}
{extra}  rollout: {{strategy: {rollout}}}
"""


def images(engine: Any, project: str) -> list[Any]:
    return engine.client().images.list(filters={"label": [f"io.mlopsfile.owner={project}"]})


def tag_versions(engine: Any, repository: str) -> dict[str, str]:
    """Channel tag -> model version of the image it points at."""
    found = {}
    for tag in ("stable", "canary", "previous"):
        try:
            found[tag] = engine.client().images.get(f"{repository}:{tag}").labels["io.mlopsfile.model-version"]
        except Exception:  # docker.errors.ImageNotFound: the tag is not there
            continue
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_and_ask(engine: Any, image: str, body: bytes) -> tuple[httpx.Response, dict[str, Any]]:
    """Run the image on loopback, send one scoring request; the answer and /metadata."""
    port = _free_port()
    container = engine.client().containers.run(image, command=["--host", "127.0.0.1", "--port", str(port)],
                                               network_mode="host", detach=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            container.reload()
            assert container.status != "exited", container.logs().decode()
            assert time.monotonic() < deadline, container.logs().decode()
            time.sleep(0.2)
        answer = httpx.post(f"{url}/predict", content=body, headers={"content-type": "application/json"}, timeout=30)
        bad = httpx.post(f"{url}/predict", content=b'{"dataframe_records": [{"nope": 1}]}', timeout=30)
        assert bad.status_code == 400, bad.text
        return answer, httpx.get(f"{url}/metadata", timeout=10).json()
    finally:
        container.remove(force=True)


def prepared_dir(project_dir: ProjectDir, name: str) -> Path:
    want = project_dir.project().desired().edge(name)
    assert want is not None
    return Path(want.edge_dir)


def assert_serves_the_onnx_reference(engine: Any, project_dir: ProjectDir, name: str, image: str,
                                     version: str) -> None:
    edge = prepared_dir(project_dir, name)
    body = (edge / "sample.json").read_bytes()
    answer, metadata = serve_and_ask(engine, image, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == EdgeModel(edge).predict(json.loads(body))
    assert metadata["model_version"] == version, metadata


def test_sklearn_edge_image_channels_bundle_and_push(edge_dir: ProjectDir, registry: Registry, docker_engine: Any,
                                                     edge_base_image: str, local_registry: str) -> None:
    name, model = edge_dir.name, f"m{edge_dir.name}"
    repository = f"{name}-edge"
    v1 = registry.register(model)
    extra = (f"    image: {repository}\n    registry: {local_registry}\n    bundle: dist\n"
             f"    smoke: {{requests: 3}}\n")
    edge_dir.write_spec("edge.yaml", edge_spec(name, model, f"models:/{model}@champion", edge_base_image, extra,
                                               rollout="canary"))
    applied = edge_dir.cli("apply", "--auto-approve", check=True)
    assert "converted to ONNX" in applied.stdout, applied.stdout
    assert tag_versions(docker_engine, repository) == {"stable": v1, "canary": v1}
    assert_serves_the_onnx_reference(docker_engine, edge_dir, name, f"{repository}:stable", v1)

    # Nothing changed: nothing is built, and the plan says so.
    built = {image.id for image in images(docker_engine, name)}
    again = edge_dir.cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {image.id for image in images(docker_engine, name)} == built

    # Pushed to the registry with its version and channel tags.
    tags = httpx.get(f"http://{local_registry}/v2/{repository}/tags/list", timeout=10).json()["tags"]
    assert {v1, "stable", "canary"} <= set(tags), tags

    # The bundle verifies, and the same inputs give the same bytes.
    bundle = next((edge_dir.root / "dist").glob(f"{name}-{v1}-*.tar.gz"))
    assert verify_bundle(bundle) == []
    first = hashlib.sha256(bundle.read_bytes()).hexdigest()
    bundle.unlink()
    edge_dir.cli("apply", "--auto-approve", check=True)
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == first
    assert {image.id for image in images(docker_engine, name)} == built

    # A new version: a new image, only `canary` moves.
    v2 = registry.register(model, regularisation=0.05)
    rolled = edge_dir.cli("apply", "--auto-approve", check=True)
    assert "through the canary channel" in rolled.stdout, rolled.stdout
    assert tag_versions(docker_engine, repository) == {"stable": v1, "canary": v2}
    assert_serves_the_onnx_reference(docker_engine, edge_dir, name, f"{repository}:canary", v2)

    # Promotion (after its smoke run) moves `stable`; rollback moves it back; the old image is kept.
    promoted = edge_dir.cli("promote", name, check=True)
    assert f"version {v2} (build " in promoted.stdout and "is stable" in promoted.stdout, promoted.stdout
    assert tag_versions(docker_engine, repository) == {"stable": v2, "canary": v2, "previous": v1}
    rolled_back = edge_dir.cli("rollback", name, check=True)
    assert f"stable is version {v1} (build " in rolled_back.stdout, rolled_back.stdout
    assert tag_versions(docker_engine, repository) == {"stable": v1, "canary": v2, "previous": v2}
    assert_serves_the_onnx_reference(docker_engine, edge_dir, name, f"{repository}:stable", v1)
    status = edge_dir.cli("status", "--format", "json", check=True)
    assert '"target": "edge"' in status.stdout


def test_a_diverging_model_fails_parity_and_builds_nothing(edge_dir: ProjectDir, registry: Registry,
                                                           docker_engine: Any, edge_base_image: str) -> None:
    name, model = edge_dir.name, f"m{edge_dir.name}"
    version = register_regressor(registry, model)
    edge_dir.write_spec("edge.yaml", edge_spec(name, model, f"models:/{model}/{version}", edge_base_image,
                                               "    parity: {atol: 0, rtol: 0}\n"))
    result = edge_dir.cli("apply", "--auto-approve")
    assert result.returncode != 0
    assert "specs/edge.yaml:" in result.stderr and "parity check failed" in result.stderr, result.stderr
    assert "worst rows" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert images(docker_engine, name) == []
    # Within the default tolerance the same model converts, passes and would be built.
    edge_dir.write_spec("edge.yaml", edge_spec(name, model, f"models:/{model}/{version}", edge_base_image))
    planned = edge_dir.cli("plan", "--detailed-exitcode")
    assert planned.returncode == 2 and "parity passed" in planned.stdout, planned.stdout + planned.stderr


def test_a_model_that_cannot_be_converted_fails_at_plan_time(edge_dir: ProjectDir, registry: Registry,
                                                              docker_engine: Any) -> None:
    name, model = edge_dir.name, f"m{edge_dir.name}"
    version = registry.register_from_code(model, "broken_model")
    edge_dir.write_spec("edge.yaml", edge_spec(name, model, f"models:/{model}/{version}", "unused:base"))
    result = edge_dir.cli("plan")
    assert result.returncode != 0
    assert "cannot run on the edge" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert images(docker_engine, name) == []


def test_a_pytorch_model_runs_in_its_edge_image_and_moves_through_the_channels(
        edge_dir: ProjectDir, registry: Registry, docker_engine: Any, edge_base_image: str) -> None:
    name, model = edge_dir.name, f"m{edge_dir.name}"
    v1 = register_torch(registry, model)
    edge_dir.write_spec("edge.yaml", edge_spec(name, model, f"models:/{model}@champion", edge_base_image,
                                               rollout="canary"))
    edge_dir.cli("apply", "--auto-approve", check=True)
    assert_serves_the_onnx_reference(docker_engine, edge_dir, name, f"{name}:stable", v1)
    again = edge_dir.cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr

    v2 = register_torch(registry, model, seed=1)
    edge_dir.cli("apply", "--auto-approve", check=True)
    assert tag_versions(docker_engine, name) == {"stable": v1, "canary": v2}
    assert_serves_the_onnx_reference(docker_engine, edge_dir, name, f"{name}:canary", v2)
    edge_dir.cli("promote", name, check=True)
    assert tag_versions(docker_engine, name) == {"stable": v2, "canary": v2, "previous": v1}
    edge_dir.cli("rollback", name, check=True)
    assert tag_versions(docker_engine, name) == {"stable": v1, "canary": v2, "previous": v2}
