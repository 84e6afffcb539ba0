"""`mlopsfile watch`, the agent, as a process on real Ray Serve: edits applied, an invalid edit
refused, drift repaired or only reported, SIGTERM and restart resuming a rollout, pull mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mlopsfile.api import Project
from tests.integration.conftest import SETOSA, ProjectDir, Registry, online_spec
from tests.integration.traffic import PacedLoad

pytestmark = pytest.mark.integration
RESYNC_S = 3.0
CANARY = """
    strategy: canary
    steps: [{weight: 50, pause: 6s}]
    analysis: {min_requests: 3}
    keep_previous: 0s
"""


class Watch:
    """One `mlopsfile watch` process; its stderr is kept in a file to read while it runs."""

    def __init__(self, cwd: Path, log: Path, *args: str) -> None:
        self.log = log
        self.seen = 0
        with log.open("w") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "mlopsfile", "watch", "--tick", "0.5", *args],
                                            cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                            env=os.environ | {"NO_COLOR": "1"}, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text()

    def expect(self, needle: str, timeout: float) -> float:
        """Wait for a line with ``needle`` printed after the previous one expected; seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            text = self.text()
            found = text.find(needle, self.seen)
            if found >= 0:
                self.seen = found + len(needle)
                return time.monotonic() - started
            assert self.process.poll() is None, f"watch exited {self.process.returncode}:\n{text}"
            time.sleep(0.2)
        pytest.fail(f"no {needle!r} within {timeout:.0f}s:\n{self.text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            raise


@contextmanager
def watching(cwd: Path, log: Path, *args: str) -> Iterator[Watch]:
    watch = Watch(cwd, log, *args)
    try:
        yield watch
    finally:
        if watch.process.poll() is None:
            os.killpg(watch.process.pid, signal.SIGKILL)
            watch.process.wait(timeout=10)


def until(check: Callable[[], Any], timeout: float, what: str, watch: Watch) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {timeout:.0f}s; watch said:\n{watch.text()}")


def configured_replicas(project: Project, name: str) -> int | None:
    """The replica count Ray Serve holds for the application (running or still starting)."""
    app = project.drivers["online"].observe_one(name)  # type: ignore[attr-defined]
    return app.serving.replicas if app is not None and app.serving is not None else None


def live_replicas(project: Project, name: str) -> int | None:
    app = project.drivers["online"].observe_one(name)  # type: ignore[attr-defined]
    if app is None or app.serving is None or app.health.status != "RUNNING":
        return None
    return app.serving.replicas if app.health.running_replicas == app.serving.replicas else None


def delete_out_of_band(project: Project, name: str) -> None:
    """What an operator does by hand: Ray Serve's own API, no mlopsfile involved."""
    project.drivers["online"].connect()  # type: ignore[attr-defined]
    from ray import serve

    serve.delete(name, _blocking=False)  # the agent may put it back before a blocking delete returns


def test_agent_applies_edits_refuses_invalid_ones_heals_reports_and_resumes(project_dir: ProjectDir,
                                                                         registry: Registry, tmp_path: Path) -> None:
    name, model, route = project_dir.name, f"m{project_dir.name}", f"/{project_dir.name}"
    uri = f"models:/{model}@champion"
    registry.register(model)
    spec_file = project_dir.write_spec("app.yaml", online_spec(name, model, uri, route, rollout=CANARY))
    project = project_dir.project()
    with watching(project_dir.root, tmp_path / "watch-a.log", "--resync", f"{RESYNC_S:g}s") as watch:
        watch.expect(f"deployment/{name}: create applied", timeout=120)
        assert live_replicas(project, name) == 1

        project_dir.write_spec("app.yaml", online_spec(name, model, uri, route, replicas=2, rollout=CANARY))
        took = until(lambda: configured_replicas(project, name) == 2, 10, "the replicas edit applied", watch)
        print(f"replicas edit applied to Ray Serve after {took:.1f}s")
        watch.expect(f"deployment/{name}: update applied", timeout=60)  # once the new replica runs

        good = spec_file.read_text()
        spec_file.write_text(good.replace("replicas: 2", "replicas: two"))
        watch.expect("invalid, nothing applied: specs/app.yaml:", timeout=10)
        time.sleep(RESYNC_S + 1)  # a resync passes too: still nothing applied
        assert live_replicas(project, name) == 2
        assert len(project.store.history(name)) == 2
        spec_file.write_text(good)
        # The agent looks at the restored spec first, so that the deletion below is left to a resync.
        watch.expect("no changes (the specs changed)", timeout=30)

        delete_out_of_band(project, name)
        deleted = time.monotonic()
        watch.expect(f"deployment/{name}: create (drift found by resync)", timeout=RESYNC_S + 10)
        noticed = time.monotonic() - deleted
        # The next resync finds it (an application Serve is still deleting counts as gone), then
        # plans: one interval, plus the plan's own observation on a busy host.
        assert noticed <= RESYNC_S + 5, f"drift noticed after {noticed:.1f}s, resync every {RESYNC_S}s"
        until(lambda: live_replicas(project, name) == 2, 60, "the deleted application restored", watch)

        # A new version through a canary; SIGTERM while it pauses at 50%.
        target = registry.register(model, regularisation=0.5)
        with PacedLoad(f"{project_dir.cluster.http}{route}/predict", {"dataframe_records": [SETOSA]}, rate=10,
                       threads=2, max_seconds=120):
            spec_file.write_text(good + "\n")  # saved again: the agent resolves the moved alias
            until(lambda: (r := project.store.active_rollout(name)) is not None and r.state == "step", 60,
                  "the canary reached its pause", watch)
            assert watch.stop() == 0
            assert "Traceback" not in watch.text() and watch.text().rstrip().endswith("stopped")
            paused = project.store.active_rollout(name)
            assert paused is not None and paused.step == 0

            with watching(project_dir.root, tmp_path / "watch-b.log", "--resync", f"{RESYNC_S:g}s",
                          "--no-self-heal") as again:
                again.expect(f"completed: version {target} is stable", timeout=90)
                history = project.store.history(name)
                assert [r.action for r in history].count("rollout") == 1, history  # resumed, not started again

                delete_out_of_band(project, name)
                again.expect(f"deployment/{name}: drift, not repaired (self_heal is off): create", RESYNC_S + 10)
                time.sleep(RESYNC_S + 1)
                assert project.drivers["online"].observe_one(name) is None  # type: ignore[attr-defined]
                drift = project.store.last_audit("drift")
                assert drift is not None and drift["resource"] == f"deployment/{name}"
                assert again.stop() == 0


def _git(cwd: Path, *args: str) -> str:
    env = os.environ | {"GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com",
                        "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def test_pull_mode_applies_pushed_commits_and_status_names_the_commit(project_dir: ProjectDir, registry: Registry,
                                                                      tmp_path: Path) -> None:
    name, model, route = project_dir.name, f"m{project_dir.name}", f"/{project_dir.name}"
    uri = f"models:/{model}@champion"
    registry.register(model)
    remote = tmp_path / "specs.git"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    # The project directory is a developer's clone: the agent follows what is pushed from it.
    root = project_dir.root
    (root / ".gitignore").write_text(".mlopsfile/\n*.log\n")
    project_dir.write_spec("app.yaml", online_spec(name, model, uri, route))
    _git(root, "init", "--quiet", "--initial-branch=main")
    _git(root, "add", ".")
    _git(root, "commit", "--quiet", "-m", "serve the model")
    _git(root, "push", "--quiet", str(remote), "main")
    first = _git(root, "rev-parse", "HEAD")

    project = project_dir.project()
    with watching(root, tmp_path / "pull.log", "--git", remote.as_uri(), "--branch", "main",
                  "--interval", "1") as watch:
        watch.expect(f"deployment/{name}: create applied", timeout=120)
        until(lambda: (project.store.last_audit("pull") or {}).get("git_commit") == first, 10, "first commit recorded", watch)

        project_dir.write_spec("app.yaml", online_spec(name, model, uri, route, replicas=2))
        _git(root, "commit", "--quiet", "-am", "two replicas")
        _git(root, "push", "--quiet", str(remote), "main")
        second = _git(root, "rev-parse", "HEAD")
        until(lambda: live_replicas(project, name) == 2, 30, "the pushed commit applied", watch)
        until(lambda: (project.store.last_audit("pull") or {}).get("git_commit") == second, 10, "second commit recorded", watch)
        assert [r.git_commit for r in project.store.history(name)] == [first, second]
        assert watch.stop() == 0

    status = project_dir.cli("status", check=True)
    assert f"applied commit {second[:12]} from {remote.as_uri()}@main" in status.stdout, status.stdout
