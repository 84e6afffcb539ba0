"""The Model kind: a pointer into the MLflow registry."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from mlopsfile.spec.common import API_VERSION, Metadata, Strict

MODEL_URI_FORMS = (
    re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[A-Za-z0-9_\-]+)$"),
    re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[0-9]+|latest)$"),
    re.compile(r"^runs:/(?P<run_id>[0-9a-zA-Z]+)/(?P<path>.+)$"),
)


class ModelSpec(Strict):
    """Which registered model version (or run artifact) to serve."""

    uri: str = Field(
        description=(
            "MLflow model URI: 'models:/NAME@ALIAS' (the plan pins the version the alias "
            "points to), 'models:/NAME/VERSION', or 'runs:/RUN_ID/PATH'."
        ),
        examples=["models:/iris@champion", "models:/iris/3"],
    )
    description: str = Field(default="", description="What this model is, for people reading the plan.")

    @field_validator("uri")
    @classmethod
    def _known_uri_form(cls, value: str) -> str:
        if not any(form.match(value) for form in MODEL_URI_FORMS):
            raise ValueError(
                f"unsupported model URI {value!r}: use models:/NAME@ALIAS, models:/NAME/VERSION "
                "or runs:/RUN_ID/PATH"
            )
        return value


class ModelDocument(Strict):
    """A model from the MLflow registry that deployments refer to by name."""

    apiVersion: Literal["mlopsfile/v1"] = Field(description=f"Spec language version; always '{API_VERSION}'.")
    kind: Literal["Model"] = Field(description="Document kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: ModelSpec = Field(description="Where the model lives in the registry.")
