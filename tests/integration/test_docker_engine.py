"""The Docker test infrastructure itself: engine, local base image, local registry, offline wheels."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from mlopsfile.drivers.edge_wheels import default_edge_requirements, image_wheels
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


def test_push_to_and_pull_from_the_local_registry(docker_engine: DockerEngine, edge_base_image: str,
                                                  local_registry: str) -> None:
    client = docker_engine.client()
    base = client.images.get(edge_base_image)
    repository, tag = f"{local_registry}/selftest/base", uuid.uuid4().hex[:8]
    assert base.tag(repository, tag)
    try:
        for line in client.images.push(repository, tag=tag, stream=True, decode=True):
            assert "error" not in line, line
    finally:
        client.images.remove(f"{repository}:{tag}")
    listed = httpx.get(f"http://{local_registry}/v2/selftest/base/tags/list", timeout=10).json()
    assert listed["tags"] == [tag]
    pulled = client.images.pull(repository, tag=tag)
    try:
        assert pulled.id == base.id
    finally:
        client.images.remove(f"{repository}:{tag}")


def test_edge_wheels_install_offline_and_run_in_the_base_image(docker_engine: DockerEngine, edge_base_image: str,
                                                               tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    requirements = default_edge_requirements()
    wheels = image_wheels(tmp_path / "cache", requirements)
    assert image_wheels(tmp_path / "cache", list(reversed(requirements))) == wheels  # cached, order-free
    assert {p.name.split("-")[0] for p in wheels.glob("*.whl")} >= {"onnxruntime", "numpy"}

    model = tmp_path / "model"  # y = x + x, as small as an ONNX model gets
    model.mkdir()
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(model / "model.onnx"))
    script = ("import numpy, onnxruntime; "
              "s = onnxruntime.InferenceSession('/model/model.onnx', providers=['CPUExecutionProvider']); "
              "print(onnxruntime.__version__, numpy.__version__, "
              "s.run(None, {'x': numpy.array([[1, 2]], dtype=numpy.float32)})[0].tolist())")
    output = run(docker_engine, edge_base_image,
                 ["sh", "-c", "python3 -m pip install -q --root-user-action=ignore --no-index --find-links /wheels "
                              f"{' '.join(requirements)} && python3 -c \"{script}\""],
                 volumes={str(wheels): {"bind": "/wheels", "mode": "ro"}, str(model): {"bind": "/model", "mode": "ro"}})
    versions = " ".join(r.split("==")[1] for r in requirements)
    assert output.splitlines()[-1] == f"{versions} [[2.0, 4.0]]"
