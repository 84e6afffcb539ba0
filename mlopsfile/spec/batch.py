"""The batch target: score a set of files with Ray Data in a Ray Job, now and on a schedule."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from mlopsfile.spec.common import Strict, check_memory

COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\- ]*$")


NICKNAMES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
             "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}


def cron_expression(value: str) -> str:
    """The five-field form of a schedule (cron's @daily and friends spelled out)."""
    return NICKNAMES.get(value.strip().lower(), value)


def check_cron(value: str | None) -> str | None:
    """Five-field cron ('0 2 * * *', '0 2 * * MON'), or @hourly, @daily, @weekly, @monthly, @yearly."""
    if value is None:
        return value
    from cronsim import CronSim, CronSimError

    try:
        CronSim(cron_expression(value), datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"invalid cron schedule {value!r}: {exc}") from exc
    return value


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as 'UTC' or 'Europe/Paris'") from exc
    return value


class BatchResources(Strict):
    """What each model replica of the job reserves on the Ray cluster."""

    num_cpus: float = Field(default=1.0, gt=0, description="CPUs reserved per model replica; fractions allowed.")
    memory: int | str | None = Field(
        default=None, description="Memory reserved per model replica, in bytes or with a unit ('2Gi').",
    )

    _valid_memory = field_validator("memory")(check_memory)


class BatchTarget(Strict):
    """Score input files with the model as a Ray Job, whenever the model or the input changes."""

    type: Literal["batch"] = Field(description="Target kind: 'batch' scores files as a Ray Job with Ray Data.")
    input: list[str] = Field(
        min_length=1,
        description=(
            "Files to score: paths, globs ('data/*.parquet') or fsspec URIs; relative paths start at the "
            "project root. A single string is accepted."
        ),
    )
    format: Literal["auto", "parquet", "csv"] = Field(
        default="auto", description="Input file format; 'auto' decides by file extension (.parquet, .csv).",
    )
    output: str = Field(
        min_length=1,
        description=(
            "Directory that receives the published output (a local path; relative to the project root). "
            "Readers read <output>/current/ and <output>/current/_manifest.json."
        ),
    )
    columns: list[str] = Field(
        default_factory=list,
        description="Input columns copied into the output beside the prediction, e.g. an id column.",
    )
    prediction_column: str = Field(
        default="prediction", description="Name of the output column holding the prediction.",
    )
    batch_size: int = Field(default=4096, ge=1, le=10_000_000, description="Rows handed to the model in one call.")
    concurrency: int = Field(default=1, ge=1, le=1000, description="Model replicas (Ray actors) scoring at once.")
    resources: BatchResources = Field(default_factory=BatchResources, description="Reservations per model replica.")
    schedule: str | None = Field(
        default=None,
        description=(
            "Cron schedule ('0 2 * * *' = 02:00 daily) on which the job runs again even if nothing changed; "
            "evaluated by the reconcile loop (`mlopsfile watch`, `apply --wait`)."
        ),
    )
    timezone: str = Field(default="UTC", description="IANA time zone the schedule is read in.")

    @field_validator("input", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("columns")
    @classmethod
    def _valid_columns(cls, value: list[str]) -> list[str]:
        for column in value:
            if not COLUMN_RE.match(column):
                raise ValueError(f"invalid column name {column!r}")
        if len(set(value)) != len(value):
            raise ValueError("a column is listed twice")
        return value

    _cron = field_validator("schedule")(check_cron)
    _tz = field_validator("timezone")(check_timezone)
