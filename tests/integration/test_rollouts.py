"""Progressive delivery on real Ray Serve and MLflow, under a steady client load."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mlopsfile.controller.status import ArmView
from mlopsfile.state.rollouts import RolloutRecord
from tests.integration.conftest import SETOSA, ProjectDir, Registry, online_spec
from tests.integration.test_online_lifecycle import _replica_actor_ids
from tests.integration.traffic import PacedLoad

pytestmark = pytest.mark.integration
PAYLOAD = {"dataframe_records": [SETOSA]}
RATE = 60.0  # requests per second: above the 50 the acceptance asks for
SLOW_MODEL_DELAY_S = 1.0  # DELAY_S of models/slow_model.py, which is not importable (it registers itself)


def _url(project_dir: ProjectDir, route: str) -> str:
    return f"{project_dir.cluster.http}{route}/predict"


def _last_rollout(project_dir: ProjectDir, name: str) -> RolloutRecord:
    record = project_dir.project().store.last_rollout(name)
    assert record is not None
    return record


def test_canary_rollback_config_update_and_blue_green_fail_no_request(project_dir: ProjectDir,
                                                                      registry: Registry) -> None:
    name, model, route = project_dir.name, f"m{project_dir.name}", f"/{project_dir.name}"
    uri = f"models:/{model}@champion"
    canary = """
        strategy: canary
        steps: [{weight: 20, pause: 3s}, {weight: 60, pause: 3s}]
        analysis: {min_requests: 10, max_error_rate: 0.0}
        keep_previous: 0s
    """
    v1 = registry.register(model)
    project_dir.write_spec("app.yaml", online_spec(name, model, uri, route, rollout=canary))
    project_dir.cli("apply", "--auto-approve", check=True)

    with PacedLoad(_url(project_dir, route), PAYLOAD, rate=RATE) as load:
        time.sleep(2)
        # 1. A canary that passes its gates, is promoted and completes.
        v2 = registry.register(model, regularisation=0.5)
        waited = project_dir.cli("apply", "--auto-approve", "--wait", check=True)
        assert f"rollout to version {v2} completed" in waited.stdout, waited.stdout + waited.stderr
        assert "step 2/2: 60%" in waited.stderr
        completed_at = time.monotonic()
        time.sleep(2)

        # 2. Rollback to the previous revision (no longer loaded: new replicas first).
        rolled = project_dir.cli("rollback", name, check=True)
        assert f"model version {v1}" in rolled.stdout
        rolled_back_at = time.monotonic()
        plan = project_dir.cli("plan", "--detailed-exitcode")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert f"live serves model version {v1}, the specs want version {v2}" in plan.stdout
        assert "rolled back by hand" in plan.stdout
        time.sleep(2)

        # 3. A config-only change (the spec now matches the live version; 2 replicas) applies in place.
        registry.set_alias(model, "champion", v1)
        project_dir.write_spec("app.yaml", online_spec(name, model, uri, route, replicas=2, rollout=canary))
        updated = project_dir.cli("apply", "--auto-approve", check=True)
        assert "1 changed" in updated.stdout, updated.stdout
        time.sleep(2)

        # 4. Blue-green to a third version; the previous stays warm, so a rollback is instant.
        blue_green = """
            strategy: blue-green
            smoke: {requests: 10}
            analysis: {min_requests: 10}
            keep_previous: 10m
        """
        project_dir.write_spec("app.yaml", online_spec(name, model, uri, route, replicas=2, rollout=blue_green))
        v3 = registry.register(model, regularisation=0.2)
        project_dir.cli("apply", "--auto-approve", check=True)
        record = project_dir.project().drive([name], until=lambda r: r.state == "keeping")[name]
        assert record.state == "keeping", record
        switched_at = time.monotonic()
        time.sleep(2)
        ingress_before = _replica_actor_ids(project_dir, name)
        started = time.monotonic()
        instant = project_dir.cli("rollback", name, check=True)
        instant_s = time.monotonic() - started
        assert "rolled back at once" in instant.stdout, instant.stdout
        warm_rolled_at = time.monotonic()
        time.sleep(2)

    assert load.achieved_rate >= 50, load.achieved_rate
    assert load.failures == [], load.failures[:5]
    answers = load.answers
    assert {a.version for a in answers if completed_at + 1 < a.at < completed_at + 2} == {v2}
    assert {a.version for a in answers if rolled_back_at + 0.5 < a.at < rolled_back_at + 2} == {v1}
    assert v3 in {a.version for a in answers if switched_at < a.at < switched_at + 2}
    assert {a.version for a in answers if warm_rolled_at + 0.5 < a.at} == {v1}
    # "Instant": a weight flip in the running ingress replicas, which were neither restarted
    # nor joined by new ones; version 1 was still loaded in them.
    assert _replica_actor_ids(project_dir, name) == ingress_before
    flipped_s = max(a.at for a in answers if a.version == v3) - started
    print(f"warm rollback: last answer from version {v3} {flipped_s:.1f} s after `mlopsfile rollback` started "
          f"(the command took {instant_s:.1f} s, its process start and Ray client included)")

    history = {r.revision: r for r in project_dir.project().store.history(name)}
    outcomes = Counter(r.outcome for r in history.values())
    assert outcomes["promoted"] == 1 and outcomes["rolled-back"] == 1, outcomes
    assert [r.action for r in history.values()].count("rollback") == 1


def test_canary_with_failing_candidate_aborts_itself(project_dir: ProjectDir, registry: Registry) -> None:
    name, model, route = project_dir.name, f"m{project_dir.name}", f"/{project_dir.name}"
    canary = """
        strategy: canary
        steps: [{weight: 20, pause: 60s}, {weight: 50, pause: 60s}]
        analysis: {min_requests: 10, max_error_rate: 0.05}
    """
    stable = registry.register(model)
    project_dir.write_spec("app.yaml", online_spec(name, model, f"models:/{model}@champion", route, rollout=canary))
    project_dir.cli("apply", "--auto-approve", check=True)
    broken = registry.register_from_code(model, "broken_model")
    events: list[tuple[float, str]] = []

    def event(_: str, message: str) -> None:
        events.append((time.monotonic(), message))

    project = project_dir.project()
    with PacedLoad(_url(project_dir, route), PAYLOAD, rate=RATE) as load:
        time.sleep(1)
        # What `apply --wait` does, in this process so every event has a precise time.
        report = project.apply(project.plan().plan, events=event)
        assert not report.failed, report.failed
        project.drive([name], event)
        time.sleep(4)

    record = _last_rollout(project_dir, name)
    assert record.state == "aborted" and "error rate" in (record.message or ""), record
    fired = next(at for at, message in events if message.startswith("aborting"))
    failures = load.failures
    assert failures and all(a.version == broken for a in failures)
    # Bounded by the candidate's share of the requests sent from the first one it answered
    # until the gate fired, with one second of slack for the weights to reach the ingress.
    # Sent, not answered: a cold candidate's first answers take hundreds of milliseconds.
    exposed_s = fired - min(a.sent for a in load.answers if a.version == broken)
    bound = 0.2 * load.achieved_rate * (exposed_s + 1.0)
    assert len(failures) <= bound, (len(failures), bound, exposed_s)
    assert not [a for a in failures if a.at > fired + 2.0], "requests still failed 2 s after the abort"
    assert {a.version for a in load.answers if a.at > fired + 2.0} == {stable}
    status = project_dir.cli("status", check=True)
    assert "aborted" in status.stdout and "held" in status.stdout


def test_split_is_accurate_and_ab_is_sticky(project_dir: ProjectDir, registry: Registry) -> None:
    name, model, route = project_dir.name, f"m{project_dir.name}", f"/{project_dir.name}"
    hold_at_20 = "strategy: canary\nsteps: [{weight: 20}]"
    registry.register(model)
    project_dir.write_spec("app.yaml", online_spec(name, model, f"models:/{model}@champion", route, rollout=hold_at_20))
    project_dir.cli("apply", "--auto-approve", check=True)
    candidate = registry.register(model, regularisation=0.5)
    project_dir.cli("apply", "--auto-approve", check=True)
    url = _url(project_dir, route)

    def burst(count: int, headers: dict[str, str] | None = None) -> list[str]:
        with httpx.Client(timeout=30) as client:
            return [client.post(url, json=PAYLOAD, headers=headers or {}).headers["x-model-version"]
                    for _ in range(count)]

    with ThreadPoolExecutor(8) as pool:
        versions = [v for chunk in pool.map(burst, [625] * 8) for v in chunk]
    assert len(versions) == 5000
    share = versions.count(candidate) / len(versions)
    assert abs(share - 0.20) <= 0.02, share
    project_dir.cli("abort", name, check=True)

    ab = f"strategy: ab\ncandidate: {model}-b\nweight: 50\nsticky_header: x-user-id"
    other = f"---\napiVersion: mlopsfile/v1\nkind: Model\nmetadata: {{name: {model}-b}}\nspec: {{uri: \"models:/{model}/{candidate}\"}}\n"
    project_dir.write_spec("app.yaml", online_spec(name, model, f"models:/{model}/1", route, rollout=ab,
                                                   extra_models=other))
    project_dir.cli("apply", "--auto-approve", check=True)
    seen: dict[str, set[str]] = defaultdict(set)
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            for key in (f"user-{i}" for i in range(60)):
                response = client.post(url, json=PAYLOAD, headers={"x-user-id": key})
                assert response.status_code == 200
                seen[key].add(response.headers["x-model-version"])
    assert all(len(versions) == 1 for versions in seen.values()), "a key saw both arms"
    # 60 keys at 50%: both arms serve someone.
    assert set().union(*seen.values()) == {"1", candidate}
    status = project_dir.cli("status", "--format", "json", check=True)
    assert '"strategy": "ab"' in status.stdout


def _shadow_arms(project_dir: ProjectDir, name: str, mirrored: int) -> dict[str, ArmView]:
    """The arms of ``name``'s shadow rollout once the candidate has scored ``mirrored`` requests."""
    deadline = time.monotonic() + 60
    while True:
        row = next(r for r in project_dir.project().status() if r.name == name)
        assert row.rollout is not None, row
        arms = {arm.role: arm for arm in row.rollout.arms}
        if arms["candidate"].shadow_requests >= mirrored or time.monotonic() > deadline:
            return arms
        time.sleep(0.5)


