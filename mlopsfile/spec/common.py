"""Parts every spec document shares: apiVersion, metadata, the strict base model."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

API_VERSION = "mlopsfile/v1"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ROUTE_RE = re.compile(r"^/([A-Za-z0-9._~\-]+(/[A-Za-z0-9._~\-]+)*)?$")


def check_route(value: str | None) -> str | None:
    """An HTTP route prefix: starts with '/', no trailing '/', spaces or '?'."""
    if value is not None and not ROUTE_RE.match(value):
        raise ValueError(f"invalid route {value!r}: it starts with '/' and has no trailing '/', spaces or '?'")
    return value
MEMORY_RE = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<unit>|Ki|Mi|Gi|Ti|K|M|G|T)$")
MEMORY_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def memory_bytes(value: int | str) -> int:
    """Turn '512Mi', '2G' or a plain byte count into bytes."""
    if isinstance(value, int):
        return value
    match = MEMORY_RE.match(value.strip())
    if not match:
        raise ValueError(f"invalid memory size {value!r}: use bytes or a number with Ki, Mi, Gi, K, M or G")
    return int(float(match["number"]) * MEMORY_UNITS[match["unit"]])


def check_memory(value: int | str | None) -> int | str | None:
    if value is not None:
        memory_bytes(value)
    return value


DNS_LABEL_RE = re.compile(DNS_LABEL)

ResourceName = Annotated[
    str,
    StringConstraints(pattern=DNS_LABEL, min_length=1, max_length=63),
]


class Strict(BaseModel):
    """Base of every spec model: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(Strict):
    """Identity of a document."""

    name: ResourceName = Field(
        description="Name of the resource: a lowercase DNS label (a-z, 0-9, '-', at most 63 characters), unique per kind.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Free key/value labels for selecting and grouping resources.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Free key/value notes for people and tools; never change behaviour.",
    )
