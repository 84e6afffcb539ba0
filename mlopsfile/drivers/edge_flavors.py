"""One converter per MLflow flavor, each giving ONNX bytes and the manifest's input/output sections.

The input section follows the model's MLflow signature, because that is what a scoring
request is checked against: column names and order for a column signature, the shape
for a tensor signature. The output section names the ONNX output whose values are what
MLflow's pyfunc ``predict`` returns, so the edge server answers as the online target does.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from mlopsfile.drivers.edge_convert import (
    CONTRACT_DTYPES,
    LABEL_COLUMN_TYPES,
    ML_OPSET,
    NUMERIC_COLUMNS,
    ONNX_DTYPES,
    OPSET,
    OnnxGraph,
    first_line,
    normalize_opsets,
)
from mlopsfile.errors import EdgeConversionError

INPUT_NAME = "input"
OUTPUT_NAME = "output"


def from_sklearn(local_dir: Path, mlmodel: Any, model_uri: str) -> OnnxGraph:
    """skl2onnx with one float32 input tensor of the signature's columns.

    float32 is the input type every skl2onnx converter accepts; scikit-learn computes in
    float64, so numbers differ in the last float32 digits and labels only for rows on a
    decision boundary, which is what the parity check measures.
    """
    import mlflow.sklearn
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline

    schema = mlmodel.signature.inputs
    input_section, width = input_for(schema, model_uri, "float32")
    shape = input_section.get("shape", [-1, width])
    if len(shape) != 2 or shape[1] < 1:
        raise EdgeConversionError(f"{model_uri}: a scikit-learn model needs rows of a fixed width; the signature's shape is {shape}")
    model = mlflow.sklearn.load_model(str(local_dir))
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    label = is_classifier(model) or getattr(final, "_estimator_type", None) in ("clusterer", "outlier_detector")
    # Probabilities as a plain tensor: a ZipMap output would be a sequence of maps.
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto = convert_sklearn(
                model,
                name=type(model).__name__,  # without a name, skl2onnx names the graph with a random uuid
                initial_types=[(INPUT_NAME, FloatTensorType([None, width]))],
                target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
                options=options,
            )
    except Exception as exc:
        raise EdgeConversionError(f"{model_uri}: skl2onnx cannot convert {type(model).__name__}: {first_line(exc)}") from exc
    normalize_opsets(proto)
    output = proto.graph.output[0].name  # "label" for classifiers, "variable" for regressors
    return OnnxGraph(
        model=proto.SerializeToString(),
        input=input_section,
        output={"kind": "label" if label else "value", "onnx_name": output, "squeeze": True},
    )


def from_pytorch(local_dir: Path, mlmodel: Any, model_uri: str) -> OnnxGraph:
    """torch.onnx.export of the logged module, traced on a zero input of the signature's shape."""
    import mlflow.pytorch
    import numpy as np
    import torch

    schema = mlmodel.signature.inputs
    if schema.is_tensor_spec():
        input_section, _ = input_for(schema, model_uri, None)
        shape = input_section["shape"]
    else:
        # MLflow's pytorch pyfunc feeds a frame as one float32 array of its values.
        input_section, width = input_for(schema, model_uri, "float32")
        shape = [-1, width]
    try:
        module = mlflow.pytorch.load_model(str(local_dir))
    except Exception as exc:
        raise EdgeConversionError(f"{model_uri}: cannot load the pytorch model: {first_line(exc)}") from exc
    if not isinstance(module, torch.nn.Module):
        raise EdgeConversionError(f"{model_uri}: expected a torch.nn.Module, got {type(module).__name__}")
    try:
        module.eval()
    except NotImplementedError:
        # A torch.export module (MLflow's default 'pt2' format) keeps the mode it was exported
        # in and refuses train()/eval(), which the TorchScript exporter calls.
        module = fixed_mode(module)
    dummy = torch.from_numpy(np.zeros([1 if size == -1 else size for size in shape], dtype=input_section["dtype"]))
    with torch.no_grad():
        try:
            sample = module(dummy)
        except Exception as exc:
            raise EdgeConversionError(f"{model_uri}: the module fails on an input of shape {shape}: {first_line(exc)}") from exc
    if not isinstance(sample, torch.Tensor):
        raise EdgeConversionError(f"{model_uri}: the module returns {type(sample).__name__}; the edge target needs one tensor")
    label = not (sample.dtype.is_floating_point or sample.dtype.is_complex)
    dynamic = {INPUT_NAME: {axis: f"dim{axis}" for axis, size in enumerate(shape) if size == -1}}
    if shape and shape[0] == -1:
        dynamic[OUTPUT_NAME] = {0: "dim0"}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but needs no onnxscript and is deterministic.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (dummy,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:
        raise EdgeConversionError(f"{model_uri}: torch.onnx.export failed: {first_line(exc)}") from exc
    return OnnxGraph(
        model=buffer.getvalue(),
        input=input_section,
        # MLflow returns the module's output tensor unchanged: no axis is dropped.
        output={"kind": "label" if label else "value", "onnx_name": OUTPUT_NAME, "squeeze": False},
    )


def from_onnx(local_dir: Path, mlmodel: Any, model_uri: str) -> OnnxGraph:
    """The logged ONNX model unchanged; names and input type come from the model itself."""
    import onnx

    path = Path(local_dir) / mlmodel.flavors["onnx"].get("data", "model.onnx")
    proto = onnx.load(str(path), load_external_data=False)
    initializers = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(value.name for value in inputs)
        raise EdgeConversionError(f"{model_uri}: the ONNX model has {len(inputs)} inputs ({names}); the edge target feeds one tensor")
    elem_type = inputs[0].type.tensor_type.elem_type
    if elem_type not in ONNX_DTYPES:
        raise EdgeConversionError(f"{model_uri}: ONNX input {inputs[0].name!r} has element type {elem_type}; supported: {', '.join(sorted(CONTRACT_DTYPES))}")
    signature = mlmodel.signature
    input_section, _ = input_for(signature.inputs, model_uri, ONNX_DTYPES[elem_type])
    input_section["onnx_name"] = inputs[0].name
    outputs = [value.name for value in proto.graph.output]
    spec_names = [getattr(spec, "name", None) for spec in (signature.outputs.inputs if signature.outputs else [])]
    chosen = next((name for name in spec_names if name in outputs), outputs[0])
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in proto.graph.initializer):
        # One self-contained file is what the edge server loads.
        data = onnx.load(str(path)).SerializeToString()
    else:
        data = path.read_bytes()
    return OnnxGraph(
        model=data,
        input=input_section,
        output={
            "kind": onnx_output_kind(signature, chosen, proto),
            "onnx_name": chosen,
            # MLflow flattens every output of a frame input; an array input gets the tensor as is.
            "squeeze": input_section["kind"] == "columns",
        },
    )