def test_shadow_agrees_with_itself_and_never_holds_callers(project_dir: ProjectDir, registry: Registry) -> None:
    """Two shadows side by side: one mirrors to a twin of the stable model, one to a model that
    takes a second to answer. Callers of the second must not wait for it; what the mirroring
    costs in milliseconds is measured by bench/rollout.py, not asserted here."""
    name, model, route = project_dir.name, f"m{project_dir.name}", f"/{project_dir.name}"
    version = registry.register(model)
    uri = f"models:/{model}/{version}"
    slow_version = registry.register_from_code(f"{model}slow", "slow_model", alias=None)

    def extra(role: str, model_uri: str) -> str:
        return f'---\napiVersion: mlopsfile/v1\nkind: Model\nmetadata: {{name: {model}-{role}}}\nspec: {{uri: "{model_uri}"}}\n'

    shadow = "strategy: shadow\ncandidate: {candidate}\nsample: 1.0"
    project_dir.write_spec("twin.yaml", online_spec(
        name, model, uri, route, extra_models=extra("twin", uri),
        rollout=shadow.format(candidate=f"{model}-twin")))
    project_dir.write_spec("slow.yaml", online_spec(
        f"{name}-slow", f"{model}-stable", uri, f"{route}-slow",
        extra_models=extra("slow", f"models:/{model}slow/{slow_version}"),
        rollout=shadow.format(candidate=f"{model}-slow")))
    project_dir.cli("apply", "--auto-approve", check=True)

    def timed(client: httpx.Client, url: str, count: int) -> list[float]:
        timings = []
        for _ in range(count):
            started = time.perf_counter()
            answer = client.post(url, json=PAYLOAD)
            timings.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200 and answer.headers["x-model-version"] == version, answer.text
        return timings

    twin_count, slow_count = 300, 60
    with httpx.Client(timeout=30) as client:
        twin_ms = timed(client, _url(project_dir, route), twin_count)
        slow_ms = timed(client, _url(project_dir, f"{route}-slow"), slow_count)

    twin = _shadow_arms(project_dir, name, twin_count)
    assert twin["candidate"].shadow_requests == twin_count, twin
    assert twin["candidate"].agreement == 1.0 and twin["candidate"].shadow_errors == 0, twin
    assert twin["candidate"].weight == 0 and twin["stable"].weight == 100
    assert twin["stable"].version == version

    slow = _shadow_arms(project_dir, f"{name}-slow", slow_count)
    assert slow["candidate"].shadow_requests == slow_count and slow["candidate"].shadow_errors == 0, slow
    delay_ms = SLOW_MODEL_DELAY_S * 1000
    print(f"shadow: caller p50 {statistics.median(twin_ms):.2f} ms mirroring to a twin, "
          f"{statistics.median(slow_ms):.2f} ms mirroring to a model that answers in {delay_ms:.0f} ms")
    # Had callers waited for the candidate, every answer would take the candidate's delay.
    assert statistics.median(slow_ms) < statistics.median(twin_ms) + delay_ms / 2, (twin_ms, slow_ms)


