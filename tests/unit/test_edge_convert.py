"""MLflow models → edge model directories, checked for parity with the edge predictor.

Every model is a real one saved with MLflow (MLmodel file, signature), converted for
real and scored by both MLflow's pyfunc and ``runtime.edge.predictor.EdgeModel``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlopsfile.drivers.edge_convert import ConvertedModel, ModelMeta, convert
from mlopsfile.drivers.edge_parity import (
    check_parity,
    generated_payload,
    human_bytes,
    sample_origin,
    sample_payload,
)
from mlopsfile.errors import EdgeConversionError, PlanError

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")

TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}


def meta(name: str) -> ModelMeta:
    return ModelMeta(name=name, version="1", uri=f"models:/{name}/1", digest="0" * 64)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow-models")


@pytest.fixture(scope="module")
def iris(store: Path) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    path = store / "iris"
    mlflow.sklearn.save_model(
        model, path, signature=infer_signature(x, model.predict(x)), input_example=x.head(5),
        pip_requirements=["scikit-learn"],
    )
    return path


@pytest.fixture(scope="module")
def regressor(store: Path) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import make_regression
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_regression(n_samples=200, n_features=5, noise=0.5, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    model = make_pipeline(StandardScaler(), LinearRegression()).fit(frame, y)
    path = store / "regressor"
    # No input example: parity rows are generated from the signature.
    mlflow.sklearn.save_model(model, path, signature=infer_signature(frame, model.predict(frame)),
                              pip_requirements=["scikit-learn"])
    return path


def save_torch_mlp(path: Path, serialization_format: str) -> Path:
    torch = pytest.importorskip("torch")
    import mlflow.pytorch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 4))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3))]),
    )
    mlflow.pytorch.save_model(
        module, path, signature=signature, input_example=np.zeros((5, 4), dtype=np.float32),
        serialization_format=serialization_format, pip_requirements=["torch"],
    )
    return path


@pytest.fixture(scope="module")
def torch_mlp(store: Path) -> Path:
    """MLflow's default format for pytorch: a torch.export program ('pt2')."""
    return save_torch_mlp(store / "torch-mlp", "pt2")


@pytest.fixture(scope="module")
def torch_mlp_pickled(store: Path) -> Path:
    return save_torch_mlp(store / "torch-mlp-pickled", "pickle")


@pytest.fixture(scope="module")
def onnx_model(store: Path) -> Path:
    import mlflow.onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeRegressor

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    proto = to_onnx(DecisionTreeRegressor(max_depth=4, random_state=0).fit(x, y), x[:1], name="tree")
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 4))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1), name="variable")]),
    )
    path = store / "onnx-tree"
    mlflow.onnx.save_model(proto, path, signature=signature, pip_requirements=["onnx"])
    return path


@pytest.fixture(scope="module")
def mlp_classifier(store: Path) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    x, y = load_iris(return_X_y=True, as_frame=True)
    # lbfgs keeps no optimizer object, which MLflow's default skops format would not trust.
    model = MLPClassifier(hidden_layer_sizes=(64, 64), solver="lbfgs", max_iter=300, random_state=0).fit(x, y)
    path = store / "mlp"
    mlflow.sklearn.save_model(model, path, signature=infer_signature(x, model.predict(x)),
                              pip_requirements=["scikit-learn"])
    return path


def converted(local_dir: Path, out_dir: Path, quantize: str = "none") -> ConvertedModel:
    return convert(f"models:/{local_dir.name}/1", local_dir, out_dir, meta(local_dir.name), quantize=quantize)


def test_iris_pipeline_labels_are_equal(iris: Path, tmp_path: Path) -> None:
    result = converted(iris, tmp_path / "edge")

    manifest = json.loads((tmp_path / "edge" / "manifest.json").read_text())
    assert sorted(p.name for p in (tmp_path / "edge").iterdir()) == ["manifest.json", "model.onnx"]
    assert manifest["format"] == "mlopsfile-edge/v1"
    assert manifest["model"] == {"name": "iris", "version": "1", "uri": "models:/iris/1", "digest": "0" * 64}
    assert manifest["onnx"] == {"sha256": result.onnx_sha256, "opset": 17, "quantized": False, "flavor": "sklearn"}
    assert manifest["input"]["kind"] == "columns"
    assert manifest["input"]["dtype"] == "float32"
    assert [c["name"] for c in manifest["input"]["columns"]] == [
        "sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)",
    ]
    assert manifest["output"] == {"kind": "label", "onnx_name": "label", "squeeze": True}
    assert result.onnx_sha256 == sha256(tmp_path / "edge" / "model.onnx")

    report = check_parity(iris, tmp_path / "edge", sample_payload(iris, 100, None, 0), **TOLERANCE)
    assert report.passed, report.summary()
    assert report.kind == "label" and report.label_mismatches == 0 and report.rows == 5
    assert report.onnx_bytes == result.onnx_bytes
    assert report.summary().startswith("parity passed: 5/5 labels equal")


