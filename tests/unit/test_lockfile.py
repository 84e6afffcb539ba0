"""mlopsfile.lock against a real MLflow registry (sqlite) and an in-memory Ray Serve.

With a lock, plan and apply use the locked versions: moving an alias changes nothing but a
notice until `mlopsfile lock` is run again.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlopsfile.api import Project
from mlopsfile.cli import app
from mlopsfile.drivers.registry import digest_directory
from mlopsfile.errors import PlanError, SpecErrors
from mlopsfile.lockfile import LOCK_FILE, LockFileError, parse_lock
from mlopsfile.locking import LockOutOfDate
from mlopsfile.plan.render import render_text
from mlopsfile.plan.types import Action
from mlopsfile.resources import DesiredDeployment, Health, ObservedDeployment, Ownership, Traffic
from tests.unit.rollout_fakes import open_store

SPECS = """\
apiVersion: mlopsfile/v1
kind: Model
metadata: {name: iris}
spec: {uri: "models:/iris@champion"}
---
apiVersion: mlopsfile/v1
kind: Model
metadata: {name: rose}
spec: {uri: "models:/rose@champion"}
---
apiVersion: mlopsfile/v1
kind: Deployment
metadata: {name: iris}
spec:
  model: iris
  target: {type: online, replicas: 1}
---
apiVersion: mlopsfile/v1
kind: Deployment
metadata: {name: rose}
spec:
  model: rose
  target: {type: online, replicas: 1}
"""


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry made once (creating MLflow's tables is the slow part): iris and rose with
    versions 1 and 2 of different artifacts, @champion on version 1."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("registry")
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    for name in ("iris", "rose"):
        client.create_registered_model(name)
        for version in (1, 2):
            artifacts = folder / f"{name}-{version}"
            artifacts.mkdir()
            (artifacts / "model.bin").write_text(f"{name} weights {version}")
            client.create_model_version(name, source=str(artifacts))
        client.set_registered_model_alias(name, "champion", "1")
    return folder


class MemoryServe:
    """The online driver's interface over deployments kept in memory."""

    target = "online"

    def __init__(self) -> None:
        self.live: dict[str, ObservedDeployment] = {}
        self.calls: list[str] = []

    def observe(self) -> list[ObservedDeployment]:
        return list(self.live.values())

    def observe_one(self, name: str) -> ObservedDeployment | None:
        return self.live.get(name)

    def create(self, desired: DesiredDeployment, ownership: Ownership) -> None:
        self.calls.append(f"create {desired.name} {desired.serving.model_uri}")
        self.live[desired.name] = ObservedDeployment(
            name=desired.name, ownership=ownership, serving=desired.serving,
            health=Health(status="RUNNING", running_replicas=1, target_replicas=1))

    def update(self, desired: DesiredDeployment, ownership: Ownership, traffic: Traffic | None = None) -> None:
        self.create(desired, ownership)

    def replace(self, desired: DesiredDeployment, ownership: Ownership, traffic: Traffic | None = None) -> None:
        self.create(desired, ownership)

    def restore(self, previous: ObservedDeployment) -> None:
        self.live[previous.name] = previous

    def delete(self, name: str) -> None:
        self.live.pop(name, None)

    def health(self, name: str) -> Health | None:
        return self.live[name].health if name in self.live else None


class NoBatches:
    def observe(self, outputs: dict[str, str]) -> list:
        return []


class NoEdges:
    def observe(self, bundles: dict[str, str | None]) -> list:
        return []


class World:
    """A project directory with specs, a copy of the registry and in-memory live systems."""

    def __init__(self, root: Path, template: Path, specs: str = SPECS) -> None:
        from mlflow import MlflowClient

        self.root = root
        shutil.copyfile(template / "mlflow.db", root / "mlflow.db")
        self.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        (root / "mlopsfile.yaml").write_text(f"project: demo\nmlflow: {{tracking_uri: '{self.tracking_uri}'}}\n")
        self.write_specs(specs)
        self.registry = MlflowClient(tracking_uri=self.tracking_uri)
        self.serve = MemoryServe()
        self.template = template

    def write_specs(self, text: str) -> None:
        (self.root / "specs").mkdir(exist_ok=True)
        (self.root / "specs" / "stack.yaml").write_text(text)

    def project(self) -> Project:
        """A fresh Project per command, as each CLI run makes one."""
        project = Project.open(self.root)
        project.drivers_override = {"online": self.serve}
        project.batch_override = NoBatches()  # type: ignore[assignment]
        project.runtime_digest_override = "runtime-1"
        project.__dict__["edge"] = NoEdges()
        project.__dict__["store"] = open_store(self.root / "state.db")
        return project

    def apply(self) -> None:
        project = self.project()
        report = project.apply(project.plan().plan)
        assert not report.failed

    def move_alias(self, name: str, version: str) -> None:
        self.registry.set_registered_model_alias(name, "champion", version)

    @property
    def lock_text(self) -> str:
        return (self.root / LOCK_FILE).read_text()

    def digest(self, name: str, version: int) -> str:
        return "sha256:" + digest_directory(self.template / f"{name}-{version}")


