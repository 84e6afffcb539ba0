"""The Docker test infrastructure itself: the engine and the local base image (pushes and offline wheels are
exercised by every edge build in test_edge.py)."""

from __future__ import annotations

import pytest

from tests.integration.docker_engine import DockerEngine

pytestmark = pytest.mark.integration


def run(engine: DockerEngine, image: str, command: list[str], **options: object) -> str:
    output = engine.client().containers.run(image, command, remove=True, network_mode="none", **options)
    return output.decode().strip()


def test_base_image_runs_python_3_11_with_pip(docker_engine: DockerEngine, edge_base_image: str) -> None:
    assert run(docker_engine, edge_base_image, ["python3", "-c", "import sys; print(sys.version_info[:2])"]) \
        == "(3, 11)"
    assert run(docker_engine, edge_base_image, ["python3", "-m", "pip", "--version"]).startswith("pip ")
    labels = docker_engine.client().images.get(edge_base_image).labels
    assert len(labels["io.mlopsfile.base-key"]) == 64
