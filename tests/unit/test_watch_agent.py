"""The watch agent's decisions, on a real Project, planner, executor and state store, with the
online and batch drivers swapped for in-memory ones; the debouncer; pull mode's git source."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlopsfile.api import Project
from mlopsfile.config import Settings
from mlopsfile.controller.agent import Agent, AgentConfig, applied_commit
from mlopsfile.controller.debounce import Debouncer
from mlopsfile.drivers.git_source import GitSource, display_url
from mlopsfile.drivers.spec_files import SpecFiles
from mlopsfile.errors import DriverError
from mlopsfile.resources import DesiredDeployment, Health, ObservedDeployment, Ownership, ResolvedModel, Traffic

RUNNING = Health(status="RUNNING", running_replicas=1, target_replicas=1)


def spec(replicas: int | str = 1) -> str:
    return textwrap.dedent(f"""\
        apiVersion: mlopsfile/v1
        kind: Model
        metadata: {{name: iris}}
        spec: {{uri: "models:/iris@champion"}}
        ---
        apiVersion: mlopsfile/v1
        kind: Deployment
        metadata: {{name: iris}}
        spec:
          model: iris
          target:
            type: online
            route: /iris
            replicas: {replicas}
        """)


class Resolver:
    def resolve(self, name: str, uri: str) -> ResolvedModel:
        return ResolvedModel(name=name, uri=uri, registered_name=name, version="1", alias="champion",
                             pinned_uri=f"models:/{name}/1", digest=f"sha256:{name}-1", run_id="run-1")


class MemoryOnline:
    """The online DeploymentDriver over a dict of live applications."""

    target = "online"

    def __init__(self) -> None:
        self.live: dict[str, ObservedDeployment] = {}
        self.writes: list[str] = []

    def observe(self) -> list[ObservedDeployment]:
        return list(self.live.values())

    def observe_one(self, name: str) -> ObservedDeployment | None:
        return self.live.get(name)

    def create(self, desired: DesiredDeployment, ownership: Ownership) -> None:
        self.writes.append(f"create {desired.name}")
        self.live[desired.name] = ObservedDeployment(name=desired.name, ownership=ownership, serving=desired.serving,
                                                     health=RUNNING)

    def update(self, desired: DesiredDeployment, ownership: Ownership, traffic: Traffic | None = None) -> None:
        self.writes.append(f"update {desired.name}")
        self.live[desired.name] = ObservedDeployment(name=desired.name, ownership=ownership, serving=desired.serving,
                                                     health=RUNNING, traffic=traffic)

    replace = update

    def restore(self, previous: ObservedDeployment) -> None:
        self.live[previous.name] = previous

    def delete(self, name: str) -> None:
        self.writes.append(f"delete {name}")
        self.live.pop(name, None)

    def health(self, name: str) -> Health | None:
        return RUNNING if name in self.live else None


class NoBatches:
    def observe(self, outputs: dict[str, str]) -> list[Any]:
        return []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Pull mode's source: the branch's tip, or a failing fetch."""

    label = "file:///repo.git@main"

    def __init__(self) -> None:
        self.head = "a" * 40
        self.failure: str | None = None

    def sync(self) -> str:
        if self.failure:
            raise DriverError(self.failure, temporary=True)
        return self.head


