"""--target with dependencies, prevent_destroy (also after its spec is gone), and a spec that
fails to load never planning deletes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlopsfile.api import Project
from mlopsfile.apply.executor import ApplyReport, ChangeOutcome
from mlopsfile.apply.lifecycle import record_lifecycle
from mlopsfile.config import load_settings
from mlopsfile.errors import PlanError, SpecErrors
from mlopsfile.plan.guard import guard_plan
from mlopsfile.plan.types import Action, Change, Plan
from mlopsfile.resources import ObservedDeployment, Ownership
from mlopsfile.spec.loader import load_specs
from mlopsfile.spec.specset import SpecSet
from tests.unit.conftest import MODEL, WriteSpecs
from tests.unit.rollout_fakes import RUNNING, open_store
from tests.unit.test_batch_spec import BATCH
from tests.unit.test_monitor_spec import MONITOR as BARE_MONITOR
from tests.unit.test_monitor_spec import ONLINE

GATED = ONLINE + "  rollout:\n    strategy: canary\n    steps: [{weight: 10}]\n    analysis: {drift: live-drift}\n"
MONITOR = BARE_MONITOR + "  on_drift: [{type: run, deployment: nightly}]\n"
OTHER = """\
apiVersion: mlopsfile/v1
kind: Deployment
metadata: {name: other}
spec:
  model: iris
  target: {type: online, route: /other}