@pytest.fixture
def world(tmp_path: Path, registry_template: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.chdir(tmp_path)  # errors name the lock as users see it: relative to where they run
    return World(tmp_path, registry_template)


def _version_of(world: World, name: str) -> str:
    return world.serve.live[name].serving.model_version


def test_lock_writes_each_model_with_its_version_digest_alias_and_time(world: World) -> None:
    result = world.project().lock()

    lock = parse_lock(world.lock_text, LOCK_FILE)
    assert sorted(lock.models) == ["iris", "rose"]
    iris = lock.models["iris"]
    assert (iris.uri, iris.alias, iris.version, iris.pinned_uri) == ("models:/iris@champion", "champion", "1",
                                                                     "models:/iris/1")
    assert iris.digest == world.digest("iris", 1) != world.digest("iris", 2)
    assert datetime.fromisoformat(iris.resolved_at).tzinfo is not None
    assert [c.kind for c in result.changes] == ["added", "added"]
    assert world.lock_text.index("  iris:") < world.lock_text.index("  rose:")
    assert "lock_version: 1" in world.lock_text

    before = world.lock_text
    again = world.project().lock()
    assert world.lock_text == before  # same registry, same bytes: the time of a still-current pin stays
    assert not again.moved


def test_with_a_lock_a_moved_alias_changes_nothing_but_a_notice_until_lock_runs_again(world: World) -> None:
    world.project().lock()
    world.apply()
    assert _version_of(world, "iris") == "1"

    world.move_alias("iris", "2")
    plan = world.project().plan().plan

    assert not plan.has_changes
    assert [(n.kind, n.name) for n in plan.notices] == [("Model", "iris")]
    assert "alias @champion now resolves to version 2" in plan.notices[0].message
    assert "mlopsfile.lock pins version 1" in plan.notices[0].message
    iris = next(m for m in plan.models if m.name == "iris")
    assert (iris.version, iris.locked, iris.uri) == ("1", True, "models:/iris@champion")
    text = render_text(plan, color=False)
    assert "! model/iris: alias @champion now resolves to version 2" in text
    assert "iris: models:/iris@champion -> version 1 (mlopsfile.lock)" in text
    world.apply()
    assert _version_of(world, "iris") == "1"

    world.project().lock()
    plan = world.project().plan().plan

    assert not plan.notices
    [change] = plan.changes
    assert (change.action, change.name) == (Action.REPLACE, "iris")
    diffs = {d.field: (d.old, d.new) for d in change.diffs}
    assert diffs["model_version"] == ("1", "2")
    assert diffs["model_digest"] == (world.digest("iris", 1), world.digest("iris", 2))
    world.apply()
    assert _version_of(world, "iris") == "2"


def test_without_a_lock_the_plan_follows_the_alias(world: World) -> None:
    world.apply()
    world.move_alias("iris", "2")

    plan = world.project().plan().plan

    assert [(c.action, c.name) for c in plan.changes] == [(Action.REPLACE, "iris")]
    assert not plan.notices and not any(m.locked for m in plan.models)


def test_check_fails_on_a_missing_or_stale_lock_and_changes_nothing(world: World) -> None:
    with pytest.raises(LockOutOfDate, match=r"^no mlopsfile.lock; run `mlopsfile lock`"):
        world.project().lock(check=True)
    assert not (world.root / LOCK_FILE).exists()

    world.project().lock()
    assert world.project().lock(check=True).moved == ()
    before = world.lock_text

    world.move_alias("iris", "2")
    world.move_alias("rose", "2")
    with pytest.raises(LockOutOfDate) as caught:
        world.project().lock(check=True)
    assert str(caught.value) == ("mlopsfile.lock is out of date: model 'iris': models:/iris@champion now resolves to "
                                 "version 2 (locked: 1) (and 1 more); run `mlopsfile lock`")
    assert world.lock_text == before


def test_check_names_a_model_the_lock_misses(world: World) -> None:
    world.write_specs(SPECS.split("---\n")[0] + "---\n" + SPECS.split("---\n")[2])
    world.project().lock()
    world.write_specs(SPECS)

    with pytest.raises(LockOutOfDate, match="model 'rose' is not locked"):
        world.project().lock(check=True)


def test_update_moves_only_the_named_model(world: World) -> None:
    world.project().lock()
    rose_before = parse_lock(world.lock_text, LOCK_FILE).models["rose"]
    world.move_alias("iris", "2")
    world.move_alias("rose", "2")

    result = world.project().lock(update=["iris"])

    lock = parse_lock(world.lock_text, LOCK_FILE)
    assert lock.models["iris"].version == "2"
    assert lock.models["rose"] == rose_before
    assert {c.name: c.kind for c in result.changes} == {"iris": "updated", "rose": "kept"}
    plan = world.project().plan().plan
    assert [(n.name, "version 2" in n.message) for n in plan.notices] == [("rose", True)]
    with pytest.raises(PlanError, match="no Model named 'tulip'"):
        world.project().lock(update=["tulip"])


def test_a_malformed_lock_is_one_error_at_its_line_and_column(world: World) -> None:
    world.project().lock()
    text = world.lock_text
    (world.root / LOCK_FILE).write_text(text.replace("    version: '1'", "    version: '1'\n    verison: 2", 1))
    with pytest.raises(LockFileError) as caught:
        world.project().plan()
    line = text.splitlines().index("    version: '1'") + 2  # 1-based, one below
    assert str(caught.value) == f"mlopsfile.lock:{line}:5: models.iris.verison: unknown field 'verison'"

    (world.root / LOCK_FILE).write_text("lock_version: 1\nmodels: {iris: [\n")
    result = CliRunner().invoke(app, ["-C", str(world.root), "lock", "--check"])
    assert result.exit_code == 1
    [message] = result.stderr.strip().splitlines()
    assert message.startswith("error: mlopsfile.lock:3:1: YAML syntax error")

    world.project().lock()  # a full lock is how a broken one is repaired
    assert parse_lock(world.lock_text, LOCK_FILE).models["iris"].version == "1"


def test_a_digest_that_differs_from_the_lock_fails_the_plan_and_nothing_is_applied(world: World) -> None:
    world.project().lock()
    (world.root / LOCK_FILE).write_text(world.lock_text.replace(world.digest("iris", 1), "sha256:" + "0" * 64))

    with pytest.raises(SpecErrors) as caught:
        world.apply()

    [error] = caught.value.errors
    assert error.line().startswith("specs/stack.yaml:4:")
    assert "mlopsfile.lock: the artifacts of model 'iris' (models:/iris/1) changed since it was locked" in error.line()
    assert world.serve.calls == []


def test_a_locked_version_the_registry_lost_fails_the_plan(world: World) -> None:
    world.project().lock()
    world.registry.delete_model_version("iris", "1")

    with pytest.raises(SpecErrors, match=re.escape("mlopsfile.lock pins model 'iris' to models:/iris/1, which the "
                                                   "registry no longer has")):
        world.project().plan()


def test_a_model_missing_from_the_lock_or_with_a_new_uri_asks_for_lock(world: World) -> None:
    world.write_specs(SPECS.split("---\n")[0] + "---\n" + SPECS.split("---\n")[2])
    world.project().lock()
    world.write_specs(SPECS)
    with pytest.raises(SpecErrors, match=r"model 'rose' is not in mlopsfile.lock; run `mlopsfile lock`"):
        world.project().plan()

    world.write_specs(SPECS.replace("models:/iris@champion", "models:/iris/2"))
    with pytest.raises(SpecErrors) as caught:
        world.project().plan()
    lines = [e.line() for e in caught.value.errors]
    assert any("mlopsfile.lock pins model 'iris' for models:/iris@champion, not models:/iris/2; "
               "run `mlopsfile lock --update iris`" in line for line in lines)

    world.project().lock()
    assert world.project().plan().plan.models[0].version == "2"


def test_lock_cli_reports_what_moved(world: World) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["-C", str(world.root), "lock"])
    assert first.exit_code == 0, first.output
    assert "Wrote mlopsfile.lock: 2 model(s), 2 changed." in first.stdout

    world.move_alias("iris", "2")
    check = runner.invoke(app, ["-C", str(world.root), "lock", "--check"])
    assert check.exit_code == 1
    assert check.stderr.strip() == ("error: mlopsfile.lock is out of date: model 'iris': models:/iris@champion now "
                                    "resolves to version 2 (locked: 1); run `mlopsfile lock`")

    update = runner.invoke(app, ["-C", str(world.root), "lock", "--update", "iris"])
    assert update.exit_code == 0, update.output
    assert "~ model 'iris': models:/iris@champion now resolves to version 2 (locked: 1)" in update.stdout
    assert runner.invoke(app, ["-C", str(world.root), "lock", "--check"]).exit_code == 0
