"""Batch deployments in the plan: run when the model, the input or the output settings moved
since the output readers see now, or when the schedule is due. Pure: ``now`` is an input."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from mlopsfile.plan.types import Action, Change, FieldDiff, Notice, RolloutChange, Unchanged
from mlopsfile.resources import (
    OUTPUT_FIELDS,
    DesiredBatch,
    DesiredState,
    InputFile,
    ObservedBatch,
    ObservedState,
    PublishedRun,
)
from mlopsfile.spec.batch import cron_expression

Outcome = Change | Notice | Unchanged
MODEL_SETTINGS = frozenset({"model_uri", "model_digest"})  # reported as a model move, not a setting


def plan_batches(desired: DesiredState, observed: ObservedState, last_revisions: Mapping[str, int], now: datetime,
                 retry: bool = False, forced: Collection[str] = ()) -> list[Outcome]:
    """One outcome per batch deployment of the specs."""
    outcomes: list[Outcome] = []
    for want in desired.batches:
        live = observed.batch(want.name)
        revision = max([last_revisions.get(want.name, 0), *(j.revision for j in (live.jobs if live else ()))]) + 1
        outcomes.append(_outcome(want, live, revision, now, retry, want.name in forced))
    return outcomes


def batch_settings(want: DesiredBatch) -> dict[str, Any]:
    """The output settings recorded in a run's manifest (and compared with the next plan)."""
    return want.job.model_dump(mode="json", include=set(OUTPUT_FIELDS))


def schedule_times(schedule: str, zone: str, now: datetime) -> tuple[datetime, datetime]:
    """The last time the cron schedule fired at or before ``now``, and the next time after it."""
    from cronsim import CronSim

    local = now.astimezone(ZoneInfo(zone))
    # Going back, cronsim starts strictly before its start: a microsecond later includes ``now``.
    expression = cron_expression(schedule)
    previous = next(CronSim(expression, local + timedelta(microseconds=1), reverse=True))
    following = next(CronSim(expression, local))
    return previous.astimezone(timezone.utc), following.astimezone(timezone.utc)


def _outcome(want: DesiredBatch, live: ObservedBatch | None, revision: int, now: datetime, retry: bool,
             forced: bool) -> Outcome:
    def run(reason: str, diffs: list[FieldDiff]) -> Change:
        return Change(action=Action.RUN, name=want.name, target="batch", reason=reason, diffs=tuple(diffs),
                      batch=want, revision=revision, rollout=_rollout(want, live.published if live else None))

    last = live.last_job if live else None
    if last is not None and last.active:
        which = "this model and input" if last.run_key == want.run_key else "an earlier model or input"
        return Unchanged(name=want.name, reason=f"job {last.job_id} for {which} is {last.status.lower()}; "
                                                "the next plan after it ends decides again")
    published = live.published if live else None
    diffs = _diffs(want, published)
    if forced:
        return run("a run was asked for by hand (`mlopsfile run`)", diffs)
    # The newest attempt failed on its own data for exactly this model, input and output: it
    # would fail the same way, on a schedule or not.
    held = (last is not None and last.failed_on_its_data and last.run_key == want.run_key and not retry
            and (published is None or (last.start_time or 0.0) > datetime.fromisoformat(published.started_at).timestamp()))
    if held:
        assert last is not None
        return Notice(name=want.name, message=(
            f"the last run for this model and input (job {last.job_id}) failed: {last.message} "
            f"Nothing runs again until the model, the input or the spec changes, or you run "
            f"`mlopsfile run {want.name}` (or `apply --retry`)."
        ))
    if published is not None and published.run_key == want.run_key:
        due = _due(want, published, now)
        if due is not None:
            return run(due, [])
        return Unchanged(name=want.name, reason=_up_to_date(want, published, now))
    reason = _why(want, published)
    if last is not None and last.status in ("FAILED", "STOPPED") and last.run_key == want.run_key:
        reason += f"; the last attempt (job {last.job_id}) ended {last.status}, so it runs again"
    return run(reason, diffs)