def fixed_mode(inner: Any) -> Any:
    """``inner`` behind a module whose train()/eval() leave it alone."""
    import torch

    class FixedMode(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def train(self, mode: bool = True) -> FixedMode:
            return self

        def forward(self, *args: Any) -> Any:
            return self.inner(*args)

    return FixedMode()


def input_for(schema: Any, model_uri: str, dtype: str | None) -> tuple[dict[str, Any], int]:
    """The manifest's input section for a signature and the number of values per row.

    ``dtype`` is the tensor type the ONNX model takes; ``None`` keeps a tensor signature's own.
    """
    import numpy as np

    specs = list(schema.inputs)
    if schema.is_tensor_spec():
        if len(specs) != 1:
            raise EdgeConversionError(f"{model_uri}: the signature has {len(specs)} input tensors; the edge target feeds one")
        spec = specs[0]
        own = np.dtype(spec.type).name
        chosen = dtype or own
        if chosen not in CONTRACT_DTYPES:
            raise EdgeConversionError(f"{model_uri}: input tensor dtype {own} is not one of {', '.join(sorted(CONTRACT_DTYPES))}")
        shape = [int(size) for size in spec.shape]
        width = int(np.prod([size for size in shape[1:] if size > 0])) if len(shape) > 1 else 1
        return {"kind": "tensor", "onnx_name": INPUT_NAME, "dtype": chosen, "shape": shape}, width
    if not schema.has_input_names():
        raise EdgeConversionError(f"{model_uri}: the signature's columns have no names; the edge target needs named columns")
    columns = []
    for spec in specs:
        kind = spec.type.name if hasattr(spec.type, "name") else str(spec.type)
        if kind not in NUMERIC_COLUMNS:
            raise EdgeConversionError(
                f"{model_uri}: column {spec.name!r} is {kind}; the edge target takes numeric columns ({', '.join(NUMERIC_COLUMNS)})"
            )
        columns.append({"name": spec.name, "type": kind})
    section = {"kind": "columns", "onnx_name": INPUT_NAME, "dtype": dtype or "float32", "columns": columns}
    return section, len(columns)


def onnx_output_kind(signature: Any, output: str, proto: Any) -> str:
    """label when the predictions are integers, booleans or strings; value for numbers."""
    import numpy as np

    specs = list(signature.outputs.inputs) if signature.outputs else []
    spec = next((s for s in specs if getattr(s, "name", None) == output), specs[0] if len(specs) == 1 else None)
    if spec is not None:
        if signature.outputs.is_tensor_spec():
            return "value" if np.dtype(spec.type).kind in "fc" else "label"
        return "label" if getattr(spec.type, "name", "") in LABEL_COLUMN_TYPES else "value"
    elem_type = next(value.type.tensor_type.elem_type for value in proto.graph.output if value.name == output)
    return "value" if elem_type in (1, 10, 11, 16) else "label"  # float, float16, double, bfloat16
