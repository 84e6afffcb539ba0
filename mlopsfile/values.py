"""The base of every plan value, and a model pinned in the registry: shared by all targets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Value(BaseModel):
    """Immutable, JSON-serialisable value type."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResolvedModel(Value):
    """A Model document pinned to one registry version and the digest of its artifacts."""

    name: str = Field(description="Name of the Model document.")
    uri: str = Field(description="URI as written in the spec.")
    registered_name: str | None = Field(default=None, description="Registered model name, for models:/ URIs.")
    version: str = Field(description="Pinned registry version (or run id for runs:/ URIs).")
    alias: str | None = Field(default=None, description="Alias the version was resolved from, if any.")
    pinned_uri: str = Field(description="URI that names exactly this version: what apply deploys.")
    digest: str = Field(description="sha256 over the model's artifact files.")
    run_id: str | None = Field(default=None, description="MLflow run that produced the model.")
    locked: bool = Field(default=False, description="Pinned by mlopsfile.lock rather than resolved from the registry now.")
    lock_notice: str | None = Field(default=None, description="How the registry moved since mlopsfile.lock pinned this "
                                    "version (an alias now elsewhere); the plan warns.")