def _rollout(want: DesiredBatch, published: PublishedRun | None) -> RolloutChange | None:
    """A canary when the model moves away from a published version; a shadow on every run."""
    settings = want.rollout
    if settings.strategy == "shadow" and settings.candidate is not None:
        return RolloutChange(strategy="shadow", from_version=want.model.version, to_version=settings.candidate.version,
                             candidate_model=settings.candidate.name, description=settings.describe())
    if settings.strategy == "canary" and published is not None and published.model_uri \
            and published.model_digest != want.job.model_digest:
        return RolloutChange(strategy="canary", from_version=published.model_version, to_version=want.model.version,
                             candidate_model=want.model.name, description=settings.describe())
    return None


def _why(want: DesiredBatch, published: PublishedRun | None) -> str:
    model = want.model
    source = f"alias @{model.alias}" if model.alias else model.uri
    if published is None:
        return (f"no output is published at {want.job.output} yet; model {model.name} version {model.version} "
                f"over {_files(len(want.input.files))} ({_size(want.input.total_bytes)})")
    reasons = []
    if published.model_version != model.version:
        reasons.append(f"model {model.name} ({source}) moves from version {published.model_version} to {model.version}")
    elif published.model_digest != want.job.model_digest:
        reasons.append(f"model {model.name} version {model.version} has different artifacts (digest changed)")
    if published.input_digest != want.input.digest:
        reasons.append("the input changed: " + _input_change(published.input_files, want.input.files))
    changed = sorted(k for k, v in batch_settings(want).items()
                     if published.settings.get(k) != v and k not in MODEL_SETTINGS)
    if changed and published.settings:
        reasons.append("the output settings changed: " + ", ".join(changed))
    return "; ".join(reasons) or "the published output was made with other settings"


def _input_change(before: tuple[InputFile, ...], after: tuple[InputFile, ...]) -> str:
    old = {f.path: f for f in before}
    new = {f.path: f for f in after}
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    modified = sorted(p for p in set(old) & set(new) if old[p] != new[p])
    parts = [f"{label} {_names(paths)}" for label, paths in (("modified", modified), ("added", added),
                                                               ("removed", removed)) if paths]
    return ", ".join(parts) or "the file listing differs"


def _names(paths: list[str]) -> str:
    shown = ", ".join(p.rsplit("/", 1)[-1] for p in paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _due(want: DesiredBatch, published: PublishedRun, now: datetime) -> str | None:
    if want.job.schedule is None:
        return None
    fired, _ = schedule_times(want.job.schedule, want.job.timezone, now)
    if fired <= datetime.fromisoformat(published.started_at):
        return None
    return (f"schedule '{want.job.schedule}' ({want.job.timezone}) was due at {fired.isoformat(timespec='seconds')}; "
            f"the published output started at {published.started_at}")


def _up_to_date(want: DesiredBatch, published: PublishedRun, now: datetime) -> str:
    text = (f"up to date: output of model version {published.model_version} over "
            f"{_files(len(want.input.files))}, {published.rows} rows (run {published.run_id})")
    if want.job.schedule is not None:
        _, following = schedule_times(want.job.schedule, want.job.timezone, now)
        text += f"; next scheduled run {following.isoformat(timespec='seconds')}"
    return text


def _diffs(want: DesiredBatch, published: PublishedRun | None) -> list[FieldDiff]:
    old: dict[str, Any] = {}
    if published is not None:
        old = {"model_version": published.model_version, "input_digest": published.input_digest[:12],
               **published.settings}
    new = {"model_version": want.model.version, "input_digest": want.input.digest[:12], **batch_settings(want)}
    return [FieldDiff(field=k, old=old.get(k), new=new[k]) for k in sorted(new) if old.get(k) != new[k]]


def _files(count: int) -> str:
    return f"{count} file" + ("" if count == 1 else "s")


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size, unit = count / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{size:.1f} {unit}"


def stop_orphans(desired: DesiredState, observed: ObservedState, project: str,
                 last_revisions: Mapping[str, int]) -> list[Change]:
    """A running job whose deployment left the specs is stopped; published output is data and stays."""
    wanted = {b.name for b in desired.batches}
    changes = []
    for live in observed.batches:
        last = live.last_job
        if live.name in wanted or live.project != project or last is None or not last.active:
            continue
        changes.append(Change(action=Action.DELETE, name=live.name, target="batch",
                              reason=f"its spec was removed: job {last.job_id} is stopped "
                                     f"(published output at {live.output} is kept)",
                              revision=max(last_revisions.get(live.name, 0), last.revision) + 1))
    return changes
