"""Batch deployments in the plan: when a run is proposed, held or left alone, and why.

Planner inputs are built here as plain values (no Ray, no MLflow, no files): a desired
batch, the manifest its last successful run published, and the Ray Jobs found for it.
``NOW`` is the plan's ``created_at``; schedules are evaluated at that instant.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from mlopsfile.plan.batch import batch_settings, plan_batches, schedule_times
from mlopsfile.plan.planner import make_plan
from mlopsfile.plan.types import Action, Change, FieldDiff, Notice, Plan, Unchanged
from mlopsfile.resources import (
    BATCH_FAILURE_EXIT_CODE,
    BatchRollout,
    BatchScoring,
    DesiredBatch,
    DesiredState,
    InputFile,
    InputSnapshot,
    JobRun,
    ObservedBatch,
    ObservedState,
    PublishedRun,
    ResolvedModel,
)
from mlopsfile.spec.specset import canonical_digest

PROJECT = "demo"
NOW = "2024-05-01T12:00:00+00:00"
OUTPUT = "/data/out/nightly"
DATA = "/data/in"

# -- helpers ---------------------------------------------------------------------------


def resolved(version: str = "1", name: str = "iris") -> ResolvedModel:
    return ResolvedModel(name=name, uri=f"models:/{name}@champion", registered_name=name, version=version,
                         alias="champion", pinned_uri=f"models:/{name}/{version}",
                         digest=f"sha256:{name}-v{version}", run_id=f"run-{version}")


def files(**sizes: int | tuple[int, int]) -> tuple[InputFile, ...]:
    """``a_parquet=100`` -> /data/in/a.parquet, 100 bytes, mtime 1; a tuple gives (size, mtime_ns)."""
    out = []
    for key, value in sizes.items():
        size, mtime = value if isinstance(value, tuple) else (value, 1)
        out.append(InputFile(path=f"{DATA}/{key.replace('_', '.')}", size=size, mtime_ns=mtime))
    return tuple(sorted(out, key=lambda f: f.path))


def snapshot(listed: tuple[InputFile, ...]) -> InputSnapshot:
    return InputSnapshot(digest=canonical_digest([f.model_dump() for f in listed]), files=listed)


DEFAULT_FILES = files(a_parquet=1000, b_parquet=2000)


def batch(name: str = "nightly", *, version: str = "1", listed: tuple[InputFile, ...] = DEFAULT_FILES,
          **job: Any) -> DesiredBatch:
    model = resolved(version)
    values: dict[str, Any] = {
        "model_uri": model.pinned_uri, "model_version": model.version, "model_digest": model.digest,
        "runtime_digest": "runtime-1", "inputs": (f"{DATA}/*.parquet",), "output": f"/data/out/{name}",
    }
    values.update(job)
    return DesiredBatch(name=name, spec_digest=f"spec-{name}", source=f"specs/{name}.yaml:1:1", model=model,
                        job=BatchScoring(**values), input=snapshot(listed))


def published(want: DesiredBatch, *, started_at: str = "2024-05-01T03:00:00+00:00", run_id: str = "run-a",
              rows: int = 42) -> PublishedRun:
    """The manifest a successful run of ``want`` leaves behind."""
    return PublishedRun(run_id=run_id, run_key=want.run_key, model_version=want.model.version,
                        model_digest=want.job.model_digest, input_digest=want.input.digest, rows=rows,
                        started_at=started_at, finished_at=started_at, path=f"{want.job.output}/runs/{run_id}",
                        input_files=want.input.files, settings=batch_settings(want))


def job(want: DesiredBatch, status: str, *, job_id: str = "job-1", revision: int = 1, exit_code: int | None = None,
        message: str = "") -> JobRun:
    return JobRun(job_id=job_id, status=status, run_key=want.run_key, revision=revision,
                  model_version=want.model.version, input_digest=want.input.digest, exit_code=exit_code,
                  message=message)


def live(name: str = "nightly", *, output: PublishedRun | None = None, jobs: tuple[JobRun, ...] = (),
         project: str = PROJECT) -> ObservedBatch:
    return ObservedBatch(name=name, project=project, output=f"/data/out/{name}", published=output, jobs=jobs)


def desired(*batches: DesiredBatch) -> DesiredState:
    return DesiredState(project=PROJECT, specs_digest="specs-1", batches=batches,
                        models=tuple({b.model.name: b.model for b in batches}.values()))


def plan(want: DesiredState, found: tuple[ObservedBatch, ...] = (), revisions: dict[str, int] | None = None,
         created_at: str = NOW, **kwargs: Any) -> Plan:
    return make_plan(want, ObservedState(batches=found), revisions or {}, created_at, **kwargs)


def only_change(result: Plan) -> Change:
    assert len(result.changes) == 1, result.changes
    assert result.notices == ()
    return result.changes[0]


def only_unchanged(result: Plan) -> Unchanged:
    assert result.changes == ()
    assert len(result.unchanged) == 1, result.unchanged
    return result.unchanged[0]


# -- never run, up to date ---------------------------------------------------------------


def test_never_run_runs_with_revision_one() -> None:
    want = batch()
    change = only_change(plan(desired(want)))
    assert (change.action, change.name, change.target, change.revision) == (Action.RUN, "nightly", "batch", 1)
    assert change.reason == (f"no output is published at {OUTPUT} yet; model iris version 1 "
                             "over 2 files (2.9 KiB)")
    assert change.batch == want
    assert change.desired is None
    # Every field is new: the renderer shows them as additions.
    assert all(d.old is None for d in change.diffs)
    assert [d.field for d in change.diffs] == sorted([
        "model_version", "input_digest", "model_uri", "model_digest", "inputs", "format", "output", "columns",
        "prediction_column",
    ])
    assert FieldDiff(field="input_digest", new=want.input.digest[:12]) in change.diffs


def test_never_run_with_an_observed_batch_but_no_output_or_jobs() -> None:
    change = only_change(plan(desired(batch()), (live(),)))
    assert change.action == Action.RUN
    assert "no output is published" in change.reason
    assert change.revision == 1


def test_published_output_with_the_same_run_key_is_up_to_date() -> None:
    want = batch()
    result = plan(desired(want), (live(output=published(want, run_id="run-7", rows=150)),))
    unchanged = only_unchanged(result)
    assert unchanged.name == "nightly"
    assert unchanged.reason == "up to date: output of model version 1 over 2 files, 150 rows (run run-7)"
    assert result.notices == ()


def test_up_to_date_with_a_schedule_names_the_next_run() -> None:
    want = batch(schedule="0 2 * * *")
    # Published after today's 02:00 fire, so nothing is due; the next fire is tomorrow 02:00.
    result = plan(desired(want), (live(output=published(want, started_at="2024-05-01T02:05:00+00:00")),))
    assert only_unchanged(result).reason == (
        "up to date: output of model version 1 over 2 files, 42 rows (run run-a); "
        "next scheduled run 2024-05-02T02:00:00+00:00"
    )


def test_batch_size_or_concurrency_change_alone_runs_nothing() -> None:
    before = batch()
    after = batch(batch_size=128, concurrency=8, num_cpus=2.0, memory=2**30)
    assert after.run_key == before.run_key
    result = plan(desired(after), (live(output=published(before)),))
    assert only_unchanged(result).reason.startswith("up to date:")


# -- what moved since the published output -----------------------------------------------


def test_model_version_moved_runs() -> None:
    before, after = batch(version="1"), batch(version="2")
    change = only_change(plan(desired(after), (live(output=published(before)),), {"nightly": 1}))
    assert change.action == Action.RUN
    assert change.revision == 2
    assert change.reason.startswith("model iris (alias @champion) moves from version 1 to 2")
    assert FieldDiff(field="model_version", old="1", new="2") in change.diffs
    fields = [d.field for d in change.diffs]
    assert "input_digest" not in fields and "columns" not in fields


def test_model_version_moved_reason_names_only_the_model() -> None:
    before, after = batch(version="1"), batch(version="2")
    change = only_change(plan(desired(after), (live(output=published(before)),)))
    assert change.reason == "model iris (alias @champion) moves from version 1 to 2"


def test_same_version_with_new_artifacts_runs() -> None:
    before = batch()
    after = batch(model_digest="sha256:rebuilt")
    change = only_change(plan(desired(after), (live(output=published(before)),)))
    assert change.reason.startswith("model iris version 1 has different artifacts (digest changed)")


def test_input_changed_names_the_files() -> None:
    before = batch(listed=files(a_parquet=1000, b_parquet=2000))
    after = batch(listed=files(a_parquet=(1000, 2), b_parquet=2000, c_parquet=10))
    change = only_change(plan(desired(after), (live(output=published(before)),)))
    assert change.action == Action.RUN
    assert change.reason == "the input changed: modified a.parquet, added c.parquet"
    assert change.diffs == (FieldDiff(field="input_digest", old=before.input.digest[:12],
                                      new=after.input.digest[:12]),)


def test_input_change_lists_removed_files_and_shortens_long_lists() -> None:
    before = batch(listed=files(a_parquet=1, b_parquet=1))
    after = batch(listed=files(b_parquet=1, c_parquet=1, d_parquet=1, e_parquet=1, f_parquet=1))
    change = only_change(plan(desired(after), (live(output=published(before)),)))
    assert change.reason == "the input changed: added c.parquet, d.parquet, e.parquet and 1 more, removed a.parquet"


def test_output_settings_change_runs_and_names_them() -> None:
    before = batch()
    after = batch(columns=("id",), prediction_column="score")
    change = only_change(plan(desired(after), (live(output=published(before)),)))
    assert change.action == Action.RUN
    assert change.reason == "the output settings changed: columns, prediction_column"
    assert change.diffs == (
        FieldDiff(field="columns", old=[], new=["id"]),
        FieldDiff(field="prediction_column", old="prediction", new="score"),
    )


def test_columns_change_alone() -> None:
    before = batch()
    after = batch(columns=("id", "region"))
    change = only_change(plan(desired(after), (live(output=published(before)),)))
    assert change.reason == "the output settings changed: columns"


def test_published_without_recorded_settings_says_so() -> None:
    before = batch()
    after = batch(columns=("id",))
    old = published(before).model_copy(update={"settings": {}})
    change = only_change(plan(desired(after), (live(output=old),)))
    assert change.reason == "the published output was made with other settings"


# -- schedules ---------------------------------------------------------------------------


def test_schedule_due_in_utc() -> None:
    want = batch(schedule="0 2 * * *")
    # Made at 12:00 UTC; today's 02:00 fire came after the published run of yesterday.
    result = plan(desired(want), (live(output=published(want, started_at="2024-04-30T02:00:30+00:00")),),
                  {"nightly": 4})
    change = only_change(result)
    assert change.action == Action.RUN
    assert change.revision == 5
    assert change.reason == ("schedule '0 2 * * *' (UTC) was due at 2024-05-01T02:00:00+00:00; "
                             "the published output started at 2024-04-30T02:00:30+00:00")
    assert change.diffs == ()


def test_schedule_not_due_when_the_output_started_after_the_last_fire() -> None:
    want = batch(schedule="0 2 * * *")
    result = plan(desired(want), (live(output=published(want, started_at="2024-05-01T02:00:00+00:00")),))
    assert only_unchanged(result).reason.endswith("next scheduled run 2024-05-02T02:00:00+00:00")


def test_schedule_is_read_in_its_time_zone() -> None:
    # 02:00 in Paris (CEST, UTC+2) is 00:00 UTC. An output started at 01:00 UTC is after
    # Paris' fire but before UTC's: only the UTC schedule is due.
    started = "2024-05-01T01:00:00+00:00"
    paris = batch(schedule="0 2 * * *", timezone="Europe/Paris")
    utc = batch(schedule="0 2 * * *", timezone="UTC")
    assert only_unchanged(plan(desired(paris), (live(output=published(paris, started_at=started)),))).reason.endswith(
        "next scheduled run 2024-05-02T00:00:00+00:00")
    assert "was due at 2024-05-01T02:00:00+00:00" in only_change(
        plan(desired(utc), (live(output=published(utc, started_at=started)),))).reason

    # An output started before midnight UTC is before Paris' fire too.
    change = only_change(plan(desired(paris), (live(output=published(paris, started_at="2024-04-30T23:00:00+00:00")),)))
    assert change.reason == ("schedule '0 2 * * *' (Europe/Paris) was due at 2024-05-01T00:00:00+00:00; "
                             "the published output started at 2024-04-30T23:00:00+00:00")


def test_schedule_honours_winter_time() -> None:
    # In January Paris is UTC+1: 02:00 there is 01:00 UTC.
    want = batch(schedule="0 2 * * *", timezone="Europe/Paris")
    found = (live(output=published(want, started_at="2024-01-15T00:30:00+00:00")),)
    change = only_change(plan(desired(want), found, created_at="2024-01-15T12:00:00+00:00"))
    assert "was due at 2024-01-15T01:00:00+00:00" in change.reason


def test_schedule_times_around_a_fire_time() -> None:
    before = datetime.fromisoformat("2024-05-01T01:59:59+00:00")
    after = datetime.fromisoformat("2024-05-01T02:00:01+00:00")
    assert [t.isoformat() for t in schedule_times("0 2 * * *", "UTC", before)] == [
        "2024-04-30T02:00:00+00:00", "2024-05-01T02:00:00+00:00"]
    assert [t.isoformat() for t in schedule_times("0 2 * * *", "UTC", after)] == [
        "2024-05-01T02:00:00+00:00", "2024-05-02T02:00:00+00:00"]


def test_schedule_times_at_exactly_a_fire_time() -> None:
    at = datetime.fromisoformat("2024-05-01T02:00:00+00:00")
    assert [t.isoformat() for t in schedule_times("0 2 * * *", "UTC", at)] == [
        "2024-05-01T02:00:00+00:00", "2024-05-02T02:00:00+00:00"]


# -- jobs that run or ran ----------------------------------------------------------------


def test_an_active_job_holds_off_any_run() -> None:
    want = batch(version="2")
    found = live(output=published(batch(version="1")), jobs=(job(want, "RUNNING", job_id="raysubmit_42"),))
    reason = only_unchanged(plan(desired(want), (found,))).reason
    assert reason == ("job raysubmit_42 for this model and input is running; "
                      "the next plan after it ends decides again")


def test_an_active_job_for_an_earlier_model_is_named_as_such() -> None:
    old, want = batch(version="1"), batch(version="2")
    found = live(jobs=(job(old, "PENDING", job_id="raysubmit_7"),))
    result = plan(desired(want), (found,), forced_runs=["nightly"])
    assert only_unchanged(result).reason == ("job raysubmit_7 for an earlier model or input is pending; "
                                             "the next plan after it ends decides again")


def test_a_run_that_failed_on_its_data_is_held() -> None:
    want = batch()
    failed = job(want, "FAILED", job_id="raysubmit_9", exit_code=BATCH_FAILURE_EXIT_CODE,
                 message="column 'id' is missing.")
    assert failed.failed_on_its_data
    result = plan(desired(want), (live(jobs=(failed,)),), {"nightly": 1})
    assert result.changes == ()
    assert result.notices == (Notice(name="nightly", message=(
        "the last run for this model and input (job raysubmit_9) failed: column 'id' is missing. "
        "Nothing runs again until the model, the input or the spec changes, or you run "
        "`mlopsfile run nightly` (or `apply --retry`)."
    )),)
    assert [(u.name, u.reason) for u in result.unchanged] == [("nightly", "held: " + result.notices[0].message)]


def test_retry_runs_a_held_batch_again() -> None:
    want = batch()
    failed = job(want, "FAILED", job_id="raysubmit_9", exit_code=3, revision=2)
    change = only_change(plan(desired(want), (live(jobs=(failed,)),), {"nightly": 1}, retry=True))
    assert change.action == Action.RUN
    assert change.revision == 3
    assert change.reason.startswith("no output is published")
    assert change.reason.endswith("; the last attempt (job raysubmit_9) ended FAILED, so it runs again")


def test_a_forced_run_goes_ahead_whatever_the_state() -> None:
    want = batch()
    failed = job(want, "FAILED", exit_code=3)
    change = only_change(plan(desired(want), (live(jobs=(failed,)),), forced_runs=["nightly"]))
    assert (change.action, change.reason) == (Action.RUN, "a run was asked for by hand (`mlopsfile run`)")
    # Also when the output is current.
    current = live(output=published(want))
    change = only_change(plan(desired(want), (current,), forced_runs=["nightly"]))
    assert (change.action, change.reason, change.diffs) == (Action.RUN, "a run was asked for by hand (`mlopsfile run`)",
                                                            ())


def test_a_failure_for_another_model_does_not_hold_the_new_one() -> None:
    old, want = batch(version="1"), batch(version="2")
    failed = job(old, "FAILED", exit_code=3)
    change = only_change(plan(desired(want), (live(jobs=(failed,)),)))
    assert change.action == Action.RUN
    assert "runs again" not in change.reason


@pytest.mark.parametrize(("status", "exit_code"), [("FAILED", 1), ("FAILED", None), ("FAILED", 137), ("STOPPED", None)])
def test_a_killed_run_runs_again(status: str, exit_code: int | None) -> None:
    want = batch()
    killed = job(want, status, job_id="raysubmit_5", exit_code=exit_code, revision=3)
    assert not killed.failed_on_its_data
    change = only_change(plan(desired(want), (live(jobs=(killed,)),), {"nightly": 2}))
    assert change.action == Action.RUN
    assert change.revision == 4
    assert change.reason.endswith(f"; the last attempt (job raysubmit_5) ended {status}, so it runs again")


def test_a_scheduled_run_that_failed_on_its_data_is_held() -> None:
    want = batch(schedule="0 2 * * *")
    failed = job(want, "FAILED", job_id="raysubmit_11", exit_code=3, message="bad rows.").model_copy(
        update={"start_time": datetime.fromisoformat("2024-05-01T02:00:10+00:00").timestamp()})
    found = live(output=published(want, started_at="2024-04-30T02:00:05+00:00"), jobs=(failed,))
    result = plan(desired(want), (found,))
    assert result.changes == ()
    assert [n.name for n in result.notices] == ["nightly"]


# -- removed from the specs --------------------------------------------------------------


def test_a_removed_batch_with_a_running_job_is_stopped_and_its_output_kept() -> None:
    old = batch("weekly")
    running = job(old, "RUNNING", job_id="raysubmit_3", revision=4)
    result = plan(desired(batch()), (live(output=published(batch())), live("weekly", jobs=(running,))),
                  {"weekly": 2})
    delete = only_change(result)
    assert (delete.action, delete.name, delete.target, delete.revision) == (Action.DELETE, "weekly", "batch", 5)
    assert delete.reason == ("its spec was removed: job raysubmit_3 is stopped "
                             "(published output at /data/out/weekly is kept)")
    assert delete.batch is None and delete.desired is None
    assert [u.name for u in result.unchanged] == ["nightly"]


def test_a_removed_batch_without_an_active_job_plans_nothing() -> None:
    old = batch("weekly")
    finished = live("weekly", output=published(old), jobs=(job(old, "SUCCEEDED"),))
    result = plan(desired(batch()), (live(output=published(batch())), finished))
    assert result.changes == ()
    assert [u.name for u in result.unchanged] == ["nightly"]


def test_a_running_job_of_another_project_is_not_stopped() -> None:
    other = live("weekly", jobs=(job(batch("weekly"), "RUNNING"),), project="someone-else")
    result = plan(desired(batch()), (live(output=published(batch())), other))
    assert result.changes == ()
    assert "weekly" not in result.observed


# -- revisions, ordering and the plan as data --------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "job_revisions", "expected"),
    [({}, (), 1), ({"nightly": 6}, (), 7), ({"nightly": 2}, (5, 3), 6), ({"nightly": 9}, (5, 3), 10),
     ({"other": 40}, (1,), 2)],
)
def test_revision_is_one_past_the_highest_known(recorded: dict[str, int], job_revisions: tuple[int, ...],
                                                expected: int) -> None:
    want = batch(version="2")
    old = batch(version="1")
    jobs = tuple(job(old, "SUCCEEDED", job_id=f"job-{r}", revision=r) for r in job_revisions)
    outcomes = plan_batches(desired(want), ObservedState(batches=(live(jobs=jobs),)), recorded,
                            datetime.fromisoformat(NOW))
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], Change)
    assert outcomes[0].revision == expected


def test_plan_batches_gives_one_outcome_per_batch_in_spec_order() -> None:
    up, new = batch("up"), batch("fresh")
    outcomes = plan_batches(desired(up, new), ObservedState(batches=(live("up", output=published(up)),)), {},
                            datetime.fromisoformat(NOW))
    assert [(type(o).__name__, o.name) for o in outcomes] == [("Unchanged", "up"), ("Change", "fresh")]


def test_plan_records_batches_beside_deployments() -> None:
    a, b = batch("alpha"), batch("beta", version="2")
    result = plan(desired(a, b), (live("alpha", output=published(a)),))
    assert [(c.action, c.name) for c in result.changes] == [(Action.RUN, "beta")]
    assert result.spec_digests == {"alpha": "spec-alpha", "beta": "spec-beta"}
    assert result.batch_outputs == {"alpha": "/data/out/alpha", "beta": "/data/out/beta"}
    assert sorted(result.observed) == ["alpha"]
    assert result.created_at == NOW


def test_observed_fingerprint_follows_the_published_run_and_the_last_job() -> None:
    want = batch()
    base = live(output=published(want))
    assert base.fingerprint() == live(output=published(want)).fingerprint()
    assert base.fingerprint() != live(output=published(want, run_id="run-b")).fingerprint()
    assert base.fingerprint() != base.model_copy(update={"jobs": (job(want, "RUNNING"),)}).fingerprint()


def test_run_key_follows_model_input_and_output_settings_only() -> None:
    base = batch()
    assert batch(batch_size=1, concurrency=3, schedule="0 2 * * *", timezone="Europe/Paris").run_key == base.run_key
    assert batch(version="2").run_key != base.run_key
    assert batch(listed=files(a_parquet=1000)).run_key != base.run_key
    assert batch(format="csv").run_key != base.run_key
    assert batch(output="/elsewhere").run_key != base.run_key


def test_plan_is_json_and_round_trips() -> None:
    want = batch("nightly", version="2", schedule="0 2 * * *", timezone="Europe/Paris", columns=("id",))
    held = batch("held")
    current = batch("current", schedule="0 2 * * *")
    found = (
        live("nightly", output=published(batch("nightly"))),
        live("held", jobs=(job(held, "FAILED", exit_code=3, message="bad."),)),
        live("current", output=published(current)),
        live("gone", jobs=(job(batch("gone"), "RUNNING"),)),
    )
    result = plan(desired(want, held, current), found, {"nightly": 3})
    assert [(c.action, c.name) for c in result.changes] == [(Action.DELETE, "gone"), (Action.RUN, "nightly")]
    assert [n.name for n in result.notices] == ["held"]
    text = result.model_dump_json()
    json.loads(text)
    again = Plan.model_validate_json(text)
    assert again == result
    assert again.changes[1].batch is not None and again.changes[1].batch.run_key == want.run_key


# -- batch rollouts ------------------------------------------------------------------------


def test_a_canary_samples_against_the_published_version_when_the_model_moves() -> None:
    before = batch(version="1")
    after = batch(version="2").model_copy(update={"rollout": BatchRollout(strategy="canary", sample=0.1,
                                                                          min_agreement=0.95)})
    first = published(before).model_copy(update={"model_uri": "models:/iris/1"})
    change = only_change(plan(desired(after), (live(output=first),)))
    assert change.action == Action.RUN and change.rollout is not None
    assert (change.rollout.strategy, change.rollout.from_version, change.rollout.to_version) == ("canary", "1", "2")
    assert change.rollout.description == ("canary: score 10% of the rows with both versions; the full run starts "
                                          "only if agreement >= 0.95")


def test_a_canary_without_a_published_version_is_a_plain_run() -> None:
    want = batch().model_copy(update={"rollout": BatchRollout(strategy="canary")})
    assert only_change(plan(desired(want))).rollout is None


def test_a_shadow_candidate_is_part_of_the_run_key_and_of_every_run() -> None:
    plain = batch()
    shadowed = plain.model_copy(update={"rollout": BatchRollout(strategy="shadow", candidate=resolved("7", "challenger"))})
    assert shadowed.run_key != plain.run_key
    change = only_change(plan(desired(shadowed), (live(output=published(plain)),)))
    assert change.rollout is not None and change.rollout.candidate_model == "challenger"
    assert change.rollout.to_version == "7"
    assert only_unchanged(plan(desired(shadowed), (live(output=published(shadowed)),))).reason.startswith("up to date")
