"""What `status` shows of a batch deployment: its last run, what readers see, the next run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mlopsfile.plan.batch import schedule_times
from mlopsfile.resources import ObservedBatch


@dataclass(frozen=True)
class BatchView:
    last_job: str | None
    last_state: str | None  # PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    last_model_version: str | None
    last_seconds: float | None
    last_message: str | None  # why the last run failed
    published_run: str | None
    published_rows: int | None
    published_version: str | None
    published_at: str | None
    output: str
    next_run: str | None  # ISO 8601, UTC, when a schedule is declared


def batch_view(live: ObservedBatch | None, output: str, schedule: str | None, zone: str, now: datetime,
               failure: str | None = None) -> BatchView:
    last = live.last_job if live else None
    published = live.published if live else None
    seconds = None
    if last is not None and last.start_time is not None:
        seconds = (last.end_time or now.timestamp()) - last.start_time
    next_run = schedule_times(schedule, zone, now)[1].isoformat(timespec="seconds") if schedule else None
    return BatchView(
        last_job=last.job_id if last else None, last_state=last.status if last else None,
        last_model_version=last.model_version if last else None, last_seconds=seconds,
        last_message=failure if last is not None and last.status in ("FAILED", "STOPPED") else None,
        published_run=published.run_id if published else None, published_rows=published.rows if published else None,
        published_version=published.model_version if published else None,
        published_at=published.finished_at if published else None, output=output, next_run=next_run,
    )
