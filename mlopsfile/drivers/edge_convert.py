"""MLflow model → edge model directory (``model.onnx`` + ``manifest.json``).

The directory is all the edge server reads: the manifest tells it how a scoring request
becomes the one ONNX input tensor and which ONNX output holds the predictions (see the
edge contract in runtime/edge/). Conversion must be reproducible: the same model and
options give the same bytes, because the image and the bundle are named by them.

Heavy libraries (mlflow, onnx, skl2onnx, torch, onnxruntime) are imported inside the
functions that need them, so importing this module costs nothing at plan time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlopsfile.errors import EdgeConversionError

EDGE_FORMAT = "mlopsfile-edge/v1"
OPSET = 17
ML_OPSET = 3
SUPPORTED = "the edge target converts the sklearn, pytorch and onnx flavors"
QUANTIZE_MODES = ("none", "dynamic")

# MLflow column types the one numeric input tensor can carry.
NUMERIC_COLUMNS = ("double", "float", "long", "integer", "boolean")
# ONNX TensorProto element types of the contract's dtypes.
ONNX_DTYPES = {1: "float32", 11: "float64", 7: "int64", 6: "int32", 9: "bool"}
CONTRACT_DTYPES = frozenset(ONNX_DTYPES.values())
LABEL_COLUMN_TYPES = ("long", "integer", "boolean", "string")


@dataclass(frozen=True)
class ModelMeta:
    """The registry model a conversion comes from, as recorded in the manifest."""

    name: str
    version: str
    uri: str
    digest: str


@dataclass(frozen=True)
class ConvertedModel:
    """An edge model directory as written, with what the plan and the build need to know."""

    edge_dir: Path
    flavor: str
    onnx_sha256: str
    onnx_bytes: int
    original_onnx_bytes: int | None
    quantized: bool
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.edge_dir / "model.onnx"


@dataclass(frozen=True)
class OnnxGraph:
    """What a flavor's converter produces: the serialized model and its manifest sections."""

    model: bytes
    input: dict[str, Any]
    output: dict[str, Any]


def convert(model_uri: str, local_dir: Path, out_dir: Path, meta: ModelMeta, quantize: str = "none") -> ConvertedModel:
    """Convert the MLflow model in ``local_dir`` and write the edge directory ``out_dir``."""
    if quantize not in QUANTIZE_MODES:
        raise EdgeConversionError(f"{model_uri}: unknown quantize mode {quantize!r} (expected one of {', '.join(QUANTIZE_MODES)})")
    mlmodel = load_mlmodel(local_dir, model_uri)
    flavor = edge_flavor(mlmodel, model_uri)
    if mlmodel.signature is None or mlmodel.signature.inputs is None:
        raise EdgeConversionError(
            f"{model_uri} has no input signature: log the model with a signature so its input can be typed for ONNX"
        )
    if flavor == "sklearn":
        from mlopsfile.drivers.edge_flavors import from_sklearn as converter
    elif flavor == "pytorch":
        from mlopsfile.drivers.edge_flavors import from_pytorch as converter
    else:
        from mlopsfile.drivers.edge_flavors import from_onnx as converter
    graph = converter(local_dir, mlmodel, model_uri)
    data = graph.model
    original_size: int | None = None
    if quantize == "dynamic":
        original_size = len(data)
        data = quantize_dynamic(data, model_uri)
    digest = hashlib.sha256(data).hexdigest()
    manifest = {
        "format": EDGE_FORMAT,
        "model": {"name": meta.name, "version": meta.version, "uri": meta.uri, "digest": meta.digest},
        "onnx": {"sha256": digest, "opset": onnx_opset(data), "quantized": quantize == "dynamic", "flavor": flavor},
        "input": graph.input,
        "output": graph.output,
    }
    write_edge_dir(out_dir, data, manifest)
    return ConvertedModel(
        edge_dir=out_dir,
        flavor=flavor,
        onnx_sha256=digest,
        onnx_bytes=len(data),
        original_onnx_bytes=original_size,
        quantized=quantize == "dynamic",
        manifest=manifest,
    )


def load_mlmodel(local_dir: Path, model_uri: str) -> Any:
    """The MLmodel file of a downloaded model (flavors, signature, input example)."""
    from mlflow.models import Model

    if not (Path(local_dir) / "MLmodel").is_file():
        raise EdgeConversionError(f"{model_uri}: no MLmodel file in {local_dir}; is this an MLflow model?")
    return Model.load(str(local_dir))


def edge_flavor(mlmodel: Any, model_uri: str) -> str:
    """The native flavor the converter will read, or why there is none."""
    for name in ("onnx", "sklearn", "pytorch"):
        if name in mlmodel.flavors:
            return name
    native = sorted(set(mlmodel.flavors) - {"python_function"})
    if native:
        described = "flavor " + ", ".join(native)
    else:
        pyfunc = mlmodel.flavors.get("python_function", {})
        # A python_model is arbitrary Python code: there is no graph to convert.
        is_python_model = "python_model" in pyfunc or pyfunc.get("loader_module") == "mlflow.pyfunc.model"
        kind = "python_model" if is_python_model else pyfunc.get("loader_module", "unknown loader")
        described = f"python_function flavor ({kind})"
    raise EdgeConversionError(f"{model_uri}: cannot convert a model of {described} to ONNX; {SUPPORTED}")


def quantize_dynamic(model: bytes, model_uri: str) -> bytes:
    """int8 weights with onnxruntime's dynamic quantization (activations quantized at run time)."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    proto = onnx.load_from_string(model)
    # The quantizer needs exactly one default-domain opset, even when it finds nothing to quantize.
    normalize_opsets(proto)
    with tempfile.TemporaryDirectory(prefix="mlopsfile-quantize-") as tmp:
        source, target = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        source.write_bytes(proto.SerializeToString())
        advice = AdviceFilter()
        root = logging.getLogger()
        root.addFilter(advice)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ort_quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        except Exception as exc:
            raise EdgeConversionError(f"{model_uri}: dynamic quantization failed: {first_line(exc)}") from exc
        finally:
            root.removeFilter(advice)
        return target.read_bytes()


class AdviceFilter(logging.Filter):
    """Drops the quantizer's advice to run its optional pre-processing, logged on every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def onnx_opset(model: bytes) -> int:
    """The default-domain opset the model is written against."""
    import onnx

    proto = onnx.load_from_string(model)
    return next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), OPSET)


def normalize_opsets(proto: Any) -> None:
    """One opset entry per domain, including the default one.

    skl2onnx may repeat the default domain, and a model of ai.onnx.ml operators only
    (linear models, trees) may lack it; onnxruntime's tools refuse both.
    """
    import onnx

    versions: dict[str, int] = {}
    for entry in proto.opset_import:
        domain = "" if entry.domain == "ai.onnx" else entry.domain
        versions[domain] = max(versions.get(domain, 0), entry.version)
    versions.setdefault("", OPSET)
    del proto.opset_import[:]
    proto.opset_import.extend(onnx.helper.make_opsetid(domain, version) for domain, version in sorted(versions.items()))


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest's one byte form: sorted keys, indent 2, trailing newline."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_edge_dir(out_dir: Path, model: bytes, manifest: dict[str, Any]) -> None:
    """Write both files, each replaced whole, so a failed run never leaves a torn file behind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in (("model.onnx", model), ("manifest.json", manifest_bytes(manifest))):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, out_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]