"""


def specs_of(write_specs: WriteSpecs, *documents: str) -> SpecSet:
    root = write_specs({"a.yaml": "---\n".join((MODEL, *documents))})
    return load_specs(root, root.parent)


def change(action: Action, name: str, kind: str = "Deployment", target: str = "online") -> Change:
    return Change(action=action, kind=kind, name=name, target=target, reason=f"{action.value} for the test", revision=1)


def plan_of(*changes: Change) -> Plan:
    return Plan(project="demo", created_at="2024-05-01T12:00:00+00:00", specs_digest="d", changes=changes)


EVERYTHING = plan_of(change(Action.CREATE, "live"), change(Action.CREATE, "live-drift", "Monitor", "monitor"),
                     change(Action.RUN, "nightly", target="batch"), change(Action.CREATE, "other"),
                     change(Action.DELETE, "gone"))


def test_a_monitor_target_brings_its_deployment_and_its_run_action(write_specs: WriteSpecs) -> None:
    specset = specs_of(write_specs, ONLINE, BATCH, MONITOR, OTHER)

    plan = guard_plan(EVERYTHING, specset, {}, targets=["monitor/live-drift"])

    assert [c.address for c in plan.changes] == ["deployment/live", "monitor/live-drift", "deployment/nightly"]
    (notice,) = plan.notices
    assert notice.kind == "Plan" and notice.name == "partial"
    assert "2 other change(s) the specs need are left out" in notice.message


def test_a_deployment_target_brings_its_drift_gate_monitor(write_specs: WriteSpecs) -> None:
    specset = specs_of(write_specs, GATED, BATCH, MONITOR, OTHER)

    plan = guard_plan(EVERYTHING, specset, {}, targets=["live"])

    # the gate's monitor comes along, and with it what the monitor needs
    assert {c.address for c in plan.changes} == {"deployment/live", "monitor/live-drift", "deployment/nightly"}
    assert "deployment/other" not in {c.address for c in plan.changes}


def test_outside_the_target_nothing_is_deleted_and_a_removed_spec_can_be_targeted(write_specs: WriteSpecs) -> None:
    specset = specs_of(write_specs, ONLINE, OTHER)

    assert [c.address for c in guard_plan(EVERYTHING, specset, {}, targets=["other"]).changes] == ["deployment/other"]
    assert [c.action for c in guard_plan(EVERYTHING, specset, {}, targets=["deployment/gone"]).changes] == [Action.DELETE]


def test_an_unknown_target_is_one_line(write_specs: WriteSpecs) -> None:
    with pytest.raises(PlanError, match=r"^unknown target 'nope', 'monitor/live': no Deployment or Monitor"):
        guard_plan(EVERYTHING, specs_of(write_specs, ONLINE), {}, targets=["nope", "monitor/live"])


PROTECTED = OTHER + "lifecycle: {prevent_destroy: true}\n"


def test_prevent_destroy_refuses_a_delete_and_a_destroying_replace(write_specs: WriteSpecs) -> None:
    protected_monitor = MONITOR + "lifecycle: {prevent_destroy: true}\n"
    specset = specs_of(write_specs, PROTECTED, ONLINE, BATCH, protected_monitor)
    remembered = {("Deployment", "other"): True, ("Monitor", "live-drift"): True}

    with pytest.raises(PlanError) as caught:
        guard_plan(plan_of(change(Action.DELETE, "other")), specset, remembered, destroy=True)
    assert str(caught.value).startswith("deployment/other is protected by prevent_destroy and the plan would delete it")
    assert "\n" not in str(caught.value)
    with pytest.raises(PlanError, match=r"^monitor/live-drift is protected .* would replace \(stop, then start again\)"):
        guard_plan(plan_of(change(Action.REPLACE, "live-drift", "Monitor", "monitor")), specset, remembered)
    # An online replace starts new replicas before the old ones stop: nothing is destroyed.
    assert guard_plan(plan_of(change(Action.REPLACE, "other")), specset, remembered).changes


def test_the_flag_survives_the_removal_of_the_spec(write_specs: WriteSpecs, tmp_path: Path) -> None:
    store = open_store(tmp_path / "state.db")
    nothing_live = plan_of()
    # 1. applied with prevent_destroy: true
    first = guard_plan(nothing_live, specs_of(write_specs, PROTECTED), store.protections())
    assert [(c.name, c.prevent_destroy) for c in first.lifecycle] == [("other", True)] and first.has_changes
    record_lifecycle(store, first, ApplyReport())
    assert guard_plan(nothing_live, specs_of(write_specs, PROTECTED), store.protections()).lifecycle == ()
    # 2. its spec removed: the record still refuses the delete
    delete = plan_of(change(Action.DELETE, "other"))
    with pytest.raises(PlanError, match=r"it was applied with lifecycle\.prevent_destroy: true; put its spec back"):
        guard_plan(delete, specs_of(write_specs, ONLINE), store.protections())
    # 3. prevent_destroy: false applied, then the removal goes through and the record is forgotten
    unprotect = guard_plan(nothing_live, specs_of(write_specs, OTHER), store.protections())
    record_lifecycle(store, unprotect, ApplyReport())
    removal = guard_plan(delete, specs_of(write_specs, ONLINE), store.protections())
    record_lifecycle(store, removal, ApplyReport([ChangeOutcome(removal.changes[0], "applied")]))
    assert store.protections() == {}


class LiveOnly:
    """An online driver at its interface: one live managed application, nothing else."""

    target = "online"

    def __init__(self, project: str) -> None:
        self.project = project
        self.observed = 0

    def observe(self) -> list[ObservedDeployment]:
        self.observed += 1
        return [ObservedDeployment(name="other", health=RUNNING, ownership=Ownership(
            project=self.project, resource="deployment/other", spec_digest="x", revision=1))]


def test_a_spec_that_fails_to_load_stops_the_plan_instead_of_deleting(write_specs: WriteSpecs, tmp_path: Path) -> None:
    root = write_specs({"live.yaml": MODEL + "---\n" + ONLINE, "other.yaml": OTHER.replace("model: iris", "model: [")})
    settings = load_settings(tmp_path, root)
    driver = LiveOnly(settings.project)
    project = Project(settings, drivers_override={"online": driver}, runtime_digest_override="r")  # type: ignore[dict-item]

    with pytest.raises(SpecErrors) as caught:
        project.plan()
    assert caught.value.errors[0].line().startswith("specs/other.yaml:7:1: YAML syntax error")
    assert driver.observed == 0  # nothing was even looked at, so nothing can be planned for deletion
