"""The checked-in JSON Schema is current, and every shipped spec validates against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mlopsfile.schema_gen import stale_schemas, write_schemas

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "schema"


def yaml_files(folder: str) -> list[Path]:
    return [
        path for path in sorted((REPO / folder).rglob("*"))
        if path.suffix in (".yaml", ".yml") and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(REPO).parts)
    ]


def spec_documents() -> list[Any]:
    """Every spec document shipped in specs/ and examples/, as pytest params."""
    found = []
    for folder in ("specs", "examples"):
        for path in yaml_files(folder):
            if path.name == "mlopsfile.yaml":
                continue
            for number, document in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
                # specs/ holds only spec documents; examples/ may also hold other YAML (a CI
                # workflow), told apart by having neither apiVersion nor kind.
                is_spec = folder == "specs" or (isinstance(document, dict) and {"apiVersion", "kind"} & set(document))
                if document is not None and is_spec:
                    name = f"{path.relative_to(REPO)}#{number}"
                    found.append(pytest.param(name, document, id=name))
    return found


def project_files() -> list[Path]:
    candidates = [REPO / "mlopsfile.yaml", *yaml_files("examples")]
    return [path for path in candidates if path.name == "mlopsfile.yaml" and path.is_file()]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / "mlopsfile.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_checked_in_schema_is_current() -> None:
    assert stale_schemas(SCHEMA_DIR) == [], "run: mlopsfile schema"


def test_stale_schema_is_detected(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    assert stale_schemas(tmp_path) == []
    (tmp_path / "project.schema.json").write_text("{}")
    (tmp_path / "mlopsfile.schema.json").unlink()
    assert sorted(stale_schemas(tmp_path)) == ["mlopsfile.schema.json", "project.schema.json"]


def test_schema_has_its_own_title() -> None:
    schema = json.loads((SCHEMA_DIR / "mlopsfile.schema.json").read_text(encoding="utf-8"))
    assert schema["title"] == "mlopsfile spec document (apiVersion mlopsfile/v1)"


def test_there_are_shipped_specs_to_check() -> None:
    kinds = {param.values[1]["kind"] for param in spec_documents()}
    assert {"Model", "Deployment"} <= kinds


@pytest.mark.parametrize(("name", "document"), spec_documents())
def test_shipped_specs_validate_against_the_schema(
    validator: jsonschema.Draft202012Validator, name: str, document: Any
) -> None:
    problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert problems == [], name


def test_project_files_validate_against_the_schema() -> None:
    schema = json.loads((SCHEMA_DIR / "project.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for path in project_files():
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        assert [e.message for e in validator.iter_errors(document)] == [], str(path.relative_to(REPO))
    assert validator.is_valid({"project": "demo", "ray": {"address": "ray.example:6379"}, "state": {"url": "sqlite:///s.db"}})
    assert not validator.is_valid({"ray": {"adress": "ray.example:6379"}})


DEPLOYMENT = {
    "apiVersion": "mlopsfile/v1",
    "kind": "Deployment",
    "metadata": {"name": "iris"},
    "spec": {"model": "iris", "target": {"type": "online", "replicas": 2}},
}


def with_change(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    document = json.loads(json.dumps(DEPLOYMENT))
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return document


def test_a_minimal_deployment_is_valid(validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(DEPLOYMENT)) == []


@pytest.mark.parametrize(
    "path, value",
    [
        (("spec", "target", "replica"), 2),
        (("spec", "colour"), "red"),
        (("spec", "target", "replicas"), "two"),
        (("metadata", "name"), "Iris_Bad"),
        (("kind",), "Gadget"),
        (("apiVersion",), "mlopsfile/v2"),
    ],
)
def test_invalid_documents_fail_the_schema(
    validator: jsonschema.Draft202012Validator, path: tuple[str, ...], value: Any
) -> None:
    assert not validator.is_valid(with_change(path, value))