def test_iris_labels_on_generated_rows(iris: Path, tmp_path: Path) -> None:
    from mlflow.models import Model

    converted(iris, tmp_path / "edge")
    payload = generated_payload(Model.load(str(iris)).signature.inputs, 200, 3)

    report = check_parity(iris, tmp_path / "edge", payload, atol=0, rtol=0)
    assert report.passed, report.summary()
    assert report.rows == 200 and report.label_mismatches == 0


def test_regressor_passes_within_tolerance_and_fails_exactly(regressor: Path, tmp_path: Path) -> None:
    result = converted(regressor, tmp_path / "edge")
    assert result.manifest["output"] == {"kind": "value", "onnx_name": "variable", "squeeze": True}
    payload = sample_payload(regressor, 64, None, 0)

    report = check_parity(regressor, tmp_path / "edge", payload, **TOLERANCE)
    assert report.passed, report.summary()
    assert report.rows == 64 and report.max_abs_diff is not None and 0 < report.max_abs_diff < 1e-3
    assert report.worst_rows == ()

    # float32 in the ONNX graph against float64 in scikit-learn: exact equality cannot hold.
    strict = check_parity(regressor, tmp_path / "edge", payload, atol=0, rtol=0)
    assert not strict.passed
    assert strict.out_of_tolerance > 0
    assert 1 <= len(strict.worst_rows) <= 5
    worst = strict.worst_rows[0]
    assert set(worst.input) == {f"f{i}" for i in range(5)}
    assert worst.abs_diff == strict.max_abs_diff
    assert worst.abs_diff == pytest.approx(abs(worst.onnx - worst.original))
    diffs = [row.abs_diff for row in strict.worst_rows]
    assert diffs == sorted(diffs, reverse=True)
    assert strict.summary().startswith(f"parity FAILED: {strict.out_of_tolerance} of 64 rows beyond atol=0 rtol=0")


