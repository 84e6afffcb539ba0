"""JSON Schema of spec files and the project file, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

from mlopsfile.config import ProjectFile
from mlopsfile.spec.documents import AnyDocument

SCHEMA_FILES = {
    "mlopsfile.schema.json": (AnyDocument, "mlopsfile spec document (apiVersion mlopsfile/v1)"),
    "project.schema.json": (ProjectFile, "mlopsfile project file (mlopsfile.yaml)"),
}


def schemas() -> dict[str, str]:
    out = {}
    for filename, (model, title) in SCHEMA_FILES.items():
        schema = model.model_json_schema()
        # The model's own title (e.g. "AnyDocument") would otherwise override the readable one.
        schema.pop("title", None)
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **schema}
        out[filename] = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    return out


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in schemas().items():
        path = directory / filename
        path.write_text(text)
        written.append(path)
    return written


def stale_schemas(directory: Path) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    stale = []
    for filename, text in schemas().items():
        path = directory / filename
        if not path.is_file() or path.read_text() != text:
            stale.append(filename)
    return stale
