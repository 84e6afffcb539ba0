"""Batch targets through the real spec loader: defaults, and located one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlopsfile.errors import SpecErrors
from mlopsfile.spec.batch import BatchTarget
from mlopsfile.spec.loader import load_specs
from mlopsfile.spec.rollout import DirectRollout
from mlopsfile.spec.specset import SpecSet
from tests.unit.conftest import MODEL, WriteSpecs

# Starts on line 8 of MODEL + "---\n" + BATCH; the target's fields sit on lines 15-17 and
# fields added at the end go to line 18.
BATCH = """\
apiVersion: mlopsfile/v1
kind: Deployment
metadata:
  name: nightly
spec:
  model: iris
  target:
    type: batch
    input: data/*.parquet
    output: out/nightly
"""


def spec_errors(root: Path) -> list[str]:
    with pytest.raises(SpecErrors) as caught:
        load_specs(root, root.parent)
    return [error.line() for error in caught.value.errors]


def target_of(specset: SpecSet, name: str = "nightly") -> BatchTarget:
    target = specset.deployment(name).spec.target
    assert isinstance(target, BatchTarget)
    return target


def batch_file(write_specs: WriteSpecs, batch: str) -> Path:
    return write_specs({"a.yaml": MODEL + "---\n" + batch})


def test_a_valid_batch_spec_loads_with_defaults(write_specs: WriteSpecs) -> None:
    specset = load_specs(batch_file(write_specs, BATCH), None)
    assert list(specset.deployments) == ["nightly"]
    target = target_of(specset)
    assert target.input == ["data/*.parquet"]  # a single string becomes a list
    assert (target.output, target.format, target.columns, target.prediction_column) == (
        "out/nightly", "auto", [], "prediction")
    assert (target.batch_size, target.concurrency, target.schedule, target.timezone) == (4096, 1, None, "UTC")
    assert (target.resources.num_cpus, target.resources.memory) == (1.0, None)
    assert isinstance(specset.deployment("nightly").spec.rollout, DirectRollout)


def test_a_fully_specified_batch_spec_loads(write_specs: WriteSpecs) -> None:
    text = BATCH.replace("input: data/*.parquet", "input: [data/a.csv, 's3://bucket/b/*.csv']") + (
        "    format: csv\n"
        "    columns: [id, customer.region, 'first name']\n"
        "    prediction_column: score\n"
        "    batch_size: 512\n"
        "    concurrency: 4\n"
        "    resources: {num_cpus: 0.5, memory: 2Gi}\n"
        "    schedule: '0 2 * * *'\n"
        "    timezone: Europe/Paris\n"
        "  rollout:\n"
        "    strategy: direct\n"
    )
    target = target_of(load_specs(batch_file(write_specs, text), None))
    assert target.input == ["data/a.csv", "s3://bucket/b/*.csv"]
    assert target.format == "csv"
    assert target.columns == ["id", "customer.region", "first name"]
    assert (target.prediction_column, target.batch_size, target.concurrency) == ("score", 512, 4)
    assert (target.resources.num_cpus, target.resources.memory) == (0.5, "2Gi")
    assert (target.schedule, target.timezone) == ("0 2 * * *", "Europe/Paris")


def test_a_batch_and_an_online_deployment_live_together(write_specs: WriteSpecs) -> None:
    online = BATCH.replace("name: nightly", "name: live").replace(
        "    type: batch\n    input: data/*.parquet\n    output: out/nightly\n", "    type: online\n")
    specset = load_specs(batch_file(write_specs, BATCH + "---\n" + online), None)
    assert sorted(specset.deployments) == ["live", "nightly"]
    assert specset.deployment("live").spec.target.type == "online"


def test_bad_cron_is_located_at_the_schedule(write_specs: WriteSpecs) -> None:
    root = batch_file(write_specs, BATCH + "    schedule: '61 * * * *'\n")
    assert spec_errors(root) == [
        "specs/a.yaml:18:15: spec.target.schedule: invalid cron schedule '61 * * * *': Bad minute",
    ]


def test_cron_nicknames_are_accepted(write_specs: WriteSpecs) -> None:
    root = batch_file(write_specs, BATCH + "    schedule: '@daily'\n")
    assert target_of(load_specs(root, None)).schedule == "@daily"


def test_unknown_time_zone_is_located_at_the_timezone(write_specs: WriteSpecs) -> None:
    root = batch_file(write_specs, BATCH + "    timezone: Mars/Olympus\n")
    assert spec_errors(root) == [
        "specs/a.yaml:18:15: spec.target.timezone: unknown time zone 'Mars/Olympus': "
        "use an IANA name such as 'UTC' or 'Europe/Paris'",
    ]


@pytest.mark.parametrize(("rollout", "message"), [
    ("canary\n    steps: [{weight: 10}]", "a batch canary has no traffic steps: it scores a `sample` of the input "
                                          "with both versions and runs in full if the analysis gates pass"),
    ("shadow\n    candidate: iris\n    sample: 0.5", "a batch shadow scores every input row on every run; sample "
                                                    "are for online targets"),
    ("blue-green", "rollout strategy 'blue-green' is for online targets; a batch target takes direct, canary or "
                   "shadow"),
])
def test_a_rollout_that_does_not_fit_a_batch_target_is_refused(write_specs: WriteSpecs, rollout: str,
                                                                message: str) -> None:
    root = batch_file(write_specs, BATCH + f"  rollout:\n    strategy: {rollout}\n")
    assert spec_errors(root) == [f"specs/a.yaml:13:3: spec: {message}"]


def test_batch_canary_and_shadow_load(write_specs: WriteSpecs) -> None:
    canary = "  rollout:\n    strategy: canary\n    sample: 0.1\n    analysis: {min_agreement: 0.9, max_mean_shift: 0.5}\n"
    root = batch_file(write_specs, BATCH + canary)
    rollout = load_specs(root, None).deployment("nightly").spec.rollout
    assert rollout.sample == 0.1 and rollout.analysis.min_agreement == 0.9


def test_online_canary_needs_steps_and_takes_no_batch_gates(write_specs: WriteSpecs) -> None:
    online = BATCH.replace("type: batch", "type: online").split("    input:")[0]
    root = batch_file(write_specs, online + "  rollout:\n    strategy: canary\n    sample: 0.1\n")
    assert spec_errors(root) == [
        "specs/a.yaml:13:3: spec: a canary of an online target needs steps: [{weight: ..., pause: ...}, ...]"]


def test_missing_target_type(write_specs: WriteSpecs) -> None:
    root = batch_file(write_specs, BATCH.replace("    type: batch\n", ""))
    assert spec_errors(root) == ["specs/a.yaml:15:5: spec.target.type: missing required field"]


def test_duplicate_column_names(write_specs: WriteSpecs) -> None:
    root = batch_file(write_specs, BATCH + "    columns: [id, region, id]\n")
    assert spec_errors(root) == ["specs/a.yaml:18:14: spec.target.columns: a column is listed twice"]


def test_invalid_column_name(write_specs: WriteSpecs) -> None:
    root = batch_file(write_specs, BATCH + "    columns: ['1st']\n")
    assert spec_errors(root) == ["specs/a.yaml:18:14: spec.target.columns: invalid column name '1st'"]


def test_empty_input_list(write_specs: WriteSpecs) -> None:
    root = batch_file(write_specs, BATCH.replace("input: data/*.parquet", "input: []"))
    assert spec_errors(root) == [
        "specs/a.yaml:16:12: spec.target.input: List should have at least 1 item after validation, not 0",
    ]


def test_online_fields_on_a_batch_target_are_unknown(write_specs: WriteSpecs) -> None:
    root = batch_file(write_specs, BATCH + "    replicas: 2\n")
    errors = spec_errors(root)
    assert len(errors) == 1
    assert errors[0].startswith("specs/a.yaml:18:5: spec.target.replicas: unknown field 'replicas'")


def test_missing_output(write_specs: WriteSpecs) -> None:
    root = batch_file(write_specs, BATCH.replace("    output: out/nightly\n", ""))
    assert spec_errors(root) == ["specs/a.yaml:15:5: spec.target.output: missing required field"]
