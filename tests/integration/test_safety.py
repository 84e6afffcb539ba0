"""What must never happen: touching foreign apps, applying stale plans, two applies at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from mlopsfile.state.store import StateStore
from tests.integration.conftest import SETOSA, ProjectDir, Registry, online_spec

pytestmark = pytest.mark.integration

FOREIGN_APP = textwrap.dedent("""
    import sys
    import ray
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.05})
    class Foreign:
        async def __call__(self, request):
            return {"foreign": True}

    ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[4])})
    serve.run(Foreign.bind(), name=sys.argv[2], route_prefix=sys.argv[3])
""")


def test_foreign_serve_application_survives_apply_and_destroy(project_dir: ProjectDir, registry: Registry) -> None:
    foreign = f"{project_dir.name}-foreign"
    subprocess.run([sys.executable, "-c", FOREIGN_APP, project_dir.cluster.endpoint.address, foreign, f"/{foreign}",
                    str(project_dir.cluster.http_port)],
                   check=True, timeout=300, capture_output=True)
    foreign_url = f"{project_dir.cluster.http}/{foreign}"
    try:
        assert httpx.get(foreign_url, timeout=30).json() == {"foreign": True}
        model = f"m{project_dir.name}"
        registry.register(model)
        project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, f"models:/{model}@champion", f"/{project_dir.name}"))
        plan = project_dir.cli("plan", "--no-color", check=True)
        assert foreign not in plan.stdout
        project_dir.cli("apply", "--auto-approve", check=True)
        assert httpx.get(foreign_url, timeout=30).json() == {"foreign": True}

        destroyed = project_dir.cli("destroy", "--auto-approve", "--no-color", check=True)
        assert foreign not in destroyed.stdout
        assert "1 destroyed" in destroyed.stdout
        assert httpx.get(foreign_url, timeout=30).json() == {"foreign": True}

        # A Deployment named like the foreign app is refused, not taken over.
        project_dir.write_spec("app.yaml", online_spec(foreign, model, f"models:/{model}@champion", f"/{foreign}-x"))
        refused = project_dir.cli("plan")
        assert refused.returncode == 1
        assert "was not created by mlopsfile" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert httpx.get(foreign_url, timeout=30).json() == {"foreign": True}
    finally:
        remove = f"import ray; from ray import serve; ray.init(address='{project_dir.cluster.endpoint.address}'); serve.delete('{foreign}')"
        subprocess.run([sys.executable, "-c", remove], timeout=120, capture_output=True)


def test_saved_plan_applies_the_pinned_version_and_stale_plans_are_refused(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    first = registry.register(model)
    route = f"/{project_dir.name}"
    uri = f"models:/{model}@champion"
    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, uri, route))
    project_dir.cli("plan", "-o", "plan.json", check=True)

    # The alias moves after the plan was saved: apply still deploys what was planned.
    second = registry.register(model, regularisation=0.3)
    assert second != first
    project_dir.cli("apply", "plan.json", check=True)
    assert project_dir.predict(route, [SETOSA]).headers["x-model-version"] == first

    # A plan saved now goes stale when the specs change...
    project_dir.cli("plan", "-o", "stale.json", check=True)
    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, uri, route, replicas=2))
    refused = project_dir.cli("apply", "stale.json")
    assert refused.returncode == 1
    assert f"spec of deployment/{project_dir.name} changed" in refused.stderr
    assert "Traceback" not in refused.stderr

    # ...and when the live state moves under it.
    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, uri, route))
    project_dir.cli("plan", "-o", "live.json", check=True)
    project_dir.cli("apply", "--auto-approve", "--specs", "specs", check=True)  # moves live to version `second`
    refused_live = project_dir.cli("apply", "live.json")
    assert refused_live.returncode == 1
    assert f"live deployment/{project_dir.name} changed" in refused_live.stderr
    assert project_dir.predict(route, [SETOSA]).headers["x-model-version"] == second


def test_second_concurrent_apply_is_refused_with_the_lock_id(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    registry.register(model)
    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, f"models:/{model}@champion", f"/{project_dir.name}"))
    store = StateStore(f"sqlite:///{project_dir.root / '.mlopsfile' / 'state.db'}")
    first = subprocess.Popen([sys.executable, "-m", "mlopsfile", "apply", "--auto-approve"], cwd=project_dir.root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"NO_COLOR": "1"})
    try:
        deadline = time.monotonic() + 120
        lock = store.current_lock()
        while lock is None and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
            lock = store.current_lock()
        assert lock is not None, "the first apply never took the lock"
        second = project_dir.cli("apply", "--auto-approve")
        assert second.returncode == 1
        assert lock.lock_id in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, out + err
    assert store.current_lock() is None

    # A lock left behind by a run that died is freed by its id.
    stuck = store.acquire_lock("apply")
    blocked = project_dir.cli("apply", "--auto-approve")
    assert blocked.returncode == 1 and stuck.lock_id in blocked.stderr
    assert project_dir.cli("force-unlock", stuck.lock_id).returncode == 0
    assert project_dir.cli("plan", "--detailed-exitcode").returncode == 0


def test_missing_model_version_or_alias_is_a_plan_error_with_position(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    registry.register(model)
    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, f"models:/{model}/99", f"/{project_dir.name}"))
    missing_version = project_dir.cli("plan")
    assert missing_version.returncode == 1
    assert f"specs/app.yaml:4:13: spec.uri: model {model!r} has no version 99" in missing_version.stderr
    assert "Traceback" not in missing_version.stderr

    project_dir.write_spec("app.yaml", online_spec(project_dir.name, model, f"models:/{model}@nope", f"/{project_dir.name}"))
    missing_alias = project_dir.cli("plan")
    assert missing_alias.returncode == 1
    assert "has no alias @nope (aliases: @champion)" in missing_alias.stderr

    project_dir.write_spec("app.yaml", online_spec(project_dir.name, "ghost", "models:/ghost@champion", f"/{project_dir.name}"))
    missing_model = project_dir.cli("plan")
    assert missing_model.returncode == 1
    assert "no registered model 'ghost'" in missing_model.stderr


def test_a_deployment_that_cannot_start_is_undone(project_dir: ProjectDir, registry: Registry) -> None:
    model = f"m{project_dir.name}"
    registry.register(model)
    spec = online_spec(project_dir.name, model, f"models:/{model}@champion", f"/{project_dir.name}")
    project_dir.write_spec("app.yaml", spec.replace("num_cpus: 0.1", "num_cpus: 0.1, num_gpus: 1"))
    result = subprocess.run([sys.executable, "-m", "mlopsfile", "apply", "--auto-approve"], cwd=project_dir.root,
                            capture_output=True, text=True, timeout=600,
                            env=os.environ | {"NO_COLOR": "1", "MLOPSFILE_DEPLOY_TIMEOUT_S": "15"})
    assert result.returncode == 1
    assert "not ready after 15s" in result.stderr
    assert "partly created application was removed" in result.stderr
    assert "Traceback" not in result.stderr
    observed = project_dir.project().observe()
    assert observed.deployment(project_dir.name) is None
