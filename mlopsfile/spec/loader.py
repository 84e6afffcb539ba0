"""Load a spec file or a directory tree of spec files into one validated SpecSet."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mlopsfile.errors import SourcePosition, SpecError, SpecErrors
from mlopsfile.spec.documents import LocatedDocument, validate_document
from mlopsfile.spec.overlay import Patched, apply_overlay, document_key, environment_dir
from mlopsfile.spec.references import check_references
from mlopsfile.spec.specset import SpecSet
from mlopsfile.spec.yaml_source import MAX_FILE_BYTES, RawDocument, read_yaml_documents

SPEC_SUFFIXES = (".yaml", ".yml")
PROJECT_FILE = "mlopsfile.yaml"


def spec_files(root: Path, required: bool = True) -> list[Path]:
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
    if not found and required:
        # An empty desired state would plan the deletion of everything: say so instead.
        raise SpecErrors([SpecError(f"no spec files (*.yaml, *.yml) under {root}; to remove everything use destroy")])
    return sorted(found)


def load_specs(root: Path, display_base: Path | None = None, env: str | None = None) -> SpecSet:
    """Read, validate and cross-check every document; raise SpecErrors listing all problems.

    ``env`` layers ``environments/ENV/`` (beside the spec directory) over the documents first.
    """
    errors: list[SpecError] = []
    documents: list[LocatedDocument] = []
    raws = read_documents(spec_files(root), display_base, errors)
    patched = [Patched(raw, []) for raw in raws]
    if env:
        patches = read_documents(spec_files(environment_dir(root, env), required=False), display_base, errors)
        patched, overlay_errors = apply_overlay(raws, patches)
        errors.extend(overlay_errors)
    for item in patched:
        located, problems = validate_document(item.raw)
        if problems and item.added:
            key = document_key(item.raw.data)
            errors.append(SpecError(f"{key[0] if key else 'document'} {key[1] if key else ''!r} matches no document "
                                    "of the base specs, so it is a new resource and must be complete",
                                    item.raw.positions.value(())))
        errors.extend(problems)
        if located:
            documents.append(replace(located, patches=tuple(item.patches)))
    specset = SpecSet.from_documents(documents)
    errors.extend(check_references(specset, documents))
    if errors:
        raise SpecErrors(errors)
    return specset


def read_documents(paths: list[Path], display_base: Path | None, errors: list[SpecError]) -> list[RawDocument]:
    """The raw documents of ``paths``, in order; read and parse errors go to ``errors``."""
    raws: list[RawDocument] = []
    for path in paths:
        shown = _display(path, display_base)
        text, problem = _read_text(path, shown)
        if problem:
            errors.append(problem)
            continue
        found, parse_errors = read_yaml_documents(text, shown)
        errors.extend(parse_errors)
        raws.extend(found)
    return raws


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
