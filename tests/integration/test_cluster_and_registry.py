"""The local Ray head mlopsfile manages, autoscaling round-trips, and runs:/ model URIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlopsfile.drivers.ray_cluster import pid_alive
from mlopsfile.drivers.registry import MlflowResolver
from mlopsfile.errors import ResolveError
from tests.integration.conftest import SETOSA, ProjectDir, Registry, online_spec

pytestmark = pytest.mark.integration


def test_local_head_starts_on_demand_and_down_stops_only_it(tmp_path: Path, cluster) -> None:
    (tmp_path / "mlopsfile.yaml").write_text("project: headtest\nray:\n  num_cpus: 1\n")
    (tmp_path / "specs").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"NO_COLOR": "1"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "mlopsfile", *args], cwd=tmp_path,  # noqa: E731
                                       capture_output=True, text=True, timeout=300, env=env)

    # plan observes nothing and starts nothing when no head is running.
    from mlopsfile.api import Project

    project = Project.open(tmp_path)
    driver = project.drivers["online"]
    assert driver.endpoint() is None
    endpoint = driver.endpoint(start=True)
    record = json.loads((tmp_path / ".mlopsfile" / "ray" / "head.json").read_text())
    assert pid_alive(record["pid"])
    assert httpx.get(f"{endpoint.dashboard_url}/api/version", timeout=10).status_code == 401  # token auth is on
    assert httpx.get(f"{endpoint.dashboard_url}/api/version", headers=endpoint.auth_headers(), timeout=10).status_code == 200

    stopped = run("down")
    assert stopped.returncode == 0, stopped.stderr
    assert "Stopped the local Ray head." in stopped.stdout
    deadline = time.monotonic() + 30
    while pid_alive(record["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pid_alive(record["pid"])
    # The session's own cluster is untouched.
    assert httpx.get(f"{cluster.endpoint.dashboard_url}/api/version", headers=cluster.endpoint.auth_headers(),
                     timeout=10).status_code == 200
    assert "No local Ray head was running." in run("down").stdout

    # With an address configured, mlopsfile refuses to stop a cluster it did not start.
    (tmp_path / "mlopsfile.yaml").write_text(f"project: headtest\nray:\n  address: '{cluster.endpoint.address}'\n")
    refused = run("down")
    assert refused.returncode == 1 and "did not start the Ray cluster" in refused.stderr


def test_autoscaling_deployment_round_trips_without_drift(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    registry.register(model)
    route = f"/{project_dir.name}"
    spec = online_spec(project_dir.name, model, f"models:/{model}@champion", route).replace(
        "    replicas: 1\n",
        "    autoscaling: {min_replicas: 1, max_replicas: 2, target_ongoing_requests: 3}\n    max_ongoing_requests: 8\n",
    ).replace("num_cpus: 0.1}", "num_cpus: 0.1, memory: 200Mi}")
    project_dir.write_spec("app.yaml", spec)
    project_dir.cli("apply", "--auto-approve", check=True)
    assert project_dir.predict(route, [SETOSA]).json() == {"predictions": [0]}
    again = project_dir.cli("plan", "--detailed-exitcode", "--no-color")
    assert again.returncode == 0, again.stdout

    # Switching to a fixed count is an in-place update.
    project_dir.write_spec("app.yaml", spec.replace(
        "    autoscaling: {min_replicas: 1, max_replicas: 2, target_ongoing_requests: 3}\n", "    replicas: 1\n"))
    plan = project_dir.project().plan().plan
    assert [c.action.value for c in plan.changes] == ["update"]
    assert {d.field for d in plan.changes[0].diffs} == {"autoscaling", "replicas"}


def test_runs_uri_resolves_to_the_run_and_digest(registry: Registry) -> None:
    from mlflow import MlflowClient

    version = registry.register("runs-uri-model", alias=None)
    run_id = MlflowClient(registry.tracking_uri).get_model_version("runs-uri-model", version).run_id
    resolver = MlflowResolver(registry.tracking_uri)
    by_run = resolver.resolve("m", f"runs:/{run_id}/model")
    by_version = resolver.resolve("m", f"models:/runs-uri-model/{version}")
    assert by_run.run_id == run_id == by_version.run_id
    assert by_run.pinned_uri == f"runs:/{run_id}/model"
    assert by_version.pinned_uri == f"models:/runs-uri-model/{version}"
    assert by_run.digest.startswith("sha256:") and len(by_run.digest) == 71
    # Both name the one model the run logged: the same artifacts, wherever MLflow keeps them.
    assert by_run.digest == by_version.digest
    assert resolver.location(by_run.pinned_uri) == resolver.location(by_version.pinned_uri)
    with pytest.raises(ResolveError, match="no MLflow run"):
        resolver.resolve("m", "runs:/0123456789abcdef/model")
