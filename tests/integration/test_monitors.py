"""Drift monitors end to end on real Ray Serve, a real MLflow registry and real alibi-detect detectors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.conftest import ProjectDir, Registry, online_spec

pytestmark = pytest.mark.integration
ROWS_PER_REQUEST = 10


class Webhook:
    """A webhook receiver on 127.0.0.1 that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _iris_features(registry: Registry):
    features, _ = registry.train.iris_frame()
    return features


def _send(project_dir: ProjectDir, route: str, frame, shift: float, rows: int, seed: int) -> None:
    """``rows`` rows drawn from iris, with ``shift`` added to petal_length, ROWS_PER_REQUEST per request."""
    rng = np.random.default_rng(seed)
    sample = frame.iloc[rng.integers(0, len(frame), rows)].copy()
    sample["petal_length"] = sample["petal_length"] + shift
    records = sample.to_dict(orient="records")
    with httpx.Client(timeout=30) as client:
        for start in range(0, rows, ROWS_PER_REQUEST):
            response = project_dir.predict(route, records[start:start + ROWS_PER_REQUEST], client)
            assert response.status_code == 200, response.text


def _monitor_spec(name: str, deployment: str, window: int, actions: str = "[]", p_val: float = 0.01) -> str:
    return f"""\
---
apiVersion: mlopsfile/v1
kind: Monitor
metadata: {{name: {name}}}
spec:
  deployment: {deployment}
  reference: data/reference.parquet
  detector: {{kind: ks, p_val: {p_val}}}
  window: {{rows: {window}}}
  on_drift: {actions}
  cooldown: 1h
"""


