"""The spec kinds, and validation of one raw document into its typed model."""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, Field, RootModel, ValidationError

from mlopsfile.errors import SpecError
from mlopsfile.spec.common import API_VERSION
from mlopsfile.spec.deployment import DeploymentDocument
from mlopsfile.spec.model import ModelDocument
from mlopsfile.spec.monitor import MonitorDocument
from mlopsfile.spec.yaml_source import Path, PositionIndex, RawDocument, dotted_path

KINDS: dict[str, type[BaseModel]] = {
    "Model": ModelDocument,
    "Deployment": DeploymentDocument,
    "Monitor": MonitorDocument,
}

Document = Union[ModelDocument, DeploymentDocument, MonitorDocument]


class AnyDocument(RootModel[Document]):
    """Any mlopsfile document; the JSON Schema of a spec file is built from this."""

    root: Document = Field(discriminator="kind")


@dataclass(frozen=True)
class LocatedDocument:
    """A validated document and where it came from, for messages that point at its source."""

    document: Document
    positions: PositionIndex
    patches: tuple[str, ...] = ()  # overlay files (environments/NAME/...) merged into it

    @property
    def name(self) -> str:
        return self.document.metadata.name

    @property
    def kind(self) -> str:
        return self.document.kind

    def at(self, *path: str | int) -> str:
        """file:line:column of a field of this document."""
        return str(self.positions.value(tuple(path)))

    def error(self, message: str, *path: str | int) -> SpecError:
        return SpecError(message, self.positions.value(tuple(path)), dotted_path(tuple(path)))


def validate_document(raw: RawDocument) -> tuple[LocatedDocument | None, list[SpecError]]:
    """Check apiVersion and kind, then validate against the kind's model."""
    index = raw.positions
    data = raw.data
    if not isinstance(data, dict):
        return None, [SpecError("a document must be a mapping with apiVersion, kind, metadata and spec", index.value(()))]
    errors: list[SpecError] = []
    api_version = data.get("apiVersion")
    if api_version is None:
        errors.append(SpecError("missing required field", index.value(()), "apiVersion"))
    elif api_version != API_VERSION:
        errors.append(SpecError(f"unknown apiVersion {api_version!r}; expected {API_VERSION!r}", index.value(("apiVersion",)), "apiVersion"))
    kind = data.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if kind is None:
        errors.append(SpecError("missing required field", index.value(()), "kind"))
    elif model is None:
        known = ", ".join(KINDS)
        errors.append(SpecError(f"unknown kind {kind!r}; known kinds: {known}", index.value(("kind",)), "kind"))
    if errors or model is None:
        return None, errors
    try:
        document = model.model_validate(data)
    except ValidationError as exc:
        return None, [_to_spec_error(item, data, index, model) for item in exc.errors()]
    return LocatedDocument(document, index), []  # type: ignore[arg-type]


def _to_spec_error(item: Any, data: Any, index: PositionIndex, model: type[BaseModel]) -> SpecError:
    kind = item["type"]
    path = _data_path(tuple(item["loc"]), data, keep_last=kind in ("missing", "extra_forbidden"))
    message = str(item["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        field = str(path[-1])
        message = f"unknown field {field!r}" + _suggestion(field, _fields_at(model, path[:-1], data))
        return SpecError(message, index.key(path), dotted_path(path))
    if kind == "missing":
        return SpecError("missing required field", index.value(path[:-1]), dotted_path(path))
    if kind == "union_tag_not_found":  # a tagged union (target, rollout) without its tag field
        tag = str(item.get("ctx", {}).get("discriminator", "type")).strip("'")
        return SpecError("missing required field", index.value(path), dotted_path((*path, tag)))
    if "input" in item and kind not in ("value_error", "assertion_error") and not isinstance(item["input"], (dict, list)):
        message = f"{message}, got {item['input']!r}"
    return SpecError(message, index.value(path), dotted_path(path))


def _data_path(loc: Path, data: Any, keep_last: bool = False) -> Path:
    """The part of a pydantic error location that names real data (drops union tags).

    ``keep_last``: the last part names a field that is missing or unknown, so it is not in
    the data but belongs in the path.
    """
    path: list[str | int] = []
    current = data
    for number, part in enumerate(loc):
        if (isinstance(current, dict) and part in current) or (isinstance(current, list) and isinstance(part, int) and part < len(current)):
            current = current[part]
            path.append(part)
        elif keep_last and number == len(loc) - 1:
            path.append(part)
    return tuple(path)


def _fields_at(model: type[BaseModel], path: Path, data: Any = None) -> list[str]:
    current: Any = model
    for part in path:
        if isinstance(data, (dict, list)):
            data = data[part] if isinstance(data, list) or part in data else None
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_in(fields[part].annotation, data)
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _model_in(annotation: Any, data: Any = None) -> Any:
    """The model a field holds; in a tagged union, the member the data's tag picks."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = [m for m in (_model_in(arg) for arg in typing.get_args(annotation)) if m is not None]
    if isinstance(data, dict):
        for member in members:
            tag = member.model_fields.get("strategy") or member.model_fields.get("type")
            tag_value = data.get("strategy", data.get("type"))
            if tag is not None and tag_value in typing.get_args(tag.annotation):
                return member
    return members[0] if members else None


def _suggestion(field: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(field, allowed, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; allowed: {', '.join(allowed)}" if allowed else ""
