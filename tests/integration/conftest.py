"""Real services for integration tests: one local Ray head and one MLflow registry per session.

Every test gets its own project directory (own project name, own state store) on the
shared cluster, so tests never see each other's applications.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mlopsfile.api import Project
from mlopsfile.drivers.ray_cluster import ClusterEndpoint, LocalHead
from tests.integration.docker_engine import docker_engine, edge_base_image, local_registry  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _load_train_module():  # the quickstart's own training code, so tests serve what users serve
    spec = importlib.util.spec_from_file_location("quickstart_train", REPO / "examples" / "quickstart" / "train.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Cluster:
    endpoint: ClusterEndpoint
    http_port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("ray-state")
    head = LocalHead(state)
    endpoint = head.ensure_started()
    saved = {key: os.environ.get(key) for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    os.environ.update(endpoint.client_env())
    try:
        yield Cluster(endpoint, _free_port())
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        head.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    artifacts: Path
    train: object

    def register(self, name: str, alias: str | None = "champion", regularisation: float = 1.0) -> str:
        return self.train.train_and_register(self.tracking_uri, self.artifacts, name, alias, regularisation)

    def register_from_code(self, name: str, code: str, alias: str | None = "champion") -> str:
        """A version with the iris signature whose model is ``models/<code>.py`` (MLflow models from code)."""
        import mlflow
        from mlflow import MlflowClient
        from mlflow.models import infer_signature

        features, labels = self.train.iris_frame()
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment(self.train.EXPERIMENT)
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).parent / "models" / f"{code}.py"),
                signature=infer_signature(features, labels), registered_model_name=name)
        version = str(info.registered_model_version)
        if alias:
            MlflowClient(self.tracking_uri).set_registered_model_alias(name, alias, version)
        return version

    def set_alias(self, name: str, alias: str, version: str) -> None:
        from mlflow import MlflowClient

        MlflowClient(self.tracking_uri).set_registered_model_alias(name, alias, version)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("mlflow")
    return Registry(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", _load_train_module())


@dataclass
class ProjectDir:
    """A throwaway mlopsfile project on the shared cluster."""

    root: Path
    name: str
    cluster: Cluster

    def write_spec(self, filename: str, text: str) -> Path:
        path = self.root / "specs" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def project(self) -> Project:
        return Project.open(self.root)

    def cli(self, *args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run the real command line in a fresh process, as a user in a new shell would."""
        result = subprocess.run([sys.executable, "-m", "mlopsfile", *args], cwd=self.root, capture_output=True,
                                text=True, timeout=timeout, env=os.environ | {"NO_COLOR": "1"})
        if check and result.returncode != 0:
            raise AssertionError(f"mlopsfile {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def predict(self, route: str, rows: list[dict[str, float]], client: httpx.Client | None = None) -> httpx.Response:
        poster = client or httpx
        return poster.post(f"{self.cluster.http}{route}/predict", json={"dataframe_records": rows}, timeout=30)


@pytest.fixture
def project_dir(tmp_path: Path, cluster: Cluster, registry: Registry) -> Iterator[ProjectDir]:
    name = f"t{uuid.uuid4().hex[:8]}"
    (tmp_path / "mlopsfile.yaml").write_text(textwrap.dedent(f"""\
        project: {name}
        ray:
          address: "{cluster.endpoint.address}"
          dashboard_url: "{cluster.endpoint.dashboard_url}"
          http_port: {cluster.http_port}
        mlflow:
          tracking_uri: "{registry.tracking_uri}"
        """))
    directory = ProjectDir(tmp_path, name, cluster)
    try:
        yield directory
    finally:
        # Leave the shared cluster as the test found it: remove whatever this project runs.
        project = directory.project()
        result = project.plan(destroy=True)
        if result.plan.has_changes:
            project.apply(result.plan)


SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


def deployment_head(name: str, model: str, uri: str) -> str:
    """A Model and a Deployment of it, up to the fields of its target."""
    return f"""\
apiVersion: mlopsfile/v1
kind: Model
metadata: {{name: {model}}}
spec: {{uri: "{uri}"}}
---
apiVersion: mlopsfile/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  model: {model}
  target:
"""


def online_spec(name: str, model: str, uri: str, route: str, replicas: int = 1, batching: bool = False,
                rollout: str = "", extra_models: str = "") -> str:
    """A Model and an online Deployment; ``rollout`` is the YAML of spec.rollout (one line or a block)."""
    batching_block = "\n    batching: {max_batch_size: 8, batch_wait_timeout_s: 0.01}" if batching else ""
    if rollout:
        batching_block += "\n  rollout:\n" + textwrap.indent(textwrap.dedent(rollout).strip(), "    ")
    return deployment_head(name, model, uri) + f"""\
    type: online
    route: {route}
    replicas: {replicas}
    resources: {{num_cpus: 0.1}}{batching_block}
""" + extra_models
