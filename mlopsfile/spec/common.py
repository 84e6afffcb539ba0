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
