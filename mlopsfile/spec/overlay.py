"""Environment overlays: ``environments/NAME/*.yaml`` patched over the base specs.

A patch document names its target by ``kind`` and ``metadata.name``. Mappings merge key
by key, recursively; a list or a scalar in the patch replaces the base value whole; an
explicit ``null`` removes the field. A patch that matches no base document is a new
resource and must then be a complete document. Every merged value keeps the position
of the file it came from, so an error in a patched field names the overlay's line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

from mlopsfile.errors import ConfigError, SpecError
from mlopsfile.spec.yaml_source import Path, PositionIndex, RawDocument

ENVIRONMENTS_DIR = "environments"


def environments_dir(specs: FilePath) -> FilePath:
    """``environments/`` beside the spec directory (or beside a single spec file)."""
    return specs.resolve().parent / ENVIRONMENTS_DIR


def environment_dir(specs: FilePath, env: str) -> FilePath:
    """The overlay directory of ``env``; a one-line error listing the known ones if it is missing."""
    root = environments_dir(specs)
    found = root / env
    if env and "/" not in env and env not in (".", "..") and found.is_dir():
        return found
    known = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    listing = f"known: {', '.join(known)}" if known else f"there are none (no directories under {root})"
    raise ConfigError(f"unknown environment {env!r}; {listing}")


@dataclass
class Patched:
    """A base document with the overlay files that changed it."""

    raw: RawDocument
    patches: list[str]
    added: bool = False  # no base document: the overlay adds a whole new resource


def document_key(data: Any) -> tuple[str, str] | None:
    """(kind, metadata.name) of a raw document, when both are plain strings."""
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return None
    kind, name = data.get("kind"), data["metadata"].get("name")
    return (kind, name) if isinstance(kind, str) and isinstance(name, str) else None


def apply_overlay(base: list[RawDocument], patches: list[RawDocument]) -> tuple[list[Patched], list[SpecError]]:
    """Merge each patch into the base document of its kind and name, in file order."""
    merged = [Patched(raw, []) for raw in base]
    by_key: dict[tuple[str, str], Patched] = {}
    for item in merged:
        key = document_key(item.raw.data)
        if key is not None:
            by_key.setdefault(key, item)
    errors: list[SpecError] = []
    for patch in patches:
        key = document_key(patch.data)
        if key is None:
            errors.append(SpecError("a patch document needs kind and metadata.name to find the document it changes",
                                    patch.positions.value(())))
            continue
        target = by_key.get(key)
        if target is None:
            added = Patched(patch, [patch.positions.file], added=True)
            merged.append(added)
            by_key[key] = added
            continue
        target.raw = merge_documents(target.raw, patch)
        target.patches.append(patch.positions.file)
    return merged, errors


def merge_documents(base: RawDocument, patch: RawDocument) -> RawDocument:
    """The base document with ``patch`` merged in; positions follow each value's origin."""
    index = PositionIndex(base.positions.file)
    data = _merge(base.data, patch.data, (), base.positions, patch.positions, index)
    return RawDocument(data, index)


def _merge(base: Any, patch: Any, path: Path, base_index: PositionIndex, patch_index: PositionIndex,
           out: PositionIndex) -> Any:
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        _copy_positions(patch_index, path, out)
        return patch
    _copy_own_position(base_index, path, out)
    result: dict[Any, Any] = {}
    for key, value in base.items():
        if key in patch:
            continue
        result[key] = value
        _copy_positions(base_index, (*path, key), out)
    for key, value in patch.items():
        if value is None:  # an explicit null removes the field
            continue
        if key in base:
            result[key] = _merge(base[key], value, (*path, key), base_index, patch_index, out)
        else:
            result[key] = value
            _copy_positions(patch_index, (*path, key), out)
    return result


def _copy_own_position(source: PositionIndex, path: Path, out: PositionIndex) -> None:
    if path in source.values:
        out.values[path] = source.values[path]
    if path in source.keys:
        out.keys[path] = source.keys[path]


def _copy_positions(source: PositionIndex, path: Path, out: PositionIndex) -> None:
    """Positions of ``path`` and everything under it, from ``source``."""
    size = len(path)
    for table, target in ((source.values, out.values), (source.keys, out.keys)):
        for at, position in table.items():
            if at[:size] == path:
                target[at] = position
