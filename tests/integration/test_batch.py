"""Batch deployments on a real local Ray (Jobs + Data) and MLflow: run, skip, rerun, publish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mlopsfile.drivers.ray_cluster import pid_alive
from mlopsfile.errors import DriverError
from tests.integration.conftest import Cluster, ProjectDir, Registry, deployment_head

pytestmark = pytest.mark.integration

ROWS_PER_FILE = 3_000


def batch_spec(name: str, model: str, uri: str, schedule: str | None = None, input_glob: str = "data/*.parquet",
               batch_size: int = 1000) -> str:
    schedule_line = f"\n    schedule: \"{schedule}\"" if schedule else ""
    return deployment_head(name, model, uri) + f"""\
    type: batch
    input: {input_glob}
    output: out/{name}
    columns: [id]
    batch_size: {batch_size}
    concurrency: 1
    resources: {{num_cpus: 0.5}}{schedule_line}
"""


def write_input(project_dir: ProjectDir, registry: Registry, files: int = 2, rows: int = ROWS_PER_FILE,
                drop: str | None = None) -> list[Path]:
    features, _ = registry.train.iris_frame()
    data = project_dir.root / "data"
    data.mkdir(exist_ok=True)
    paths = []
    for number in range(files):
        frame = features.sample(n=rows, replace=True, random_state=number).reset_index(drop=True)
        frame.insert(0, "id", range(number * rows, (number + 1) * rows))
        if drop:
            frame = frame.drop(columns=drop)
        path = data / f"part-{number}.parquet"
        frame.to_parquet(path, index=False)
        paths.append(path)
    return paths


def published(project_dir: ProjectDir, name: str) -> tuple[dict, pd.DataFrame]:
    current = project_dir.root / "out" / name / "current"
    manifest = json.loads((current / "_manifest.json").read_text())
    frame = pd.concat([pd.read_parquet(p) for p in sorted(current.glob("*.parquet"))], ignore_index=True)
    return manifest, frame


def test_first_apply_runs_and_publishes_then_nothing_until_input_or_alias_moves(
        project_dir: ProjectDir, registry: Registry) -> None:
    name, model = project_dir.name, f"m{project_dir.name}"
    first = registry.register(model)
    write_input(project_dir, registry)
    project_dir.write_spec("batch.yaml", batch_spec(name, model, f"models:/{model}@champion"))

    planned = project_dir.cli("plan", "--detailed-exitcode")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert f'> deployment "{name}" (batch' in planned.stdout and "no output is published" in planned.stdout

    project_dir.cli("apply", "--auto-approve", check=True)
    manifest, frame = published(project_dir, name)
    assert manifest["rows"] == len(frame) == 2 * ROWS_PER_FILE
    assert manifest["model_version"] == first
    assert sorted(frame["id"]) == list(range(2 * ROWS_PER_FILE))  # every row once, none twice
    assert set(frame.columns) == {"id", "prediction"} and set(frame["prediction"]) <= {0, 1, 2}
    # The predictions are the model's own on the same rows.
    import mlflow.pyfunc

    features, _ = registry.train.iris_frame()
    mlflow.set_tracking_uri(registry.tracking_uri)
    original = pd.read_parquet(project_dir.root / "data" / "part-0.parquet")
    expected = mlflow.pyfunc.load_model(f"models:/{model}/{first}").predict(original[features.columns])
    mine = frame.set_index("id").loc[original["id"], "prediction"].to_numpy()
    assert (mine == expected).all()

    again = project_dir.cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout
    assert "up to date" in again.stdout or "No changes" in again.stdout

    # Touching one input file plans a run that names it.
    time.sleep(0.01)
    os.utime(project_dir.root / "data" / "part-1.parquet")
    touched = project_dir.cli("plan", "--detailed-exitcode")
    assert touched.returncode == 2 and "the input changed: modified part-1.parquet" in touched.stdout, touched.stdout

    # Moving the alias plans a run from version to version; the output then holds only the new one.
    second = registry.register(model, regularisation=0.3)
    moved = project_dir.cli("plan", "--detailed-exitcode")
    assert moved.returncode == 2 and f"moves from version {first} to {second}" in moved.stdout, moved.stdout
    project_dir.cli("apply", "--auto-approve", check=True)
    manifest, frame = published(project_dir, name)
    assert manifest["model_version"] == second and len(frame) == 2 * ROWS_PER_FILE
    runs = list((project_dir.root / "out" / name / "runs").iterdir())
    assert len(runs) == 2, runs  # the published run and the one before it

    status = project_dir.cli("status", check=True)
    assert "SUCCEEDED" in status.stdout and str(2 * ROWS_PER_FILE) in status.stdout, status.stdout
    logs = project_dir.cli("logs", name, check=True)
    assert f"published {2 * ROWS_PER_FILE} rows of model version {second}" in logs.stdout, logs.stdout


def _job_driver_pid(project_dir: ProjectDir, job_id: str) -> int | None:
    info = project_dir.project().batch.cluster.get_json(f"/api/jobs/{job_id}") or {}
    return (info.get("driver_info") or {}).get("pid") and int(info["driver_info"]["pid"])


def test_a_job_killed_half_way_publishes_nothing_and_the_rerun_publishes_once(
        project_dir: ProjectDir, registry: Registry) -> None:
    name, model = project_dir.name, f"m{project_dir.name}"
    registry.register(model)
    write_input(project_dir, registry, files=3)
    project_dir.write_spec("batch.yaml", batch_spec(name, model, f"models:/{model}@champion", batch_size=500))
    output = project_dir.root / "out" / name
    applying = subprocess.Popen([sys.executable, "-m", "mlopsfile", "apply", "--auto-approve"], cwd=project_dir.root,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Half-way: the job runs and has started writing its staging directory.
        deadline, pid, job = time.monotonic() + 180, None, None
        while time.monotonic() < deadline and pid is None:
            jobs = project_dir.project().batch.jobs()
            job = next((j for j in jobs if j["status"] == "RUNNING"), None)
            if job is not None and (output / ".staging" / job["submission_id"]).is_dir():
                pid = _job_driver_pid(project_dir, job["submission_id"])
            time.sleep(0.2)
        assert pid is not None and job is not None, "the job never got to scoring"
        os.kill(pid, signal.SIGKILL)
        log, _ = applying.communicate(timeout=180)
    finally:
        if applying.poll() is None:
            applying.kill()
    assert applying.returncode == 1, log
    assert not (output / "current").exists(), "a killed run published something"

    rerun = project_dir.cli("plan")
    assert f"job {job['submission_id']}" in rerun.stdout and "runs again" in rerun.stdout, rerun.stdout
    project_dir.cli("apply", "--auto-approve", check=True)
    manifest, frame = published(project_dir, name)
    assert manifest["rows"] == len(frame) == 3 * ROWS_PER_FILE
    assert frame["id"].is_unique and sorted(frame["id"]) == list(range(3 * ROWS_PER_FILE))
    assert [p.name for p in (output / "runs").iterdir()] == [manifest["run_id"]]
    assert not (output / ".staging").exists() or not any((output / ".staging").iterdir())


def test_bad_input_fails_clearly_and_keeps_the_published_output(project_dir: ProjectDir, registry: Registry) -> None:
    name, model = project_dir.name, f"m{project_dir.name}"
    registry.register(model)
    write_input(project_dir, registry, files=1)
    project_dir.write_spec("batch.yaml", batch_spec(name, model, f"models:/{model}@champion"))
    project_dir.cli("apply", "--auto-approve", check=True)
    before, _ = published(project_dir, name)

    # A column the model signature needs is missing.
    write_input(project_dir, registry, files=1, drop="petal_width")
    failed = project_dir.cli("apply", "--auto-approve")
    assert failed.returncode == 1
    assert "has no column 'petal_width' (the model signature needs: sepal_length" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    status = project_dir.cli("status", check=True)
    assert "FAILED" in status.stdout and "has no column 'petal_width'" in status.stdout, status.stdout
    logs = project_dir.cli("logs", name, check=True)
    assert "mlopsfile: run failed: input file" in logs.stdout, logs.stdout
    # Held: the same model and input fail the same way, so nothing runs again until one changes.
    held = project_dir.cli("plan", "--detailed-exitcode")
    assert held.returncode == 0 and "failed" in held.stdout and f"mlopsfile run {name}" in held.stdout, held.stdout

    # A file that is not parquet at all.
    (project_dir.root / "data" / "part-0.parquet").write_bytes(b"this is not a parquet file\n" * 50)
    broken = project_dir.cli("apply", "--auto-approve")
    assert broken.returncode == 1 and "is not readable parquet" in broken.stderr, broken.stderr
    after, frame = published(project_dir, name)
    assert after == before and len(frame) == before["rows"]  # what readers see is untouched


def test_a_schedule_fires_in_the_watch_loop(project_dir: ProjectDir, registry: Registry) -> None:
    name, model = project_dir.name, f"m{project_dir.name}"
    registry.register(model)
    write_input(project_dir, registry, files=1, rows=500)
    # A drift monitor on the batch deployment tests each published run's inputs as one window.
    reference = project_dir.root / "reference" / "iris.parquet"
    reference.parent.mkdir()
    registry.train.iris_frame()[0].to_parquet(reference)
    monitor = (f"---\napiVersion: mlopsfile/v1\nkind: Monitor\nmetadata: {{name: {name}-drift}}\nspec:\n"
               f"  deployment: {name}\n  reference: reference/iris.parquet\n  detector: {{kind: ks, p_val: 0.001}}\n")
    project_dir.write_spec("batch.yaml", batch_spec(name, model, f"models:/{model}@champion", schedule="* * * * *")
                           + monitor)
    project_dir.cli("apply", "--auto-approve", check=True)
    first, _ = published(project_dir, name)
    status = project_dir.cli("status", check=True)
    assert ":00+00:00" in status.stdout  # the next run, on a minute boundary

    watching = subprocess.Popen([sys.executable, "-m", "mlopsfile", "watch", "--interval", "3"], cwd=project_dir.root,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Done when the run is recorded (its output is published a moment before).
        deadline, reasons = time.monotonic() + 200, [""]
        while time.monotonic() < deadline and not any("schedule '* * * * *'" in m for m in reasons):
            time.sleep(2)
            reasons = [r.message or "" for r in project_dir.project().store.history(name)]
    finally:
        watching.send_signal(signal.SIGTERM)
        log, _ = watching.communicate(timeout=60)
    assert any("schedule '* * * * *'" in m for m in reasons), (reasons, log)
    latest, _ = published(project_dir, name)
    assert latest["run_id"] != first["run_id"]
    assert latest["rows"] == 500 and latest["started_at"] > first["started_at"]

    def windows() -> list[dict] | None:
        drift = json.loads(project_dir.cli("drift", f"{name}-drift", "--format", "json", check=True).stdout)
        return drift["windows"] if len(drift["windows"]) >= 2 else None

    deadline, tested = time.monotonic() + 60, None
    while time.monotonic() < deadline and not (tested := windows()):
        time.sleep(1)
    assert tested is not None and [(w["arm"], w["rows"]) for w in tested] == [(f"stable/{first['model_version']}", 500)] * 2
    assert not any(w["is_drift"] for w in tested), tested  # iris resampled is iris


def test_a_canary_gates_a_new_version_and_a_shadow_scores_beside(project_dir: ProjectDir, registry: Registry) -> None:
    name, model = project_dir.name, f"m{project_dir.name}"
    first = registry.register(model)
    write_input(project_dir, registry, files=1)
    canary = "  rollout:\n    strategy: canary\n    sample: 0.5\n    analysis: {min_agreement: 0.9}\n"
    project_dir.write_spec("batch.yaml", batch_spec(name, model, f"models:/{model}@champion") + canary)
    project_dir.cli("apply", "--auto-approve", check=True)  # nothing published yet: a plain run

    # A version that predicts almost one class for everything: the sample disagrees, nothing is published.
    poor = registry.register(model, regularisation=1e-4)
    planned = project_dir.cli("plan", check=True)
    assert f"canary rollout: version {first} -> {poor}" in planned.stdout, planned.stdout
    failed = project_dir.cli("apply", "--auto-approve")
    assert failed.returncode == 1 and "canary gate failed" in failed.stderr and "agreement" in failed.stderr, failed.stderr
    manifest, _ = published(project_dir, name)
    assert manifest["model_version"] == first
    assert "canary gate failed" in project_dir.cli("plan", check=True).stdout  # held, not retried

    # A version that predicts what the published one does passes and is published with its canary report.
    good = registry.register(model)
    project_dir.cli("apply", "--auto-approve", check=True)
    manifest, frame = published(project_dir, name)
    assert manifest["model_version"] == good and manifest["canary"]["agreement"] == 1.0
    assert 0 < manifest["canary"]["rows"] < len(frame)

    # Shadow: every row is also scored by a candidate, published beside with its agreement.
    shadow = (f"---\napiVersion: mlopsfile/v1\nkind: Model\nmetadata: {{name: challenger}}\n"
              f"spec: {{uri: \"models:/{model}/{first}\"}}\n")
    spec = batch_spec(name, model, f"models:/{model}@champion") + "  rollout: {strategy: shadow, candidate: challenger}\n"
    project_dir.write_spec("batch.yaml", spec + shadow)
    project_dir.cli("apply", "--auto-approve", check=True)
    manifest, frame = published(project_dir, name)
    side = project_dir.root / "out" / name / "shadow" / "current"
    side_frame = pd.concat([pd.read_parquet(p) for p in side.glob("*.parquet")], ignore_index=True)
    assert manifest["shadow"]["agreement"] == 1.0 and manifest["shadow"]["rows"] == len(frame) == len(side_frame)
    assert set(side_frame.columns) == {"id", "prediction"} and sorted(side_frame["id"]) == sorted(frame["id"])
    assert json.loads((side / "_manifest.json").read_text())["model_version"] == first


def test_on_the_local_head_a_run_is_one_rest_call(tmp_path: Path, cluster: Cluster, registry: Registry) -> None:
    """The head mlopsfile starts already holds runtime/: a run is submitted to its dashboard as one POST
    (no upload, no Ray SDK in the CLI), runs in the staged runtime in place, and is stopped the same way."""
    name = "localrun"
    model = f"m{name}{os.getpid()}"
    registry.register(model)
    (tmp_path / "mlopsfile.yaml").write_text(
        f'project: {name}\nray:\n  num_cpus: 2\nmlflow:\n  tracking_uri: "{registry.tracking_uri}"\n')
    project_dir = ProjectDir(tmp_path, name, cluster)
    write_input(project_dir, registry)
    project_dir.write_spec("batch.yaml", batch_spec(name, model, f"models:/{model}@champion"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"NO_COLOR": "1"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "mlopsfile", *args], cwd=tmp_path,  # noqa: E731
                                       capture_output=True, text=True, timeout=600, env=env)
    try:
        applied = run("apply", "--auto-approve")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        manifest, frame = published(project_dir, name)
        assert manifest["rows"] == len(frame) == 2 * ROWS_PER_FILE and frame["id"].is_unique

        driver = project_dir.project().batch
        [job] = driver.jobs()
        assert job["status"] == "SUCCEEDED" and job["metadata"]["resource"] == f"deployment/{name}"
        assert job["runtime_env"]["working_dir"].startswith("local://"), job["runtime_env"]
        driver.stop(job["submission_id"])  # an ended job: Ray answers that nothing was stopped
        with pytest.raises(DriverError, match="does not exist"):
            driver.stop(f"{name}-r9-000000")
    finally:
        record = tmp_path / ".mlopsfile" / "ray" / "head.json"
        pid = json.loads(record.read_text())["pid"] if record.exists() else None
        run("down")
        deadline = time.monotonic() + 30
        while pid is not None and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid is None or not pid_alive(pid)
