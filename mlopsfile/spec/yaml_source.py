"""Safe YAML reading that remembers where every key and value came from.

Only plain data is built (SafeLoader: no object construction). Anchors and aliases are
allowed, but a document whose expansion would exceed ``MAX_EXPANDED_NODES`` is refused,
so an alias bomb fails fast instead of exhausting memory later on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from mlopsfile.errors import SourcePosition, SpecError

MAX_FILE_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000

Path = tuple[str | int, ...]

# libyaml's loader is several times faster and keeps the same marks; pure Python otherwise.
SAFE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class PositionIndex:
    """Positions of every key and value of one document, by field path."""

    file: str
    values: dict[Path, SourcePosition] = field(default_factory=dict)
    keys: dict[Path, SourcePosition] = field(default_factory=dict)

    def value(self, path: Path) -> SourcePosition:
        """Position of the value at ``path``, or of its nearest ancestor that exists."""
        return self._nearest(self.values, path)

    def key(self, path: Path) -> SourcePosition:
        """Position of the key naming ``path`` (falls back to the value's position)."""
        if path in self.keys:
            return self.keys[path]
        return self.value(path)

    def _nearest(self, table: dict[Path, SourcePosition], path: Path) -> SourcePosition:
        for cut in range(len(path), -1, -1):
            if path[:cut] in table:
                return table[path[:cut]]
        return SourcePosition(self.file, 1, 1)


@dataclass
class RawDocument:
    """One YAML document: plain data plus where each part of it stands."""

    data: Any
    positions: PositionIndex


def _position(file: str, mark: yaml.Mark) -> SourcePosition:
    return SourcePosition(file, mark.line + 1, mark.column + 1)


def read_yaml_documents(text: str, file: str, loader_class: type = SAFE_LOADER) -> tuple[list[RawDocument], list[SpecError]]:
    """Parse every document of a YAML stream; return them with the errors found."""
    documents: list[RawDocument] = []
    errors: list[SpecError] = []
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        errors.append(SpecError(f"file is larger than {MAX_FILE_BYTES // 1024} KiB; split it", SourcePosition(file, 1, 1)))
        return documents, errors
    loader = loader_class(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            expanded = _expanded_size(node, {})
            if expanded > MAX_EXPANDED_NODES:
                errors.append(SpecError(
                    f"document expands to more than {MAX_EXPANDED_NODES} nodes through anchors and aliases; refused",
                    _position(file, node.start_mark),
                ))
                continue
            index = PositionIndex(file)
            errors.extend(_index_node(node, (), index, set()))
            data = loader.construct_document(node)
            if data is None:
                continue
            documents.append(RawDocument(data, index))
    except yaml.MarkedYAMLError as exc:
        if loader_class is not yaml.SafeLoader:
            # The pure-Python parser words its errors better; a broken file is worth the time.
            return read_yaml_documents(text, file, yaml.SafeLoader)
        mark = exc.problem_mark or exc.context_mark
        position = _position(file, mark) if mark else SourcePosition(file, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        kind = "YAML syntax error" if isinstance(exc, (yaml.scanner.ScannerError, yaml.parser.ParserError)) else "invalid YAML"
        errors.append(SpecError(f"{kind}: {problem}", position))
    except yaml.YAMLError as exc:
        errors.append(SpecError(f"YAML error: {exc}", SourcePosition(file, 1, 1)))
    finally:
        loader.dispose()
    return documents, errors


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a self-referencing alias counts once instead of recursing forever
    size = 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            size += _expanded_size(key, memo) + _expanded_size(value, memo)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, memo)
    memo[id(node)] = size
    return size


def _index_node(node: yaml.Node, path: Path, index: PositionIndex, seen: set[int]) -> Iterator[SpecError]:
    index.values.setdefault(path, _position(index.file, node.start_mark))
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys_here: dict[Any, SourcePosition] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node.value)
            key_position = _position(index.file, key_node.start_mark)
            if key in keys_here and key != "<<":
                yield SpecError(f"duplicate key {key!r} (first at line {keys_here[key].line})", key_position, dotted_path((*path, key)))
            keys_here[key] = key_position
            index.keys.setdefault((*path, key), key_position)
            yield from _index_node(value_node, (*path, key), index, seen)
    elif isinstance(node, yaml.SequenceNode):
        for number, item in enumerate(node.value):
            yield from _index_node(item, (*path, number), index, seen)


def dotted_path(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text

