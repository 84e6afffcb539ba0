"""Edge targets through the real spec loader: defaults, and located one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlopsfile.spec.edge import DEFAULT_BASE_IMAGE, EdgeTarget
from mlopsfile.spec.loader import load_specs
from mlopsfile.spec.rollout import CanaryRollout
from tests.unit.conftest import MODEL, WriteSpecs
from tests.unit.test_batch_spec import spec_errors

# Starts on line 8 of MODEL + "---\n" + EDGE; fields added at the end of the target go to line 16.
EDGE = """\
apiVersion: mlopsfile/v1
kind: Deployment
metadata:
  name: iris-edge
spec:
  model: iris
  target:
    type: edge
"""


def edge_file(write_specs: WriteSpecs, edge: str) -> Path:
    return write_specs({"a.yaml": MODEL + "---\n" + edge})


def test_a_bare_edge_target_loads_with_defaults(write_specs: WriteSpecs) -> None:
    target = load_specs(edge_file(write_specs, EDGE), None).deployment("iris-edge").spec.target
    assert isinstance(target, EdgeTarget)
    assert (target.image, target.base_image, target.python_version) == (None, DEFAULT_BASE_IMAGE, "3.11")
    assert (target.registry, target.bundle, target.quantize, target.smoke) == (None, None, "none", None)
    assert (target.parity.reference, target.parity.rows, target.parity.atol, target.parity.rtol) == (None, 100, 1e-4, 1e-4)


def test_a_fully_specified_edge_target_with_a_canary_loads(write_specs: WriteSpecs) -> None:
    text = EDGE + (
        "    image: acme/iris-edge\n"
        "    base_image: mlopsfile-edge-base:bookworm\n"
        "    registry: 127.0.0.1:5000/team\n"
        "    bundle: dist/edge\n"
        "    quantize: dynamic\n"
        "    parity: {reference: data/sample.csv, atol: 0.001, rtol: 0}\n"
        "    smoke: {requests: 5}\n"
        "  rollout: {strategy: canary}\n"
    )
    spec = load_specs(edge_file(write_specs, text), None).deployment("iris-edge").spec
    assert isinstance(spec.target, EdgeTarget) and isinstance(spec.rollout, CanaryRollout)
    assert (spec.target.image, spec.target.registry, spec.target.bundle) == (
        "acme/iris-edge", "127.0.0.1:5000/team", "dist/edge")
    assert (spec.target.quantize, spec.target.parity.atol, spec.target.smoke.requests) == ("dynamic", 0.001, 5)


@pytest.mark.parametrize(("field", "message"), [
    ("image: Acme/Iris", "spec.target.image: invalid image repository 'Acme/Iris': lowercase letters, digits, "
                         "'.', '_', '-' and '/'"),
    ("registry: 'http://registry'", "spec.target.registry: invalid registry 'http://registry': expected "
                                    "host[:port][/namespace]"),
    ("python_version: '3'", "spec.target.python_version: invalid python_version '3': expected e.g. '3.11'"),
])
def test_bad_edge_fields_are_located(write_specs: WriteSpecs, field: str, message: str) -> None:
    errors = spec_errors(edge_file(write_specs, EDGE + f"    {field}\n"))
    assert len(errors) == 1 and errors[0].startswith("specs/a.yaml:16:") and errors[0].endswith(message), errors


@pytest.mark.parametrize(("rollout", "message"), [
    ("canary\n    steps: [{weight: 10}]", "an edge canary moves the image's `canary` tag and waits for "
                                          "`mlopsfile promote`; steps do not apply"),
    ("blue-green", "rollout strategy 'blue-green' is for online targets; an edge target takes direct"),
])
def test_a_rollout_that_does_not_fit_an_edge_target_is_refused(write_specs: WriteSpecs, rollout: str,
                                                                message: str) -> None:
    errors = spec_errors(edge_file(write_specs, EDGE + f"  rollout:\n    strategy: {rollout}\n"))
    assert len(errors) == 1 and message in errors[0], errors