class World:
    def __init__(self, tmp_path: Path, self_heal: bool = True, pull: Source | None = None) -> None:
        self.specs = tmp_path / "specs"
        self.specs.mkdir()
        self.online = MemoryOnline()
        settings = Settings(root=tmp_path, project="demo", specs=self.specs, ray_address="127.0.0.1:1",
                            ray_dashboard_url=None, http_host="127.0.0.1", http_port=8000, ray_num_cpus=None,
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", registry_uri=None,
                            state_url=f"sqlite:///{tmp_path / 'state.db'}",
                            docker_host=f"unix://{tmp_path / 'no-docker.sock'}")
        self.project = Project(settings, resolver_override=Resolver(), drivers_override={"online": self.online},
                               runtime_digest_override="runtime-1", batch_override=NoBatches())  # type: ignore[arg-type]
        self.events: list[tuple[str, str]] = []
        self.clock = Clock()
        self.agent = Agent(self.project, lambda name, message: self.events.append((name, message)),
                           AgentConfig(tick_s=1, schedule_s=60, resync_s=10, self_heal=self_heal, debounce_s=0.5),
                           pull=pull, clock=self.clock)

    def write(self, text: str) -> None:
        (self.specs / "iris.yaml").write_text(text)

    def edit(self, text: str) -> None:
        """Save a file the way a file watcher reports it, and let the burst settle."""
        self.write(text)
        self.agent._file_changed(False)
        self.clock.now += 1

    def step(self, advance: float = 0.0) -> list[tuple[str, str]]:
        self.clock.now += advance
        before = len(self.events)
        self.agent.step()
        return self.events[before:]

    def replicas(self) -> int | None:
        app = self.online.live.get("iris")
        return app.serving.replicas if app and app.serving else None


def test_debouncer_fires_once_after_a_quiet_burst() -> None:
    debouncer = Debouncer(quiet_s=0.5)
    assert debouncer.fire(0.0) is None and debouncer.deadline() is None
    for moment in (0.0, 0.2, 0.4):
        debouncer.touch(moment)
    debouncer.touch(0.6, project_file=True)
    assert debouncer.deadline() == pytest.approx(1.1)
    assert debouncer.fire(1.0) is None  # 0.4 s after the last event: still saving
    burst = debouncer.fire(1.1)
    assert burst is not None and burst.project_file
    assert debouncer.fire(5.0) is None  # consumed
    debouncer.touch(6.0)
    later = debouncer.fire(6.5)
    assert later is not None and not later.project_file


