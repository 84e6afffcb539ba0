"""The edge target: the model as ONNX with a small standalone server, packed as a Docker image."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from mlopsfile.spec.common import Strict

# Docker's reference grammar, simplified: lowercase path components, optional registry host.
IMAGE_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
PYTHON_RE = re.compile(r"^3\.[0-9]{1,2}$")
# Field -> (its form, the one-line error when a value does not have it).
FORMS = {
    "image": (IMAGE_RE, "invalid image repository {!r}: lowercase letters, digits, '.', '_', '-' and '/'"),
    "registry": (REGISTRY_RE, "invalid registry {!r}: expected host[:port][/namespace]"),
    "python_version": (PYTHON_RE, "invalid python_version {!r}: expected e.g. '3.11'"),
}
DEFAULT_BASE_IMAGE = "python:3.11-slim"


class EdgeParity(Strict):
    """How the ONNX model is checked against the original before anything is built."""

    reference: str | None = Field(
        default=None,
        description=(
            "File of rows to compare on (csv, parquet, or a JSON scoring request), relative to the project root. "
            "Default: the model's logged input example, else rows generated from its signature."
        ),
    )
    rows: int = Field(default=100, ge=1, le=100_000, description="Rows generated when there is no reference or example.")
    atol: float = Field(default=1e-4, ge=0, description="Absolute tolerance for scores and regression outputs.")
    rtol: float = Field(default=1e-4, ge=0, description="Relative tolerance for scores and regression outputs.")
    seed: int = Field(default=0, description="Seed of the generated rows, so a plan is repeatable.")


class EdgeSmoke(Strict):
    """A run of the canary image, before `mlopsfile promote` moves the stable tag to it."""

    requests: int = Field(default=20, ge=1, le=10_000, description="Requests sent with the parity sample.")


class EdgeTarget(Strict):
    """Convert the model to ONNX and build a Docker image that serves it with no Ray, MLflow or network."""

    type: Literal["edge"] = Field(description="Target kind: 'edge' builds a standalone ONNX image with Docker.")
    image: str | None = Field(
        default=None,
        description="Image repository (lowercase, e.g. 'acme/iris-edge'); default: the Deployment's name.",
    )
    base_image: str = Field(
        default=DEFAULT_BASE_IMAGE,
        description=(
            "Image the edge image starts from; it needs python3 and pip. Nothing is pulled when it is "
            "present in the engine, so an air-gapped build works from a locally built base."
        ),
    )
    python_version: str = Field(
        default="3.11", description="Python version of the base image: the wheels copied into the image are for it.",
    )
    registry: str | None = Field(
        default=None,
        description="Registry (host[:port][/namespace]) every built image is pushed to, e.g. '127.0.0.1:5000/team'.",
    )
    bundle: str | None = Field(
        default=None,
        description=(
            "Directory (relative to the project root) that also receives a reproducible tarball of the model, "
            "server and wheels with a manifest of sha256 digests, for devices without Docker."
        ),
    )
    quantize: Literal["none", "dynamic"] = Field(
        default="none", description="'dynamic': int8 weights with onnxruntime's dynamic quantization (smaller).",
    )
    parity: EdgeParity = Field(default_factory=EdgeParity, description="The check that ONNX predicts as the original.")
    smoke: EdgeSmoke | None = Field(
        default=None, description="Also run the canary image and send it the parity sample before a promotion.",
    )

    @field_validator("image", "registry", "python_version")
    @classmethod
    def _well_formed(cls, value: str | None, info: ValidationInfo) -> str | None:
        pattern, message = FORMS[info.field_name or ""]
        if value is not None and not pattern.match(value):
            raise ValueError(message.format(value))
        return value
