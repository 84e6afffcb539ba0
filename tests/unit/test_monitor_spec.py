"""Monitor documents through the real spec loader: defaults, references, and located one-line errors."""

from __future__ import annotations

from pathlib import Path

from mlopsfile.spec.loader import load_specs
from tests.unit.conftest import MODEL, WriteSpecs
from tests.unit.test_batch_spec import BATCH, spec_errors

ONLINE = """\
apiVersion: mlopsfile/v1
kind: Deployment
metadata: {name: live}
spec:
  model: iris
  target: {type: online}
"""

MONITOR = """\
apiVersion: mlopsfile/v1
kind: Monitor
metadata: {name: live-drift}
spec:
  deployment: live
  reference: data/reference.parquet
"""


def monitor_file(write_specs: WriteSpecs, *documents: str) -> Path:
    return write_specs({"a.yaml": "---\n".join((MODEL, ONLINE, BATCH, *documents))})


def test_a_bare_monitor_loads_with_defaults(write_specs: WriteSpecs) -> None:
    specset = load_specs(monitor_file(write_specs, MONITOR), None)
    spec = specset.monitor("live-drift").spec
    assert (spec.deployment, spec.reference, spec.features, spec.target) == (
        "live", "data/reference.parquet", None, "inputs")
    assert (spec.detector.kind, spec.detector.p_val, spec.window.rows, spec.sample) == ("ks", 0.05, 500, 1.0)
    assert (spec.on_drift, spec.cooldown) == ([], "30m")


def test_actions_and_a_drift_gate_load(write_specs: WriteSpecs) -> None:
    monitor = MONITOR + (
        "  detector: {kind: tabular, p_val: 0.01, categorical: [region]}\n"
        "  features: [sepal_length, region]\n"
        "  window: {duration: 10m}\n"
        "  on_drift:\n"
        "    - {type: alert, url: 'http://127.0.0.1:9000/hook', headers: {authorization: token}}\n"
        "    - {type: rollback}\n"
        "    - {type: run, deployment: nightly}\n"
        "  cooldown: 1h\n"
    )
    gated = ONLINE + "  rollout:\n    strategy: canary\n    steps: [{weight: 10}]\n    analysis: {drift: live-drift}\n"
    specset = load_specs(write_specs({"a.yaml": "---\n".join((MODEL, gated, BATCH, monitor))}), None)
    spec = specset.monitor("live-drift").spec
    assert [action.type for action in spec.on_drift] == ["alert", "rollback", "run"]
    assert spec.window.duration == "10m" and spec.detector.categorical == ["region"]
    assert specset.deployment("live").spec.rollout.analysis.drift == "live-drift"


def test_a_monitor_of_an_unknown_deployment_is_located(write_specs: WriteSpecs) -> None:
    root = monitor_file(write_specs, MONITOR.replace("deployment: live", "deployment: lve"))
    assert spec_errors(root) == [
        "specs/a.yaml:30:15: spec.deployment: no Deployment named 'lve' in the specs (known: live, nightly)"]


def test_run_actions_start_batch_deployments_only(write_specs: WriteSpecs) -> None:
    root = monitor_file(write_specs, MONITOR + "  on_drift: [{type: run, deployment: live}]\n")
    errors = spec_errors(root)
    assert len(errors) == 1 and errors[0].endswith(
        "spec.on_drift[0].deployment: Deployment 'live' is not a batch deployment: `run` starts batch deployments")


def test_a_window_needs_exactly_one_of_rows_or_duration(write_specs: WriteSpecs) -> None:
    errors = spec_errors(monitor_file(write_specs, MONITOR + "  window: {rows: 100, duration: 5m}\n"))
    assert len(errors) == 1 and errors[0].endswith("spec.window: set exactly one of rows or duration"), errors


def test_a_drift_gate_names_a_monitor_of_the_same_deployment(write_specs: WriteSpecs) -> None:
    gated = ONLINE + "  rollout:\n    strategy: canary\n    steps: [{weight: 10}]\n    analysis: {drift: nope}\n"
    errors = spec_errors(write_specs({"a.yaml": "---\n".join((MODEL, gated, BATCH, MONITOR))}))
    assert len(errors) == 1 and "spec.rollout.analysis.drift: no Monitor named 'nope' in the specs" in errors[0]
    other = MONITOR.replace("deployment: live", "deployment: nightly")
    gated = gated.replace("drift: nope", "drift: live-drift")
    errors = spec_errors(write_specs({"a.yaml": "---\n".join((MODEL, gated, BATCH, other))}))
    assert len(errors) == 1 and "Monitor 'live-drift' watches Deployment 'nightly', not this one" in errors[0]