@pytest.fixture
def watcher(project_dir: ProjectDir) -> Iterator[list[subprocess.Popen[str]]]:
    """`mlopsfile watch` processes a test starts; each is stopped by its pid."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=10)
        print(f"mlopsfile watch said:\n{output}")  # shown by pytest when the test failed


def _wait_for(condition, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def test_drift_alerts_rolls_back_once_and_is_recorded_everywhere(project_dir: ProjectDir, registry: Registry,
                                                                 watcher: list[subprocess.Popen[str]]) -> None:
    name, model, route = project_dir.name, f"m{project_dir.name}", f"/{project_dir.name}"
    monitor = f"{name}-drift"
    features = _iris_features(registry)
    v1 = registry.register(model)
    with Webhook() as hook:
        actions = f"[{{type: alert, url: '{hook.url}'}}, {{type: rollback}}]"
        project_dir.write_spec("app.yaml", online_spec(name, model, f"models:/{model}@champion", route)
                               + _monitor_spec(monitor, name, window=100, actions=actions))

        # A missing reference fails the plan, naming the field, before anything starts.
        planned = project_dir.cli("plan")
        assert planned.returncode == 1, planned.stdout + planned.stderr
        assert "spec.reference: reference file" in planned.stderr and "does not exist" in planned.stderr
        assert "Traceback" not in planned.stderr

        (project_dir.root / "data").mkdir()
        features.to_parquet(project_dir.root / "data" / "reference.parquet")
        applied = project_dir.cli("apply", "--auto-approve", check=True)
        assert f"monitor/{monitor}" in applied.stdout, applied.stdout
        v2 = registry.register(model, regularisation=0.5)  # a second revision, so there is one to go back to
        project_dir.cli("apply", "--auto-approve", check=True)
        assert project_dir.project().drivers["online"].observe_one(name).serving.model_version == v2

        watch = subprocess.Popen([sys.executable, "-m", "mlopsfile", "watch", "--tick", "1", "--interval", "3600"],
                                 cwd=project_dir.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=os.environ | {"NO_COLOR": "1"})
        watcher.append(watch)

        _send(project_dir, route, features, shift=0.0, rows=100, seed=1)  # one window like the reference
        _send(project_dir, route, features, shift=3.0, rows=200, seed=2)  # two drifted windows
        live_version = _wait_for(
            lambda: (v := project_dir.project().drivers["online"].observe_one(name).serving.model_version) == v1 and v,
            120, f"the rollback to version {v1}")
        assert live_version == v1

        status = _wait_for(lambda: _monitor_status(project_dir, monitor, windows=3), 60, "three windows in status")
        assert status["drifted"] == 2 and status["latest"]["is_drift"] is True
        assert status["latest"]["p_value"] < 0.01

        # Cooldown: the second drifted window alerted and rolled back nothing more.
        _wait_for(lambda: hook.received, 30, "the webhook")
        time.sleep(2)
        assert len(hook.received) == 1, hook.received
        assert hook.received[0]["monitor"] == monitor and hook.received[0]["verdict"]["is_drift"] is True
        def actions() -> list[tuple[str, str]]:
            return [(a.type, a.outcome) for a in project_dir.project().store.drift_actions(monitor)]

        _wait_for(lambda: ("rollback", "done") in actions(), 30, "the rollback's outcome in the state store")
        actions_seen = actions()
        assert ("alert", "sent") in actions_seen, actions_seen
        assert actions_seen.count(("rollback", "held")) == 1 and actions_seen.count(("alert", "held")) == 1

    # The verdicts are MLflow metrics of the monitor's run (what the MLflow UI plots).
    from mlflow import MlflowClient

    client = MlflowClient(registry.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("mlopsfile-monitors").experiment_id],
                              filter_string=f"tags.`mlopsfile.monitor` = '{monitor}'")
    assert len(runs) == 1
    p_values = [m.value for m in client.get_metric_history(runs[0].info.run_id, "p_value")]
    assert len(p_values) == 3 and sum(p < 0.01 for p in p_values) == 2, p_values

    drift = project_dir.cli("drift", monitor, "--plot", "drift.png", check=True)
    assert drift.stdout.count("yes") == 2, drift.stdout
    assert (project_dir.root / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _monitor_status(project_dir: ProjectDir, monitor: str, windows: int) -> dict[str, Any] | None:
    rows = json.loads(project_dir.cli("status", "--format", "json", check=True).stdout)
    row = next((r for r in rows if r.get("kind") == "Monitor" and r["name"] == monitor), None)
    return row if row is not None and row["windows"] >= windows else None


def test_a_canary_whose_candidate_sees_drifted_inputs_aborts_on_the_drift_gate(project_dir: ProjectDir,
                                                                              registry: Registry) -> None:
    name, model, route = project_dir.name, f"m{project_dir.name}", f"/{project_dir.name}"
    monitor = f"{name}-drift"
    features = _iris_features(registry)
    (project_dir.root / "data").mkdir()
    features.to_parquet(project_dir.root / "data" / "reference.parquet")
    canary = f"""
        strategy: canary
        steps: [{{weight: 50, pause: 1h}}]
        analysis: {{min_requests: 5, drift: {monitor}}}
    """
    v1 = registry.register(model)
    project_dir.write_spec("app.yaml", online_spec(name, model, f"models:/{model}@champion", route, rollout=canary)
                           + _monitor_spec(monitor, name, window=50))
    project_dir.cli("apply", "--auto-approve", check=True)
    registry.register(model, regularisation=0.5)
    rollout = subprocess.Popen([sys.executable, "-m", "mlopsfile", "apply", "--auto-approve", "--wait"],
                               cwd=project_dir.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"NO_COLOR": "1"})
    try:
        _wait_for(lambda: (r := project_dir.project().store.active_rollout(name)) is not None and r.state == "step",
                  120, "the canary's first step")
        _send(project_dir, route, features, shift=3.0, rows=400, seed=3)
        stdout, stderr = rollout.communicate(timeout=120)
    finally:
        if rollout.poll() is None:
            os.kill(rollout.pid, signal.SIGTERM)
            rollout.wait(timeout=30)
    record = project_dir.project().store.last_rollout(name)
    assert record is not None and record.state == "aborted", (stdout, stderr)
    assert f"monitor/{monitor}:" in (record.message or "") and "candidate windows drifted" in (record.message or "")
    assert project_dir.project().drivers["online"].observe_one(name).serving.model_version == v1
