"""A monitor's reference and features are checked when the plan is made, against a real model signature."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlopsfile.desired import build_desired
from mlopsfile.drivers.monitor_data import MonitorData
from mlopsfile.errors import SpecErrors
from mlopsfile.spec.loader import load_specs
from mlopsfile.values import ResolvedModel
from tests.unit.conftest import MODEL, WriteSpecs
from tests.unit.test_monitor_spec import ONLINE

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _iris() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    features = frame.drop(columns="target")
    features.columns = FEATURES
    return features, frame["target"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MLflow model on disk (no registry): its signature is what the checks read."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    features, labels = _iris()
    path = tmp_path_factory.mktemp("model") / "iris"
    classifier = LogisticRegression(max_iter=500).fit(features, labels)
    mlflow.sklearn.save_model(classifier, str(path), signature=infer_signature(features, labels))
    return path


class LocalModel:
    """Resolves every Model to the model directory (the registry driver's interface)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resolve(self, name: str, uri: str) -> ResolvedModel:
        return ResolvedModel(name=name, uri=uri, version="1", pinned_uri=str(self.path), digest="sha256:x")


def _desired(write_specs: WriteSpecs, model_dir: Path, monitor: str):
    specs = write_specs({"a.yaml": "---\n".join((MODEL, ONLINE, monitor))})
    root = specs.parent
    specset = load_specs(specs, root)
    data = MonitorData("sqlite:///" + str(root / "mlflow.db"), root / "cache")
    return build_desired(specset, LocalModel(model_dir), "demo", "runtime-1", root=root, monitors=data)


def _monitor(reference: str = "data/reference.parquet", extra: str = "") -> str:
    return ("apiVersion: mlopsfile/v1\nkind: Monitor\nmetadata: {name: live-drift}\nspec:\n"
            f"  deployment: live\n  reference: {reference}\n  window: {{rows: 200}}\n  sample: 0.25\n{extra}")


def _write_reference(root: Path, frame: pd.DataFrame, name: str = "reference.parquet") -> None:
    (root / "data").mkdir(exist_ok=True)
    target = root / "data" / name
    frame.to_parquet(target) if name.endswith(".parquet") else frame.to_csv(target, index=False)


def _errors(write_specs: WriteSpecs, model_dir: Path, monitor: str) -> list[str]:
    with pytest.raises(SpecErrors) as caught:
        _desired(write_specs, model_dir, monitor)
    return [error.line() for error in caught.value.errors]


def test_a_monitor_takes_the_signature_inputs_and_its_deployment_feeds_it(write_specs: WriteSpecs,
                                                                           model_dir: Path, tmp_path: Path) -> None:
    _write_reference(tmp_path, _iris()[0])
    desired = _desired(write_specs, model_dir, _monitor())
    monitor = desired.monitor("live-drift")
    assert monitor is not None
    assert monitor.prepared.features == tuple(FEATURES) and monitor.prepared.reference_rows == 150
    assert monitor.config["window_rows"] == 200 and monitor.config["detector"]["kind"] == "ks"
    deployment = desired.deployment("live")
    assert deployment is not None
    assert [(t.monitor, t.sample, t.target) for t in deployment.serving.taps] == [("live-drift", 0.25, "inputs")]
    again = _desired(write_specs, model_dir, _monitor(extra="  cooldown: 1h\n")).monitor("live-drift")
    assert again is not None and again.digest != monitor.digest  # a new cooldown is a new actor config


def test_a_missing_reference_fails_at_its_field(write_specs: WriteSpecs, model_dir: Path, tmp_path: Path) -> None:
    lines = _errors(write_specs, model_dir, _monitor())
    assert lines == ["specs/a.yaml:20:14: spec.reference: reference file "
                     f"{tmp_path / 'data/reference.parquet'} does not exist"]


def test_features_the_model_does_not_take_fail_at_features(write_specs: WriteSpecs, model_dir: Path,
                                                           tmp_path: Path) -> None:
    _write_reference(tmp_path, _iris()[0].assign(colour=1.0))
    lines = _errors(write_specs, model_dir, _monitor(extra="  features: [sepal_length, colour]\n"))
    assert len(lines) == 1 and "spec.features: not inputs of model iris (version 1): colour" in lines[0], lines
    assert "its signature has: sepal_length, sepal_width, petal_length, petal_width" in lines[0]


def test_a_reference_without_the_model_inputs_fails_at_the_reference(write_specs: WriteSpecs, model_dir: Path,
                                                                      tmp_path: Path) -> None:
    _write_reference(tmp_path, _iris()[0].drop(columns="petal_width"), "reference.csv")
    lines = _errors(write_specs, model_dir, _monitor("data/reference.csv"))
    assert len(lines) == 1 and "spec.reference: the reference has no column 'petal_width'" in lines[0], lines


@pytest.mark.parametrize(("frame_change", "message"), [
    (lambda f: f.head(5), "has 5 rows; a drift test needs at least 10"),
    (lambda f: f.assign(sepal_length=[None, *f.sepal_length[1:]]), "column 'sepal_length' has missing values"),
    (lambda f: f.assign(sepal_width="wide"), "column 'sepal_width' is not numeric"),
])
def test_unusable_reference_data_fails_at_plan_time(write_specs: WriteSpecs, model_dir: Path, tmp_path: Path,
                                                    frame_change, message: str) -> None:
    _write_reference(tmp_path, frame_change(_iris()[0]))
    lines = _errors(write_specs, model_dir, _monitor())
    assert len(lines) == 1 and "spec.reference" in lines[0] and message in lines[0], lines


def test_a_parameter_the_detector_does_not_take_fails_at_the_detector(write_specs: WriteSpecs, model_dir: Path,
                                                                     tmp_path: Path) -> None:
    _write_reference(tmp_path, _iris()[0])
    lines = _errors(write_specs, model_dir, _monitor(extra="  detector: {kind: mmd, correction: fdr}\n"))
    assert len(lines) == 1 and "spec.detector: parameters.correction: not a parameter of mmd" in lines[0], lines


def test_a_batch_deployment_refuses_a_rollback_action(write_specs: WriteSpecs, model_dir: Path) -> None:
    from mlopsfile.desired_monitors import desired_monitors
    from tests.unit.test_batch_spec import BATCH

    monitor = _monitor().replace("deployment: live", "deployment: nightly") + \
        "  on_drift:\n    - {type: alert, url: 'http://127.0.0.1:9/hook'}\n    - {type: rollback}\n"
    specs = write_specs({"a.yaml": "---\n".join((MODEL, BATCH, monitor))})
    specset = load_specs(specs, specs.parent)
    model = LocalModel(model_dir).resolve("iris", "models:/iris@champion")
    monitors, errors = desired_monitors(specset, {"iris": model}, None, "demo", specs.parent)
    assert monitors == [] and [e.line() for e in errors] == [
        "specs/a.yaml:29:7: spec.on_drift[1]: a batch deployment has no revision to roll back to: use a `run` action "
        "(e.g. rescoring with another model)"]
