"""Load a spec file or a directory tree of spec files into one validated SpecSet."""

from __future__ import annotations

from pathlib import Path

from mlopsfile.errors import SourcePosition, SpecError, SpecErrors
from mlopsfile.spec.documents import LocatedDocument, validate_document
from mlopsfile.spec.references import check_references
from mlopsfile.spec.specset import SpecSet
from mlopsfile.spec.yaml_source import MAX_FILE_BYTES, read_yaml_documents

SPEC_SUFFIXES = (".yaml", ".yml")
PROJECT_FILE = "mlopsfile.yaml"


def spec_files(root: Path) -> list[Path]:
    """Every spec file under ``root`` (or ``root`` itself), in a stable order."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise SpecErrors([SpecError(f"no such file or directory: {root}")])
    found = [
        path for path in root.rglob("*")
        if path.suffix in SPEC_SUFFIXES and path.is_file() and path.name != PROJECT_FILE
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    if not found:
        # An empty desired state would plan the deletion of everything: say so instead.
        raise SpecErrors([SpecError(f"no spec files (*.yaml, *.yml) under {root}; to remove everything use destroy")])
    return sorted(found)


def load_specs(root: Path, display_base: Path | None = None) -> SpecSet:
    """Read, validate and cross-check every document; raise SpecErrors listing all problems."""
    errors: list[SpecError] = []
    documents: list[LocatedDocument] = []
    for path in spec_files(root):
        shown = _display(path, display_base)
        text, problem = _read_text(path, shown)
        if problem:
            errors.append(problem)
            continue
        raws, parse_errors = read_yaml_documents(text, shown)
        errors.extend(parse_errors)
        for raw in raws:
            located, problems = validate_document(raw)
            errors.extend(problems)
            if located:
                documents.append(located)
    specset = SpecSet.from_documents(documents)
    errors.extend(check_references(specset, documents))
    if errors:
        raise SpecErrors(errors)
    return specset


def _read_text(path: Path, shown: str) -> tuple[str, SpecError | None]:
    start = SourcePosition(shown, 1, 1)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return "", SpecError(f"file is {size} bytes, over the {MAX_FILE_BYTES // 1024} KiB limit; split it", start)
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as exc:
        return "", SpecError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", start)
    except OSError as exc:
        return "", SpecError(f"cannot read: {exc.strerror}", start)


def _display(path: Path, base: Path | None) -> str:
    base = base or Path.cwd()
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
