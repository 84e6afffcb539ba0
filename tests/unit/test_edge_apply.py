"""Applying edge changes through an in-memory edge driver: order of steps, and nothing moved on failure."""

from __future__ import annotations

from pathlib import Path

import yaml

from mlopsfile.apply.executor import Executor
from mlopsfile.edge_resources import DesiredEdge
from mlopsfile.errors import DriverError
from mlopsfile.plan.planner import make_plan
from mlopsfile.resources import DesiredState, ObservedState
from mlopsfile.state.store import StateStore

GOLDEN = Path(__file__).parent / "golden"


class FakeEdgeImages:
    """Records calls; fails the step named in ``fail``."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if name.split(" ")[0] == self.fail:
            raise DriverError(f"{name} failed")

    def build(self, want: DesiredEdge) -> str:
        self._step(f"build {want.model.version}")
        return "sha256:new"

    def push(self, want: DesiredEdge) -> None:
        self._step(f"push {want.remote()}")

    def bundle(self, want: DesiredEdge) -> Path:
        self._step(f"bundle {want.bundle_name()}")
        return Path(want.bundle or ".") / want.bundle_name()

    def move_tags(self, want: DesiredEdge, tags: tuple[str, ...]) -> None:
        self._step(f"tags {','.join(tags)}")

    def delete(self, name: str) -> None:
        self._step(f"delete {name}")


def run_case(case: str, tmp_path: Path, edge: FakeEdgeImages, update: dict | None = None) -> tuple[list, StateStore]:
    desired_data = yaml.safe_load((GOLDEN / case / "desired.yaml").read_text())
    for item in desired_data["edges"]:
        item.update(update or {})
    desired = DesiredState.model_validate(desired_data)
    observed = ObservedState.model_validate(yaml.safe_load((GOLDEN / case / "observed.yaml").read_text()) or {})
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    plan = make_plan(desired, observed, store.last_revisions(), "2024-05-01T12:00:00+00:00")
    report = Executor({}, store, observed, None, "plan-1", edge=edge).run(plan)
    return report.outcomes, store


def test_build_then_bundle_then_tags_then_push(tmp_path: Path) -> None:
    edge = FakeEdgeImages()
    outcomes, store = run_case("edge_new_version_direct", tmp_path, edge,
                               {"registry": "127.0.0.1:5000", "bundle": "/srv/b"})
    assert [o.outcome for o in outcomes] == ["applied"]
    assert [c.split(" ")[0] for c in edge.calls] == ["build", "bundle", "tags", "push"]
    assert "tags canary,stable" in edge.calls
    assert store.last_revisions() == {"iris-edge": 1}


def test_a_failed_build_moves_no_tag_and_records_the_failure(tmp_path: Path) -> None:
    edge = FakeEdgeImages(fail="build")
    outcomes, store = run_case("edge_new_version_canary", tmp_path, edge)
    assert [o.outcome for o in outcomes] == ["failed"]
    assert edge.calls == ["build 2"]
    assert "build 2 failed" in outcomes[0].message
    assert store.last_revisions() == {"iris-edge": 1}


def test_a_removed_spec_deletes_the_images(tmp_path: Path) -> None:
    edge = FakeEdgeImages()
    outcomes, _ = run_case("edge_spec_removed", tmp_path, edge)
    assert [o.outcome for o in outcomes] == ["applied"] and edge.calls == ["delete iris-edge"]
