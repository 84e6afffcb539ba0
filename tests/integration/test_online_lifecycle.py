"""apply → serve → plan again → update in place → replace → delete, on real Ray Serve and MLflow."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mlopsfile.plan.types import Action
from tests.integration.conftest import SETOSA, VIRGINICA, ProjectDir, Registry, online_spec
from tests.integration.traffic import Traffic

pytestmark = pytest.mark.integration


def _replica_actor_ids(project_dir: ProjectDir, name: str) -> set[str]:
    details = project_dir.project().drivers["online"].serve_details()
    replicas = details["applications"][name]["deployments"]["model"]["replicas"]
    return {r["actor_id"] for r in replicas if r["state"] == "RUNNING"}


def test_apply_serves_and_second_plan_is_empty(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    version = registry.register(model)
    route = f"/{project_dir.name}"
    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, f"models:/{model}@champion", route, batching=True))

    first = project_dir.cli("plan", "--detailed-exitcode")
    assert first.returncode == 2, first.stderr
    assert f'+ deployment "{project_dir.name}"' in first.stdout
    assert f"-> version {version}" in first.stdout

    applied = project_dir.cli("apply", "--auto-approve", check=True)
    assert "Apply complete! Resources: 1 added" in applied.stdout

    # The CLI process has exited: the model must still answer.
    response = project_dir.predict(route, [SETOSA, VIRGINICA])
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [0, 2]}
    assert response.headers["x-model-version"] == version

    # Concurrent single-row requests are batched together yet each gets its own answer.
    rows = [SETOSA, VIRGINICA] * 10
    with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda row: project_dir.predict(route, [row], client).json()["predictions"], rows))
    assert answers == [[0], [2]] * 10

    again = project_dir.cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout

    status = project_dir.cli("status", "--format", "json", check=True)
    rows_out = {row["name"]: row for row in json.loads(status.stdout)}
    row = rows_out[project_dir.name]
    assert row["health"]["status"] == "RUNNING"
    assert row["model_version"] == version
    assert row["revision"] == 1
    assert row["synced"] is True
    assert row["url"].endswith(f"{route}/predict")


def test_bad_requests_get_4xx_never_500(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    registry.register(model)
    route = f"/{project_dir.name}"
    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, f"models:/{model}@champion", route))
    project_dir.cli("apply", "--auto-approve", check=True)
    url = f"{project_dir.cluster.http}{route}/predict"
    bad_bodies = [
        b"not json",
        b"[1, 2]",
        b'{"foo": 1}',
        b'{"dataframe_records": [{"sepal_length": "x", "sepal_width": 1, "petal_length": 1, "petal_width": 1}]}',
        b'{"dataframe_records": [{"sepal_length": 1.0}]}',
        b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}',
        b'{"inputs": [[1, 2, 3, 4]]}',
        b'{"dataframe_records": [], "inputs": []}',
    ]
    for body in bad_bodies:
        response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
        assert response.json()["message"], body
    assert httpx.get(url, timeout=30).status_code == 405
    assert httpx.post(url, content=b"{}", headers={"content-type": "text/csv"}, timeout=30).status_code == 415
    metadata = httpx.get(f"{project_dir.cluster.http}{route}/metadata", timeout=30).json()
    assert [field["name"] for field in metadata["input_schema"]] == list(SETOSA)


def test_replicas_change_updates_in_place_while_answering(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    registry.register(model)
    route = f"/{project_dir.name}"
    uri = f"models:/{model}@champion"
    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, uri, route, replicas=1))
    project_dir.cli("apply", "--auto-approve", check=True)
    before = _replica_actor_ids(project_dir, project_dir.name)

    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, uri, route, replicas=2))
    planned = project_dir.project().plan().plan
    assert [(c.action, c.name) for c in planned.changes] == [(Action.UPDATE, project_dir.name)]
    assert {d.field: (d.old, d.new) for d in planned.changes[0].diffs} == {"replicas": (1, 2)}

    with Traffic(f"{project_dir.cluster.http}{route}/predict", {"dataframe_records": [SETOSA]}) as traffic:
        time.sleep(1)
        report = project_dir.project().apply(planned)
        time.sleep(1)
    assert not report.failed
    assert traffic.sent > 20 and traffic.failures == []
    after = _replica_actor_ids(project_dir, project_dir.name)
    assert len(after) == 2
    assert before <= after, "the running replica was restarted instead of updated in place"
    assert project_dir.cli("plan", "--detailed-exitcode").returncode == 0


def test_model_version_change_is_a_replace_without_dropped_requests(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    first = registry.register(model)
    route = f"/{project_dir.name}"
    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, f"models:/{model}@champion", route))
    project_dir.cli("apply", "--auto-approve", check=True)

    second = registry.register(model, regularisation=0.5)
    # The audit trail names the git commit the specs were applied from.
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=project_dir.root, check=True)
    subprocess.run([*git, "add", "specs"], cwd=project_dir.root, check=True)
    subprocess.run([*git, "commit", "-qm", "specs"], cwd=project_dir.root, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir.root, capture_output=True, text=True,
                            check=True).stdout.strip()
    planned = project_dir.cli("plan", "--detailed-exitcode", "--no-color")
    assert planned.returncode == 2
    assert f'-/+ deployment "{project_dir.name}"' in planned.stdout
    assert f"moves from version {first} to {second}" in planned.stdout
    assert "# forces replacement" in planned.stdout

    with Traffic(f"{project_dir.cluster.http}{route}/predict", {"dataframe_records": [SETOSA]}) as traffic:
        time.sleep(1)
        project_dir.cli("apply", "--auto-approve", check=True)
        time.sleep(2)
    assert traffic.failures == []
    assert traffic.versions[first] > 0 and traffic.versions[second] > 0
    assert project_dir.predict(route, [SETOSA]).headers["x-model-version"] == second

    history = json.loads(project_dir.cli("history", project_dir.name, "--format", "json", check=True).stdout)
    assert [(h["revision"], h["action"], h["outcome"], h["model_version"]) for h in history] == [
        (1, "create", "applied", first), (2, "replace", "applied", second)]
    assert history[1]["git_commit"] == commit


def test_removed_spec_is_deleted(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    registry.register(model)
    keep, drop = f"{project_dir.name}-keep", f"{project_dir.name}-drop"
    uri = f"models:/{model}@champion"
    keep_spec = online_spec(keep, model, uri, f"/{keep}")
    drop_spec = online_spec(drop, f"{model}x", uri, f"/{drop}")
    project_dir.write_spec("keep.yaml", keep_spec)
    project_dir.write_spec("drop.yaml", drop_spec)
    project_dir.cli("apply", "--auto-approve", check=True)
    assert project_dir.predict(f"/{drop}", [SETOSA]).status_code == 200

    (project_dir.root / "specs" / "drop.yaml").unlink()
    planned = project_dir.cli("plan", "--detailed-exitcode", "--no-color")
    assert planned.returncode == 2
    assert f'- deployment "{drop}"' in planned.stdout
    assert "its spec was removed" in planned.stdout
    assert "Plan: 0 to add, 0 to change, 0 to replace, 1 to destroy." in planned.stdout
    project_dir.cli("apply", "--auto-approve", check=True)
    assert project_dir.predict(f"/{drop}", [SETOSA]).status_code == 404
    assert project_dir.predict(f"/{keep}", [SETOSA]).status_code == 200
    assert project_dir.cli("plan", "--detailed-exitcode").returncode == 0
