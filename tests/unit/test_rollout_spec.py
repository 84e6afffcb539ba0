"""`spec.rollout`: every strategy loads, and every mistake is one located line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mlopsfile.desired import rollout_settings
from mlopsfile.spec.rollout import (
    STRATEGIES,
    ABRollout,
    BlueGreenRollout,
    CanaryRollout,
    DirectRollout,
    ShadowRollout,
    duration_seconds,
)
from tests.unit.test_spec_errors import DEPLOYMENT, MODEL, load, spec_errors

WriteSpecs = Callable[[dict[str, str]], Path]
SCHEMA = Path(__file__).resolve().parents[2] / "schema" / "mlopsfile.schema.json"

# Lines 1-6: the model; 7: '---'; 8-15: the deployment; its rollout (when added) starts on line 16.
MODELS = MODEL  # the same documents test_spec_errors positions its errors against

ROSE = """\
---
apiVersion: mlopsfile/v1
kind: Model
metadata:
  name: rose
spec:
  uri: models:/rose/4
"""


def with_rollout(rollout: str, deployment: str = DEPLOYMENT) -> str:
    """The model and a deployment whose ``spec.rollout`` is ``rollout`` (indented under it)."""
    body = "".join(f"    {line}\n" for line in rollout.strip("\n").splitlines())
    return MODELS + "---\n" + deployment + "  rollout:\n" + body


# -- valid specs -----------------------------------------------------------------------

VALID = {
    "direct": ("strategy: direct", DirectRollout),
    "canary": ("""
strategy: canary
steps:
- {weight: 20, pause: 1m}
- {weight: 50, pause: 90s}
- {weight: 100}
analysis: {max_error_rate: 0.02, max_p99_ms: 250, min_requests: 50}
keep_previous: 1h30m
""", CanaryRollout),
    "blue-green": ("""
strategy: blue-green
preview_route: /iris-next
smoke: {requests: 5, body: {inputs: [[1, 2, 3, 4]]}}
pause: 30
""", BlueGreenRollout),
    "ab": ("""
strategy: ab
candidate: rose
weight: 30
sticky_header: X-Customer-Id
duration: 2h
""", ABRollout),
    "shadow": ("""