@pytest.mark.parametrize("fixture", ["torch_mlp", "torch_mlp_pickled"])
def test_torch_mlp(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from mlflow.models import Model

    local_dir: Path = request.getfixturevalue(fixture)
    result = converted(local_dir, tmp_path / "edge")
    assert result.manifest["input"] == {"kind": "tensor", "onnx_name": "input", "dtype": "float32", "shape": [-1, 4]}
    assert result.manifest["output"] == {"kind": "value", "onnx_name": "output", "squeeze": False}
    assert result.manifest["onnx"]["flavor"] == "pytorch"

    # The logged example is zeros; random rows exercise the weights.
    payload = generated_payload(Model.load(str(local_dir)).signature.inputs, 32, 1)
    assert np.asarray(payload["inputs"]).shape == (32, 4)
    report = check_parity(local_dir, tmp_path / "edge", payload, **TOLERANCE)
    assert report.passed, report.summary()
    assert report.rows == 32 and report.kind == "value"
    assert check_parity(local_dir, tmp_path / "edge", {"inputs": payload["inputs"][:1]}, **TOLERANCE).passed


def test_onnx_flavor_is_copied(onnx_model: Path, tmp_path: Path) -> None:
    result = converted(onnx_model, tmp_path / "edge")
    assert (tmp_path / "edge" / "model.onnx").read_bytes() == (onnx_model / "model.onnx").read_bytes()
    assert result.manifest["input"]["kind"] == "tensor"
    assert result.manifest["input"]["onnx_name"] == "X"
    assert result.manifest["output"]["onnx_name"] == "variable"
    assert result.manifest["output"]["kind"] == "value"

    report = check_parity(onnx_model, tmp_path / "edge", sample_payload(onnx_model, 40, None, 0), **TOLERANCE)
    assert report.passed, report.summary()
    assert report.rows == 40


def test_python_model_is_refused(store: Path, tmp_path: Path) -> None:
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return model_input * 2

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    path = tmp_path / "doubler"
    mlflow.pyfunc.save_model(path, python_model=Doubler(), signature=infer_signature(frame, frame * 2),
                             pip_requirements=["mlflow"])

    with pytest.raises(EdgeConversionError) as caught:
        converted(path, tmp_path / "edge")
    message = str(caught.value)
    assert isinstance(caught.value, PlanError)
    assert "python_function flavor (python_model)" in message
    assert "sklearn, pytorch and onnx" in message
    assert "\n" not in message
    assert not (tmp_path / "edge").exists()


def test_model_without_signature_is_refused(iris: Path, tmp_path: Path) -> None:
    import shutil

    import yaml

    copy = tmp_path / "iris-unsigned"
    shutil.copytree(iris, copy)
    mlmodel = yaml.safe_load((copy / "MLmodel").read_text())
    mlmodel.pop("signature")
    (copy / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    with pytest.raises(EdgeConversionError, match="no input signature"):
        converted(copy, tmp_path / "edge")


def test_dynamic_quantization(mlp_classifier: Path, tmp_path: Path) -> None:
    plain = converted(mlp_classifier, tmp_path / "plain")
    quantized = converted(mlp_classifier, tmp_path / "int8", quantize="dynamic")

    assert quantized.quantized and quantized.manifest["onnx"]["quantized"] is True
    assert quantized.original_onnx_bytes == plain.onnx_bytes
    assert quantized.onnx_bytes <= plain.onnx_bytes
    assert quantized.onnx_sha256 == sha256(tmp_path / "int8" / "model.onnx")

    payload = sample_payload(mlp_classifier, 30, None, 0)
    report = check_parity(mlp_classifier, tmp_path / "int8", payload, **TOLERANCE,
                          original_onnx_bytes=quantized.original_onnx_bytes)
    assert report.quantized and report.rows == 30
    assert report.onnx_bytes == quantized.onnx_bytes
    assert f"(int8, {human_bytes(plain.onnx_bytes)} before)" in report.summary()


def test_conversion_is_byte_identical(iris: Path, torch_mlp: Path, mlp_classifier: Path, tmp_path: Path) -> None:
    for model, quantize in ((iris, "none"), (torch_mlp, "none"), (mlp_classifier, "dynamic")):
        first = converted(model, tmp_path / f"{model.name}-a", quantize)
        second = converted(model, tmp_path / f"{model.name}-b", quantize)
        for name in ("model.onnx", "manifest.json"):
            assert sha256(tmp_path / f"{model.name}-a" / name) == sha256(tmp_path / f"{model.name}-b" / name), name
        assert first.onnx_sha256 == second.onnx_sha256
        text = (tmp_path / f"{model.name}-a" / "manifest.json").read_text()
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_sample_sources(iris: Path, regressor: Path, torch_mlp: Path, tmp_path: Path) -> None:
    from mlflow.models import Model

    example = sample_payload(iris, 100, None, 0)
    assert sample_origin(iris, None) == "input example"
    assert example["dataframe_split"]["columns"][0] == "sepal length (cm)"
    assert len(example["dataframe_split"]["data"]) == 5
    assert example["dataframe_split"]["data"][0] == [5.1, 3.5, 1.4, 0.2]

    generated = sample_payload(regressor, 25, None, 7)
    assert sample_origin(regressor, None) == "generated"
    assert generated["dataframe_split"]["columns"] == [f"f{i}" for i in range(5)]
    assert len(generated["dataframe_split"]["data"]) == 25
    assert generated == sample_payload(regressor, 25, None, 7)
    assert generated != sample_payload(regressor, 25, None, 8)
    json.dumps(generated)

    tensor = generated_payload(Model.load(str(torch_mlp)).signature.inputs, 3, 0)
    assert np.asarray(tensor["inputs"], dtype=np.float32).shape == (3, 4)
    assert sample_payload(torch_mlp, 3, None, 0) == {"inputs": [[0.0] * 4] * 5}

    # Extra and reordered columns in a reference table: the signature's columns, in its order.
    csv = tmp_path / "reference.csv"
    frame = pd.DataFrame(np.arange(30, dtype=float).reshape(6, 5), columns=[f"f{i}" for i in range(5)])
    frame.insert(0, "target", 1.0)
    frame[list(reversed(frame.columns))].to_csv(csv, index=False)
    reference = sample_payload(regressor, 25, csv, 0)
    assert sample_origin(regressor, csv) == "reference reference.csv"
    assert reference["dataframe_split"]["columns"] == [f"f{i}" for i in range(5)]
    assert reference["dataframe_split"]["data"][1] == [5.0, 6.0, 7.0, 8.0, 9.0]
    report = check_parity(regressor, converted(regressor, tmp_path / "edge").edge_dir, reference, **TOLERANCE)
    assert report.passed and report.rows == 6

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"inputs": [[0.5, 0.5, 0.5, 0.5]]}))
    assert sample_payload(torch_mlp, 10, request, 0) == {"inputs": [[0.5, 0.5, 0.5, 0.5]]}

    with pytest.raises(EdgeConversionError, match="lacks the model's column"):
        sample_payload(regressor, 10, _write_csv(tmp_path / "short.csv", {"f0": [1.0]}), 0)


def _write_csv(path: Path, columns: dict[str, list[float]]) -> Path:
    pd.DataFrame(columns).to_csv(path, index=False)
    return path
