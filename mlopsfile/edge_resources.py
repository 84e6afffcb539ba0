"""Desired and observed values of edge deployments: ONNX images in a Docker engine.

An edge deployment's live state is the set of images the engine holds with its labels.
Each image is one *build* (model + ONNX + server + wheels + base image, named by a build
key); the tags `stable` and `canary` are the channels devices pull, `previous` marks the
image `stable` had before its last move, kept for rollback.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlopsfile.spec.specset import canonical_digest
from mlopsfile.values import ResolvedModel, Value

CHANNELS = ("stable", "canary")
PREVIOUS_TAG = "previous"


class EdgeBuild(Value):
    """Everything that decides the bytes of an edge image; its digest is the build key."""

    model_uri: str
    model_version: str
    model_digest: str
    onnx_sha256: str = Field(description="sha256 of model.onnx as converted (and quantized).")
    quantized: bool = False
    base_image: str
    python_version: str
    requirements: tuple[str, ...] = Field(description="Pinned packages installed into the image from wheels.")
    runtime_digest: str = Field(description="Digest of the edge server code (runtime/).")

    @property
    def key(self) -> str:
        return canonical_digest(self.model_dump())[:16]


class ParitySummary(Value):
    """What the parity check found, carried in the plan and in the image's labels."""

    sample: str = Field(description="Where the rows came from: reference file, input example or generated.")
    rows: int
    label_mismatches: int = 0
    max_abs_diff: float | None = None
    passed: bool
    onnx_bytes: int
    original_onnx_bytes: int | None = Field(default=None, description="Size before quantization, when quantized.")
    summary: str = Field(description="The report in one line.")


class PreparedEdge(Value):
    """What conversion and the parity check produced for one edge deployment at plan time."""

    edge_dir: str = Field(description="Directory with model.onnx and manifest.json.")
    onnx_sha256: str
    requirements: tuple[str, ...]
    runtime_digest: str
    parity: ParitySummary


class DesiredEdge(Value):
    name: str
    spec_digest: str
    source: str = Field(description="file:line:column of the Deployment document.")
    model: ResolvedModel
    build: EdgeBuild
    image: str = Field(description="Image repository, without tag.")
    channel: Literal["stable", "canary"] = Field(description="Channel a new build's tag lands on.")
    registry: str | None = None
    bundle: str | None = Field(default=None, description="Absolute directory receiving the bundle tarball.")
    parity: ParitySummary
    smoke_requests: int | None = None
    edge_dir: str = Field(description="Local directory with model.onnx and manifest.json (the converter's cache).")
    labels: dict[str, str] = Field(default_factory=dict)

    def remote(self) -> str | None:
        """The repository in the registry, when the spec pushes."""
        return f"{self.registry}/{self.image}" if self.registry else None

    def bundle_name(self) -> str:
        return f"{self.name}-{self.model.version}-{self.build.key}.tar.gz"


class EdgeImage(Value):
    """One image of an edge deployment, as the engine reports it."""

    image_id: str
    build_key: str
    model_version: str
    spec_digest: str
    tags: tuple[str, ...] = Field(default=(), description="Tags on the deployment's repository: versions and channels.")
    pushed: tuple[str, ...] = Field(default=(), description="Registry repositories the image was pushed to.")
    created: str = ""
    size: int = 0
    parity: str = Field(default="", description="The parity summary recorded when the image was built.")


class ObservedEdge(Value):
    name: str
    project: str
    repository: str
    images: tuple[EdgeImage, ...] = ()
    bundles: tuple[str, ...] = Field(default=(), description="Bundle file names present in the bundle directory.")

    def tagged(self, tag: str) -> EdgeImage | None:
        return next((image for image in self.images if tag in image.tags), None)

    def build(self, key: str) -> EdgeImage | None:
        return next((image for image in self.images if image.build_key == key), None)

    def fingerprint(self) -> str:
        return canonical_digest(self.model_dump())[:16]