def test_start_applies_then_an_edit_applies_and_an_invalid_edit_applies_nothing(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(spec(1))
    world.step()
    assert world.replicas() == 1 and world.online.writes == ["create iris"]

    world.edit(spec(3))
    events = world.step()
    assert world.replicas() == 3, events
    assert ("deployment/iris", "update applied") in events

    world.edit(spec("three"))
    events = world.step()
    assert world.replicas() == 3 and world.online.writes == ["create iris", "update iris"]
    invalid = [message for name, message in events if name == "watch/specs"]
    assert len(invalid) == 1 and invalid[0].startswith("invalid, nothing applied: ")
    assert "specs/iris.yaml:14:15: spec.target.replicas: " in invalid[0], invalid

    # A resync while the specs are still invalid says nothing new and changes nothing.
    assert world.step(advance=11) == []
    world.edit(spec(2))
    world.step()
    assert world.replicas() == 2


def test_drift_without_self_heal_is_reported_once_and_audited(tmp_path: Path) -> None:
    world = World(tmp_path, self_heal=False)
    world.write(spec(2))
    world.step()  # the start applies: it is a change of the specs, not drift
    assert world.replicas() == 2
    app = world.online.live.pop("iris")  # deleted out of band

    assert world.step(advance=5) == []  # before the resync interval: not looked for yet
    events = world.step(advance=6)
    assert world.online.live == {}
    assert [name for name, _ in events] == ["deployment/iris"]
    assert events[0][1].startswith("drift, not repaired (self_heal is off): create: ")
    audit = world.project.store.last_audit("drift")
    assert audit is not None and audit["resource"] == "deployment/iris" and audit["outcome"] == "reported"
    assert world.step(advance=11) == []  # the same drift is not reported twice

    world.online.live["iris"] = app  # put back by hand: said once
    assert world.step(advance=11) == [("deployment/iris", "in sync again")]
    assert world.step(advance=11) == []


def test_drift_with_self_heal_is_repaired_at_the_next_resync(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(spec(2))
    world.step()
    live = world.online.live["iris"]
    assert live.serving is not None
    world.online.live["iris"] = live.model_copy(update={"serving": live.serving.model_copy(update={"replicas": 5})})

    events = world.step(advance=11)
    assert world.replicas() == 2, events
    assert any("drift found by resync" in message and "replicas" in message for _, message in events), events


def test_a_held_state_lock_defers_the_apply_to_the_next_tick(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.write(spec(1))
    lock = world.project.store.acquire_lock("apply")
    events = world.step()
    assert world.online.live == {}
    assert ("watch/lock", "another apply holds the state lock; trying again next tick") in events
    world.step(advance=1)
    assert world.online.live == {}  # still held: not said again, not applied
    world.project.store.release_lock(lock)
    world.step(advance=1)
    assert world.replicas() == 1


def test_pull_mode_applies_new_commits_records_them_and_survives_failed_fetches(tmp_path: Path) -> None:
    source = Source()
    world = World(tmp_path, pull=source)
    world.write(spec(1))
    world.step()
    assert world.replicas() == 1
    assert applied_commit(world.project).startswith(f"applied commit {'a' * 12} from file:///repo.git@main at ")

    source.failure = "git fetch of file:///repo.git@main failed: connection refused"
    events = world.step(advance=61)
    assert events == [("watch/source", source.failure + "; trying again in 60s")]

    source.failure, source.head = None, "b" * 40
    world.write(spec(2))
    world.step(advance=61)
    assert world.replicas() == 2
    entry = world.project.store.last_audit("pull")
    assert entry is not None and entry["git_commit"] == "b" * 40 and entry["outcome"] == "applied"

    source.head = "c" * 40
    world.write(spec("many"))
    world.step(advance=61)
    assert world.replicas() == 2
    status = applied_commit(world.project)
    assert status is not None and status.startswith(f"applied commit {'b' * 12}")
    assert f"newer commit {'c' * 12} invalid" in status


def test_spec_files_reacts_to_specs_and_the_project_file_only(tmp_path: Path) -> None:
    files = SpecFiles(tmp_path / "specs", tmp_path)
    specs = (tmp_path / "specs").resolve()
    assert files.relevant(specs / "a.yaml", False) is False
    assert files.relevant(specs / "sub", True) is False
    assert files.relevant(specs / ".a.yaml.swp", False) is None
    assert files.relevant(tmp_path.resolve() / "mlopsfile.yaml", False) is True
    assert files.relevant(tmp_path.resolve() / ".mlopsfile" / "state.db", False) is None
    assert files.relevant(tmp_path.resolve() / "README.md", False) is None


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(cwd), "PATH": "/usr/bin:/bin"}).stdout.strip()


def test_git_source_follows_the_branch_and_fails_temporarily(tmp_path: Path) -> None:
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    _git(tmp_path, "clone", "--quiet", str(remote), str(work))
    (work / "a.yaml").write_text("one\n")
    _git(work, "add", ".")
    _git(work, "commit", "--quiet", "-m", "one")
    _git(work, "push", "--quiet", "origin", "HEAD:main")
    source = GitSource(str(remote), "main", tmp_path / "cache" / "checkout")
    assert source.sync() == _git(work, "rev-parse", "HEAD")

    (work / "a.yaml").write_text("two\n")
    _git(work, "commit", "--quiet", "-am", "two")
    _git(work, "push", "--quiet", "origin", "HEAD:main")
    (source.directory / "a.yaml").write_text("edited in the cache\n")
    assert source.sync() == _git(work, "rev-parse", "HEAD")
    assert (source.directory / "a.yaml").read_text() == "two\n"

    gone = GitSource(str(tmp_path / "missing.git"), "main", tmp_path / "cache" / "other")
    with pytest.raises(DriverError) as caught:
        gone.sync()
    assert caught.value.temporary and "git clone of" in str(caught.value)


def test_display_url_drops_credentials() -> None:
    assert display_url("https://bot:s3cret@example.com/org/specs.git") == "https://example.com/org/specs.git"
    assert display_url("git@example.com:org/specs.git") == "git@example.com:org/specs.git"