strategy: shadow
candidate: rose
sample: 0.25
""", ShadowRollout),
}


@pytest.mark.parametrize("strategy", list(VALID))
def test_every_strategy_loads(write_specs: WriteSpecs, strategy: str) -> None:
    text, model = VALID[strategy]
    specset = load(write_specs({"a.yaml": with_rollout(text) + ROSE}))
    rollout = specset.deployment("iris").spec.rollout
    assert isinstance(rollout, model)
    assert rollout.strategy == strategy


def test_without_rollout_the_strategy_is_direct(write_specs: WriteSpecs) -> None:
    specset = load(write_specs({"a.yaml": MODELS + "---\n" + DEPLOYMENT}))
    assert isinstance(specset.deployment("iris").spec.rollout, DirectRollout)
    assert rollout_settings(specset.deployment("iris")).strategy == "direct"


def test_settings_carry_durations_in_seconds(write_specs: WriteSpecs) -> None:
    specset = load(write_specs({"a.yaml": with_rollout(VALID["canary"][0]) + ROSE}))
    settings = rollout_settings(specset.deployment("iris"))
    assert settings.steps == ((20.0, 60.0), (50.0, 90.0), (100.0, None))
    assert (settings.max_error_rate, settings.max_p99_ms, settings.min_requests) == (0.02, 250, 50)
    assert settings.keep_previous_s == 5400.0
    assert settings.progressive and not settings.experiment
    assert settings.describe() == "canary: 20% for 60s, 50% for 90s, 100% until promoted, then 100%"


def test_blue_green_settings_and_default_preview_route(write_specs: WriteSpecs) -> None:
    specset = load(write_specs({"a.yaml": with_rollout("strategy: blue-green", DEPLOYMENT + "    route: /v1/iris\n")}))
    document = specset.deployment("iris")
    assert document.preview_route() == "/v1/iris/preview"
    settings = rollout_settings(document)
    assert (settings.preview_route, settings.smoke_requests, settings.pause_s, settings.keep_previous_s) == (
        "/v1/iris/preview", 20, 0.0, 300.0)


def test_ab_header_is_lower_cased_and_experiment_settings(write_specs: WriteSpecs) -> None:
    specset = load(write_specs({"a.yaml": with_rollout(VALID["ab"][0]) + ROSE}))
    settings = rollout_settings(specset.deployment("iris"))
    assert (settings.strategy, settings.weight, settings.sticky_header, settings.duration_s) == (
        "ab", 30, "x-customer-id", 7200.0)
    assert settings.experiment and not settings.progressive
    shadow = rollout_settings(load(write_specs({"a.yaml": with_rollout(VALID["shadow"][0]) + ROSE})).deployment("iris"))
    assert (shadow.sample, shadow.duration_s) == (0.25, None)


# -- mistakes, located -----------------------------------------------------------------


def test_unknown_strategy(write_specs: WriteSpecs) -> None:
    errors = spec_errors(write_specs({"a.yaml": with_rollout("strategy: linear")}))
    assert len(errors) == 1
    assert errors[0].startswith("specs/a.yaml:17:5: spec.rollout: ")
    assert "'linear'" in errors[0]
    assert all(f"'{name}'" in errors[0] for name in STRATEGIES)


def test_missing_strategy(write_specs: WriteSpecs) -> None:
    errors = spec_errors(write_specs({"a.yaml": with_rollout("steps: [{weight: 10}]")}))
    assert errors == ["specs/a.yaml:17:5: spec.rollout.strategy: missing required field"]


DECREASING = "strategy: canary\nsteps:\n- {weight: 50, pause: 1m}\n- {weight: 20}"


def test_canary_weights_must_increase(write_specs: WriteSpecs) -> None:
    errors = spec_errors(write_specs({"a.yaml": with_rollout(DECREASING)}))
    assert len(errors) == 1
    assert errors[0].startswith("specs/a.yaml:17:5: spec.rollout")
    assert errors[0].endswith("steps must have strictly increasing weights, got [50.0, 20.0]")
    repeated = with_rollout("strategy: canary\nsteps: [{weight: 20}, {weight: 20}]")
    assert spec_errors(write_specs({"a.yaml": repeated}))[0].endswith("got [20.0, 20.0]")


def test_canary_weights_error_names_a_real_field_path(write_specs: WriteSpecs) -> None:
    assert spec_errors(write_specs({"a.yaml": with_rollout(DECREASING)})) == [
        "specs/a.yaml:17:5: spec.rollout: steps must have strictly increasing weights, got [50.0, 20.0]",
    ]


def test_canary_needs_a_step(write_specs: WriteSpecs) -> None:
    errors = spec_errors(write_specs({"a.yaml": with_rollout("strategy: canary\nsteps: []")}))
    assert len(errors) == 1
    assert errors[0].startswith("specs/a.yaml:18:12: spec.rollout.steps: List should have at least 1 item")


def test_bad_duration_string(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": with_rollout("strategy: canary\nsteps:\n- weight: 50\n  pause: 5 minutes")})
    assert spec_errors(root) == [
        "specs/a.yaml:20:14: spec.rollout.steps[0].pause: invalid duration '5 minutes': "
        "use seconds or a span like '30s', '5m', '1h30m'",
    ]


def test_bad_and_negative_durations_elsewhere(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": with_rollout("strategy: canary\nsteps: [{weight: 5, pause: -3}]\nkeep_previous: soon")})
    assert spec_errors(root) == [
        "specs/a.yaml:18:32: spec.rollout.steps[0].pause: a duration cannot be negative",
        "specs/a.yaml:19:20: spec.rollout.keep_previous: invalid duration 'soon': "
        "use seconds or a span like '30s', '5m', '1h30m'",
    ]


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_durations_must_be_finite(write_specs: WriteSpecs, value: str) -> None:
    root = write_specs({"a.yaml": with_rollout(f"strategy: canary\nsteps: [{{weight: 5}}]\nkeep_previous: {value}")})
    errors = spec_errors(root)
    assert len(errors) == 1 and errors[0].startswith("specs/a.yaml:19:20: spec.rollout.keep_previous: ")


def test_weight_over_100(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": with_rollout("strategy: canary\nsteps:\n- weight: 150")})
    assert spec_errors(root) == [
        "specs/a.yaml:19:15: spec.rollout.steps[0].weight: Input should be less than or equal to 100, got 150",
    ]


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ("strategy: ab\ncandidate: rose\nweight: 100",
         "specs/a.yaml:19:13: spec.rollout.weight: Input should be less than 100, got 100"),
        ("strategy: ab\ncandidate: rose\nsticky_header: 'x user'",
         "specs/a.yaml:19:20: spec.rollout.sticky_header: invalid header name 'x user'"),
        ("strategy: shadow\ncandidate: rose\nsample: 0",
         "specs/a.yaml:19:13: spec.rollout.sample: Input should be greater than 0, got 0"),
        ("strategy: blue-green\npreview_route: preview/",
         "specs/a.yaml:18:20: spec.rollout.preview_route: invalid route 'preview/': "
         "it starts with '/' and has no trailing '/', spaces or '?'"),
    ],
)
def test_experiment_and_preview_field_bounds(write_specs: WriteSpecs, rollout: str, message: str) -> None:
    assert spec_errors(write_specs({"a.yaml": with_rollout(rollout) + ROSE})) == [message]


def test_unknown_rollout_field_suggests_the_strategys_field(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": with_rollout("strategy: canary\nsteps: [{weight: 5}]\nkeep_previus: 1m")})
    assert spec_errors(root) == [
        "specs/a.yaml:19:5: spec.rollout.keep_previus: unknown field 'keep_previus' (did you mean 'keep_previous'?)",
    ]


def test_ab_candidate_must_name_a_model(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": with_rollout("strategy: ab\ncandidate: tulip")})
    assert spec_errors(root) == ["specs/a.yaml:18:16: spec.rollout.candidate: no Model named 'tulip' in the specs (known: iris)"]
    shadow = write_specs({"a.yaml": with_rollout("strategy: shadow\ncandidate: tulip") + ROSE})
    assert spec_errors(shadow) == [
        "specs/a.yaml:18:16: spec.rollout.candidate: no Model named 'tulip' in the specs (known: iris, rose)",
    ]


def other_deployment(name: str, route: str | None = None) -> str:
    text = "---\n" + DEPLOYMENT.replace("name: iris", f"name: {name}")
    return text + (f"    route: {route}\n" if route else "")


def test_preview_route_clashing_with_an_earlier_deployments_route(write_specs: WriteSpecs) -> None:
    # rose (lines 8-15) owns '/rose' first; iris' preview_route (line 27, column 20) is the one in error.
    text = MODELS + other_deployment("rose") + "---\n" + DEPLOYMENT + \
        "  rollout:\n    strategy: blue-green\n    preview_route: /rose\n"
    assert spec_errors(write_specs({"a.yaml": text})) == [
        "specs/a.yaml:27:20: spec.rollout.preview_route: route '/rose' is already served by Deployment 'rose' "
        "(specs/a.yaml:15:5)",
    ]


def test_a_later_route_clashing_with_a_preview_route(write_specs: WriteSpecs) -> None:
    # iris' default preview route '/iris/preview' comes first; rose's explicit route (line 27) is in error.
    text = with_rollout("strategy: blue-green") + other_deployment("rose", "/iris/preview")
    errors = spec_errors(write_specs({"a.yaml": text}))
    assert len(errors) == 1
    assert errors[0].startswith("specs/a.yaml:27:12: spec.target.route: route '/iris/preview' is already served by "
                                "Deployment 'iris'")


def test_preview_route_may_not_be_the_deployments_own_route(write_specs: WriteSpecs) -> None:
    root = write_specs({"a.yaml": with_rollout("strategy: blue-green\npreview_route: /iris")})
    assert spec_errors(root) == [
        "specs/a.yaml:18:20: spec.rollout.preview_route: route '/iris' is already served by Deployment 'iris' "
        "(specs/a.yaml:15:5)",
    ]


def test_preview_routes_of_two_deployments_do_not_clash_by_default(write_specs: WriteSpecs) -> None:
    text = with_rollout("strategy: blue-green") + other_deployment("rose") + "  rollout:\n    strategy: blue-green\n"
    specset = load(write_specs({"a.yaml": text}))
    assert {specset.deployment(n).preview_route() for n in ("iris", "rose")} == {"/iris/preview", "/rose/preview"}


def test_changing_the_candidate_model_changes_the_deployment_digest(write_specs: WriteSpecs) -> None:
    before = load(write_specs({"a.yaml": with_rollout("strategy: ab\ncandidate: rose") + ROSE}))
    after = load(write_specs({"a.yaml": with_rollout("strategy: ab\ncandidate: rose") + ROSE.replace("/4", "/5")}))
    assert before.deployment_digest("iris") != after.deployment_digest("iris")


def test_changing_the_rollout_changes_the_deployment_digest(write_specs: WriteSpecs) -> None:
    before = load(write_specs({"a.yaml": with_rollout("strategy: ab\ncandidate: rose") + ROSE}))
    after = load(write_specs({"a.yaml": with_rollout("strategy: ab\ncandidate: rose\nweight: 20") + ROSE}))
    assert before.deployment_digest("iris") != after.deployment_digest("iris")


# -- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("1h", 3600.0), ("2m30s", 150.0), ("1.5h", 5400.0),
     (" 45s ", 45.0), ("0s", 0.0), (12, 12.0), (0.5, 0.5)],
)
def test_duration_seconds(value: float | int | str, seconds: float) -> None:
    assert duration_seconds(value) == seconds


@pytest.mark.parametrize("value", ["", "   ", "5 minutes", "30", "1d", "m", "1m1h", "-5s"])
def test_duration_seconds_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        duration_seconds(value)


# -- the checked-in schema -------------------------------------------------------------


def test_schema_knows_every_strategy() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    text = json.dumps(schema)
    for name in STRATEGIES:
        assert f'"const": "{name}"' in text, name
    mapping = next(value["discriminator"]["mapping"] for value in _walk(schema)
                   if isinstance(value, dict) and value.get("discriminator", {}).get("propertyName") == "strategy")
    assert sorted(mapping) == sorted(STRATEGIES)


def _walk(value: object) -> list[object]:
    found: list[object] = [value]
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for child in children:
        found.extend(_walk(child))
    return found
