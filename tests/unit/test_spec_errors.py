"""Every kind of spec mistake becomes one located line: file:line:column, field path, message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlopsfile.errors import SpecErrors
from mlopsfile.spec.loader import load_specs
from mlopsfile.spec.specset import SpecSet
from mlopsfile.spec.yaml_source import MAX_FILE_BYTES, read_yaml_documents
from tests.unit.conftest import MODEL, WriteSpecs

DEPLOYMENT = """\
apiVersion: mlopsfile/v1
kind: Deployment
metadata:
  name: iris
spec:
  model: iris
  target:
    type: online
"""


def spec_errors(root: Path) -> list[str]:
    """The one-line messages of a failed load, in the order the CLI prints them."""
    with pytest.raises(SpecErrors) as caught:
        load_specs(root, root.parent)
    return [error.line() for error in caught.value.errors]


def load(root: Path) -> SpecSet:
    return load_specs(root, root.parent)


# -- syntax and document shape ---------------------------------------------------------


def test_yaml_syntax_error_is_located_and_other_files_still_checked(write_specs: WriteSpecs) -> None:
    root = write_specs({
        "a.yaml": """
            apiVersion: mlopsfile/v1
            kind: Model
            metadata:
              name: iris: bad
            spec:
              uri: models:/iris@champion
            """,
        "b.yaml": MODEL.replace("name: iris", "name: rose").replace("uri:", "url:"),
    })
    assert spec_errors(root) == [
        "specs/a.yaml:4:13: YAML syntax error: mapping values are not allowed here",
        "specs/b.yaml:6:3: spec.uri: missing required field",
        "specs/b.yaml:6:3: spec.url: unknown field 'url' (did you mean 'uri'?)",
    ]


def test_document_that_is_not_a_mapping(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL + "---\n- just\n- a list\n"})
    assert spec_errors(root) == [
        "specs/a.yaml:8:1: a document must be a mapping with apiVersion, kind, metadata and spec",
    ]


def test_unknown_kind(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL.replace("kind: Model", "kind: Modle")})
    assert spec_errors(root) == ["specs/a.yaml:2:7: kind: unknown kind 'Modle'; known kinds: Model, Deployment, Monitor"]


def test_missing_kind_points_at_the_document(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL + "---\n" + MODEL.replace("kind: Model\n", "")})
    assert spec_errors(root) == ["specs/a.yaml:8:1: kind: missing required field"]


def test_unknown_and_missing_api_version(write_specs: WriteSpecs) -> None:
    second = MODEL.replace("name: iris", "name: rose").replace("apiVersion: mlopsfile/v1\n", "")
    root = write_specs({"a.yaml": MODEL.replace("mlopsfile/v1", "mlopsfile/v2") + "---\n" + second})
    assert spec_errors(root) == [
        "specs/a.yaml:1:13: apiVersion: unknown apiVersion 'mlopsfile/v2'; expected 'mlopsfile/v1'",
        "specs/a.yaml:8:1: apiVersion: missing required field",
    ]


# -- fields ----------------------------------------------------------------------------


def test_unknown_field_suggests_the_closest_name(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL + "---\n" + DEPLOYMENT + "    replica: 2\n"})
    assert spec_errors(root) == [
        "specs/a.yaml:16:5: spec.target.replica: unknown field 'replica' (did you mean 'replicas'?)",
    ]


def test_unknown_field_without_a_close_match_lists_the_allowed_ones(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL + "  colour: red\n"})
    assert spec_errors(root) == ["specs/a.yaml:7:3: spec.colour: unknown field 'colour'; allowed: uri, description"]


def test_mistyped_field(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL + "---\n" + DEPLOYMENT + "    replicas: two\n"})
    assert spec_errors(root) == [
        "specs/a.yaml:16:15: spec.target.replicas: Input should be a valid integer, "
        "unable to parse string as an integer, got 'two'",
    ]


def test_missing_required_field_points_at_its_parent(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL + "---\n" + DEPLOYMENT.replace("    type: online\n", "    route: /x\n")})
    assert spec_errors(root) == ["specs/a.yaml:15:5: spec.target.type: missing required field"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Iris_Bad", "String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', got 'Iris_Bad'"),
        ("-iris", "String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', got '-iris'"),
        ("a" * 64, "String should have at most 63 characters, got '" + "a" * 64 + "'"),
    ],
)
def test_name_must_be_a_dns_label(write_specs: WriteSpecs, name: str, message: str) -> None:
    root = write_specs({"a.yaml": MODEL.replace("name: iris", f"name: {name!r}")})
    assert spec_errors(root) == [f"specs/a.yaml:4:9: metadata.name: {message}"]


def test_every_error_of_a_run_is_reported(write_specs: WriteSpecs) -> None:
    deployment = DEPLOYMENT.replace("type: online", "type: online\n    replicas: two\n    resourcs: {}")
    root = write_specs({
        "a.yaml": MODEL.replace("name: iris", "name: Iris") + "---\n" + deployment,
        "b.yaml": MODEL.replace("kind: Model", "kind: Gadget"),
        "c.yaml": "apiVersion: [\n",
    })
    assert spec_errors(root) == [
        "specs/a.yaml:4:9: metadata.name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', got 'Iris'",
        "specs/a.yaml:16:15: spec.target.replicas: Input should be a valid integer, "
        "unable to parse string as an integer, got 'two'",
        "specs/a.yaml:17:5: spec.target.resourcs: unknown field 'resourcs' (did you mean 'resources'?)",
        "specs/b.yaml:2:7: kind: unknown kind 'Gadget'; known kinds: Model, Deployment, Monitor",
        "specs/c.yaml:2:1: YAML syntax error: expected the node content, but found '<stream end>'",
    ]


def test_spec_errors_message_has_one_line_per_error(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL.replace("kind: Model", "kind: Modle"), "b.yaml": "a: [\n"})
    with pytest.raises(SpecErrors) as caught:
        load(root)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("specs/a.yaml:2:7: kind:")
    assert lines[1].startswith("specs/b.yaml:2:1: YAML syntax error")


# -- references across documents -------------------------------------------------------


def test_duplicate_names_across_files_name_the_first(write_specs: WriteSpecs) -> None:
    root = write_specs({
        "a.yaml": MODEL + "---\n" + DEPLOYMENT,
        "sub/b.yaml": MODEL.replace("@champion", "/2") + "---\n" + DEPLOYMENT,
    })
    assert spec_errors(root) == [
        "specs/sub/b.yaml:4:9: metadata.name: duplicate Model name 'iris' (first defined at specs/a.yaml:4:9)",
        "specs/sub/b.yaml:11:9: metadata.name: duplicate Deployment name 'iris' (first defined at specs/a.yaml:11:9)",
    ]


def test_a_model_and_a_deployment_may_share_a_name(write_specs: WriteSpecs) -> None:
    specset = load(write_specs({"a.yaml": MODEL + "---\n" + DEPLOYMENT}))
    assert list(specset.models) == ["iris"]
    assert list(specset.deployments) == ["iris"]


def test_deployment_of_a_model_that_does_not_exist(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL + "---\n" + DEPLOYMENT.replace("model: iris", "model: irs")})
    assert spec_errors(root) == ["specs/a.yaml:13:10: spec.model: no Model named 'irs' in the specs (known: iris)"]


def test_two_online_deployments_on_one_explicit_route(write_specs: WriteSpecs) -> None:
    first = DEPLOYMENT.replace("name: iris", "name: blue") + "    route: /shared\n"
    second = DEPLOYMENT.replace("name: iris", "name: green") + "    route: /shared\n"
    root = write_specs({"a.yaml": MODEL + "---\n" + first + "---\n" + second})
    assert spec_errors(root) == [
        "specs/a.yaml:26:12: spec.target.route: route '/shared' is already served by Deployment 'blue' (specs/a.yaml:15:5)",
    ]


def test_an_explicit_route_may_collide_with_a_default_route(write_specs: WriteSpecs) -> None:
    # The first document (line 8) owns '/iris' through its default route; the later one
    # (line 17) is the one in error. Lines 8 and 17 also check that source order is
    # numeric, not textual ("17" < "8").
    other = DEPLOYMENT.replace("name: iris", "name: other") + "    route: /iris\n"
    root = write_specs({"a.yaml": MODEL + "---\n" + DEPLOYMENT + "---\n" + other})
    assert spec_errors(root) == [
        "specs/a.yaml:25:12: spec.target.route: route '/iris' is already served by Deployment 'iris' (specs/a.yaml:15:5)",
    ]


def test_route_conflict_across_files_blames_the_later_file(write_specs: WriteSpecs) -> None:
    other = DEPLOYMENT.replace("name: iris", "name: other") + "    route: /iris\n"
    root = write_specs({"a.yaml": MODEL + "---\n" + DEPLOYMENT, "b.yaml": other})
    assert spec_errors(root) == [
        "specs/b.yaml:9:12: spec.target.route: route '/iris' is already served by Deployment 'iris' (specs/a.yaml:15:5)",
    ]


# -- hostile YAML ----------------------------------------------------------------------

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.timeout(120)  # expanded, this document has about 10^9 nodes: a loader that builds it never returns
def test_alias_bomb_is_refused_without_expanding_it(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL + "---\n" + BILLION_LAUGHS})
    errors = spec_errors(root)
    assert errors == [
        "specs/a.yaml:8:1: document expands to more than 100000 nodes through anchors and aliases; refused",
    ]


def test_small_anchors_and_aliases_are_allowed(write_specs: WriteSpecs) -> None:
    # Anchors only reach within one document, so both uses sit in the same one.
    model = MODEL.replace("metadata:\n", "metadata:\n  labels: &team {team: ml}\n  annotations: *team\n")
    specset = load(write_specs({"a.yaml": model}))
    assert specset.model("iris").metadata.labels == {"team": "ml"}
    assert specset.model("iris").metadata.annotations == {"team": "ml"}


def test_self_referencing_alias_is_an_error_not_a_hang(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": MODEL.replace("metadata:\n  name: iris\n", "metadata: &m\n  name: iris\n  labels: *m\n")})
    errors = spec_errors(root)
    assert len(errors) == 1
    assert errors[0].startswith("specs/a.yaml:3:11: metadata.labels.labels: Input should be a valid string")


def test_file_over_the_size_limit_is_refused_unread(write_specs: WriteSpecs) -> None:
    padding = "#" * (MAX_FILE_BYTES + 1 - len(MODEL) - 1) + "\n"
    root = write_specs({"big.yaml": MODEL + padding, "ok.yaml": MODEL.replace("name: iris", "name: rose")})
    size = (root / "big.yaml").stat().st_size
    assert size == MAX_FILE_BYTES + 1
    assert spec_errors(root) == [f"specs/big.yaml:1:1: file is {size} bytes, over the 1024 KiB limit; split it"]


def test_text_over_the_size_limit_is_refused_by_the_parser() -> None:
    documents, errors = read_yaml_documents("a: 1\n" + "#" * MAX_FILE_BYTES, "x.yaml")
    assert documents == []
    assert [e.line() for e in errors] == ["x.yaml:1:1: file is larger than 1024 KiB; split it"]


def test_duplicate_keys_are_errors(write_specs: WriteSpecs) -> None:
    text = MODEL.replace("  name: iris\n", "  name: iris\n  name: rose\n") + "spec:\n  uri: models:/iris/2\n"
    root = write_specs({"a.yaml": text})
    assert spec_errors(root) == [
        "specs/a.yaml:5:3: metadata.name: duplicate key 'name' (first at line 4)",
        "specs/a.yaml:8:1: spec: duplicate key 'spec' (first at line 6)",
    ]


@pytest.mark.parametrize(
    "tag",
    ["!!python/object/apply:os.system", "!!python/object/new:os.system", "!!python/name:os.system"],
)
def test_python_object_tags_are_refused_without_running_anything(
    write_specs: WriteSpecs, tmp_path: Path, tag: str
) -> None:
    marker = tmp_path / "pwned"
    text = MODEL.replace("  name: iris\n", f"  name: iris\n  labels: {tag} ['touch {marker}']\n")
    root = write_specs({"a.yaml": text})
    errors = spec_errors(root)
    assert not marker.exists()
    assert len(errors) == 1
    assert errors[0].startswith("specs/a.yaml:5:11: ")
    assert f"tag:yaml.org,2002:{tag[2:]}" in errors[0]


# -- what a spec tree may hold ---------------------------------------------------------


def test_multi_document_files_in_a_nested_tree_load(write_specs: WriteSpecs) -> None:
    garbage = "this: [is not: a spec\n"
    rose_model = MODEL.replace("iris", "rose")
    rose_deployment = DEPLOYMENT.replace("iris", "rose")
    root = write_specs({
        "iris.yaml": "# the quickstart\n---\n" + MODEL + "---\n" + DEPLOYMENT + "---\n# trailing empty document\n",
        "teams/flowers/rose.yml": rose_model + "---\n" + rose_deployment,
        "teams/empty.yaml": "# nothing here yet\n",
        ".hidden/broken.yaml": garbage,
        "teams/.drafts/broken.yaml": garbage,
        "mlopsfile.yaml": garbage,
        "teams/mlopsfile.yaml": garbage,
        "README.md": garbage,
    })
    specset = load(root)
    assert sorted(specset.models) == ["iris", "rose"]
    assert sorted(specset.deployments) == ["iris", "rose"]
    # Positions are absolute lines in the file, not lines within the document.
    assert specset.deployments["iris"].at("spec", "model") == "specs/iris.yaml:15:10"
    assert specset.deployments["rose"].at() == "specs/teams/flowers/rose.yml:8:1"
    assert specset.model("rose").spec.uri == "models:/rose@champion"


def test_a_single_file_can_be_loaded(write_specs: WriteSpecs) -> None:
    root = write_specs({"one.yaml": MODEL})
    specset = load_specs(root / "one.yaml", root.parent)
    assert list(specset.models) == ["iris"]


def test_a_missing_spec_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecErrors) as caught:
        load_specs(tmp_path / "nowhere", tmp_path)
    assert str(caught.value) == f"no such file or directory: {tmp_path / 'nowhere'}"


# -- the CLI ---------------------------------------------------------------------------


def run_validate(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MLOPSFILE_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "mlopsfile", "validate", "--specs", "specs"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )


def test_cli_validate_prints_one_line_per_error(write_specs: WriteSpecs, tmp_path: Path) -> None:
    write_specs({"a.yaml": MODEL.replace("kind: Model", "kind: Modle") + "---\n" + DEPLOYMENT + "    replicas: two\n"})
    result = run_validate(tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [
        "specs/a.yaml:2:7: kind: unknown kind 'Modle'; known kinds: Model, Deployment, Monitor",
        "specs/a.yaml:16:15: spec.target.replicas: Input should be a valid integer, "
        "unable to parse string as an integer, got 'two'",
        "2 error(s) in the specs",
    ]


def test_cli_validate_accepts_good_specs_and_touches_nothing(write_specs: WriteSpecs, tmp_path: Path) -> None:
    write_specs({"a.yaml": MODEL + "---\n" + DEPLOYMENT})
    result = run_validate(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Valid: 1 model(s), 1 deployment(s)." in result.stdout
    assert not (tmp_path / ".mlopsfile").exists()