def test_killed_apply_wait_resumes_and_promotes_once(project_dir: ProjectDir, registry: Registry) -> None:
    name, model, route = project_dir.name, f"m{project_dir.name}", f"/{project_dir.name}"
    canary = """
        strategy: canary
        steps: [{weight: 30, pause: 12s}, {weight: 60, pause: 3s}]
        analysis: {min_requests: 5}
        keep_previous: 0s
    """
    registry.register(model)
    project_dir.write_spec("app.yaml", online_spec(name, model, f"models:/{model}@champion", route, rollout=canary))
    project_dir.cli("apply", "--auto-approve", check=True)
    target = registry.register(model, regularisation=0.5)

    with PacedLoad(_url(project_dir, route), PAYLOAD, rate=20, threads=2) as load:
        process = subprocess.Popen([sys.executable, "-m", "mlopsfile", "apply", "--auto-approve", "--wait"],
                                   cwd=project_dir.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=os.environ | {"NO_COLOR": "1"}, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                record = project_dir.project().store.last_rollout(name)
                if record is not None and record.state == "step" and record.step == 0:
                    break
                time.sleep(0.5)
            else:
                pytest.fail("the rollout never reached its first pause")
            time.sleep(2)
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            process.wait(timeout=30)
        paused = _last_rollout(project_dir, name)
        assert paused.state == "step" and paused.step == 0
        resumed = project_dir.cli("apply", "--auto-approve", "--wait", check=True)
    assert f"rollout to version {target} completed" in resumed.stdout, resumed.stdout + resumed.stderr
    assert "step 2/2" in resumed.stderr  # resumed in step 1, not started again
    history = project_dir.project().store.history(name)
    assert [r.outcome for r in history].count("promoted") == 1, history
    rollouts = [r for r in history if r.action == "rollout"]
    assert len(rollouts) == 1 and rollouts[0].model_version == target
    assert load.failures == [], load.failures[:5]
