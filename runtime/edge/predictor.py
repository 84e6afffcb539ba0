"""An edge model directory (``model.onnx`` + ``manifest.json``): MLflow scoring requests in, predictions out.

Only numpy, onnxruntime and the pure-Python request helpers of ``runtime.scoring`` are
imported, so this runs in an edge container without MLflow or pandas. Answers have the
shape MLflow's scoring server gives for the original model: one entry per row, labels
with their JSON type, numbers as floats.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from runtime.scoring import PAYLOAD_KEYS, BadRequest, decode_request

FORMAT = "mlopsfile-edge/v1"
THREADS_ENV = "MLOPSFILE_EDGE_THREADS"
# The element type onnxruntime reports for each manifest dtype.
ORT_TYPES = {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "bool": "tensor(bool)",
}
MAX_NAMES_IN_MESSAGE = 10


class ModelError(Exception):
    """The model directory cannot be served: a missing file, a bad manifest or a digest mismatch."""


class EdgeModel:
    """One edge model directory, loaded into an onnxruntime session and checked against its manifest."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        model_dir = Path(model_dir)
        self._manifest = read_manifest(model_dir / "manifest.json")
        onnx_bytes = _read_bytes(model_dir / "model.onnx")
        check_sha256(onnx_bytes, self._manifest["onnx"]["sha256"])
        self.threads = threads_from_env() if threads is None else threads
        self._session = open_session(onnx_bytes, self.threads)
        spec_in, spec_out = self._manifest["input"], self._manifest["output"]
        check_session(self._session, spec_in, spec_out)
        self._input_name: str = spec_in["onnx_name"]
        self._output_names: list[str] = [spec_out["onnx_name"]]
        self._squeeze = bool(spec_out.get("squeeze", False))
        dtype = np.dtype(spec_in["dtype"])
        self._reader: ColumnsInput | TensorInput = (
            ColumnsInput([column["name"] for column in spec_in["columns"]], dtype)
            if spec_in["kind"] == "columns" else TensorInput(spec_in.get("shape"), dtype)
        )
        self._warm_up()

    @property
    def manifest(self) -> dict[str, Any]:
        return copy.deepcopy(self._manifest)

    @property
    def name(self) -> str:
        return str(self._manifest["model"]["name"])

    @property
    def version(self) -> str:
        return str(self._manifest["model"]["version"])

    def metadata(self) -> dict[str, Any]:
        model, onnx = self._manifest["model"], self._manifest["onnx"]
        return {
            "format": self._manifest["format"],
            "model_name": model["name"],
            "model_version": model["version"],
            "model_uri": model.get("uri"),
            "model_digest": model.get("digest"),
            "onnx_sha256": onnx["sha256"],
            "onnx_opset": onnx.get("opset"),
            "flavor": onnx.get("flavor"),
            "quantized": bool(onnx.get("quantized", False)),
            "input": copy.deepcopy(self._manifest["input"]),
            "output": copy.deepcopy(self._manifest["output"]),
        }

    def predict(self, payload: dict[str, Any]) -> list[Any]:
        """Predictions for a decoded scoring request (one payload key, as MLflow's server takes)."""
        if not isinstance(payload, dict):
            raise BadRequest(f"request must be a JSON object with one of {', '.join(PAYLOAD_KEYS)}")
        keys = [key for key in PAYLOAD_KEYS if key in payload]
        if len(keys) != 1:
            raise BadRequest(f"request must have exactly one of {', '.join(PAYLOAD_KEYS)}; got keys {sorted(payload)}")
        return self._predictions(keys[0], payload[keys[0]])

    def predict_body(self, body: bytes) -> bytes:
        """The JSON answer ``{"predictions": [...]}`` to a scoring request body."""
        decoded = decode_request(body)
        key = next(key for key in PAYLOAD_KEYS if key in decoded)
        return json.dumps({"predictions": self._predictions(key, decoded[key])}).encode()

    def _predictions(self, key: str, value: Any) -> list[Any]:
        array = self._reader.read(key, value)
        if array.shape[0] == 0:
            return []
        return self._run(array)

    def _run(self, array: np.ndarray) -> list[Any]:
        try:
            output = self._session.run(self._output_names, {self._input_name: np.ascontiguousarray(array)})[0]
        except InvalidArgument as exc:
            # The manifest let the request through but the graph's own dimensions did not.
            raise BadRequest(f"input does not fit the model: {first_line(str(exc))}", 422) from exc
        return to_list(output, self._squeeze)

    def _warm_up(self) -> None:
        """Score one row of zeros so onnxruntime sizes its buffers before the first request does."""
        # A model that rejects zeros may still serve real requests: warming up is only a head start.
        with contextlib.suppress(Exception):
            self._run(self._reader.zeros())


class ColumnsInput:
    """Reads requests for a model with named columns into a (rows, columns) array in manifest order."""

    def __init__(self, columns: list[str], dtype: np.dtype) -> None:
        self.columns = columns
        self.dtype = dtype
        self._known = frozenset(columns)
        # One C-level call per record; a single-column getter returns the bare value.
        self._row: Callable[[dict[str, Any]], Any] = itemgetter(*columns)

    def zeros(self) -> np.ndarray:
        return np.zeros((1, len(self.columns)), dtype=self.dtype)

    def read(self, key: str, value: Any) -> np.ndarray:
        if key == "dataframe_split":
            return self._split(value)
        if key == "dataframe_records":
            return self._records(key, value)
        if isinstance(value, dict):
            return self._column_lists(key, value)
        if isinstance(value, list):
            return self._records(key, value)
        raise BadRequest(f"'{key}' for a model with named input columns must be a list of records "
                         "or an object of column -> values")

    def _split(self, split: Any) -> np.ndarray:
        if not isinstance(split, dict):
            raise BadRequest("'dataframe_split' must be an object with 'columns' and 'data'")
        unexpected = set(split) - {"columns", "data", "index"}
        if unexpected:
            raise BadRequest(f"unexpected keys in dataframe_split: {', '.join(sorted(map(str, unexpected)))}")
        names, data = split.get("columns"), split.get("data")
        if isinstance(names, tuple):
            names = list(names)
        if not isinstance(names, list):
            raise BadRequest(f"'dataframe_split' needs 'columns', the input column names: {_names(self.columns)}")
        if not isinstance(data, (list, tuple, np.ndarray)):
            raise BadRequest("'dataframe_split' needs 'data', a list of rows")
        order = None if names == self.columns else self._order(names)
        if len(data) == 0:
            return self._empty()
        array = cast(data, self.dtype, "dataframe_split data")
        if array.ndim != 2 or array.shape[1] != len(names):
            raise BadRequest(f"dataframe_split data must be rows of {len(names)} values (one per column); "
                             f"got an array of shape {array.shape}", 422)
        return array if order is None else array[:, order]

    def _records(self, key: str, records: Any) -> np.ndarray:
        if not isinstance(records, list):
            raise BadRequest(f"'{key}' must be a list of records (objects of column -> value)")
        if not records:
            return self._empty()
        try:
            rows = list(map(self._row, records))
        except KeyError:
            # map() stopped at the first record without every column; all before it are complete.
            short = next(r for r in records if not (isinstance(r, dict) and self._known <= r.keys()))
            raise BadRequest(f"missing input column(s): {_names(c for c in self.columns if c not in short)}") \
                from None
        except TypeError:
            raise BadRequest(f"'{key}' must be a list of records (objects of column -> value)") from None
        # Every record holds all columns by now, so a larger total means some hold more.
        if sum(map(len, records)) != len(records) * len(self.columns):
            extra = next(record for record in records if len(record) != len(self.columns))
            raise BadRequest(f"unknown input column(s): {_names(k for k in extra if k not in self._known)}; "
                             f"the model takes {_names(self.columns)}")
        array = cast(rows, self.dtype, key)
        if array.ndim == 1 and len(self.columns) == 1:
            array = array.reshape(-1, 1)
        if array.ndim != 2:
            raise BadRequest(f"'{key}' values must be scalars; got an array of shape {array.shape}", 422)
        return array

    def _column_lists(self, key: str, columns: dict[str, Any]) -> np.ndarray:
        self._order(list(columns))
        array = cast([columns[name] for name in self.columns], self.dtype, key)
        if array.ndim == 1:
            return array.reshape(1, -1)  # one scalar per column: a single row
        if array.ndim != 2:
            raise BadRequest(f"'{key}' must map each column to a list of scalars; got an array of shape "
                             f"{array.shape}", 422)
        return array.T

    def _order(self, names: list[Any]) -> list[int]:
        """Positions of the manifest's columns among ``names``; 400 unless they are exactly those columns."""
        if not all(isinstance(name, str) for name in names):
            raise BadRequest("column names must be strings")
        given = set(names)
        missing = [name for name in self.columns if name not in given]
        if missing:
            raise BadRequest(f"missing input column(s): {_names(missing)}")
        unknown = [name for name in names if name not in self._known]
        if unknown:
            raise BadRequest(f"unknown input column(s): {_names(unknown)}; the model takes {_names(self.columns)}")
        if len(names) != len(given):
            duplicated = sorted({name for name in names if names.count(name) > 1})
            raise BadRequest(f"duplicate input column(s): {_names(duplicated)}")
        position = {name: index for index, name in enumerate(names)}
        return [position[name] for name in self.columns]

    def _empty(self) -> np.ndarray:
        return np.empty((0, len(self.columns)), dtype=self.dtype)


class TensorInput:
    """Reads requests for a model with one unnamed tensor, checking the shape against the manifest."""

    def __init__(self, shape: list[int] | None, dtype: np.dtype) -> None:
        self.shape = None if shape is None else [int(size) for size in shape]
        self.dtype = dtype

    def zeros(self) -> np.ndarray:
        shape = self.shape or [1]
        return np.zeros([1 if size < 0 else size for size in shape], dtype=self.dtype)

    def read(self, key: str, value: Any) -> np.ndarray:
        if key == "dataframe_records":
            raise BadRequest("a model with a tensor input takes 'inputs', 'instances' or 'dataframe_split'")
        if key == "dataframe_split":
            if not isinstance(value, dict) or not isinstance(value.get("data"), (list, tuple, np.ndarray)):
                raise BadRequest("'dataframe_split' must be an object with 'data', a list of rows")
            value = value["data"]
        elif isinstance(value, dict):
            # MLflow's form for named tensors; a single-input model takes exactly one.
            if len(value) != 1:
                raise BadRequest(f"'{key}' names {len(value)} tensors; the model takes one")
            value = next(iter(value.values()))
        if isinstance(value, (list, tuple)) and not value:
            return np.empty((0,), dtype=self.dtype)
        array = cast(value, self.dtype, key)
        self._check_shape(array.shape)
        return array

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.shape is None:
            if len(shape) == 0:
                raise BadRequest("the input must be a list with one entry per row", 422)
            return
        fits = len(shape) == len(self.shape) and all(
            want < 0 or want == got for want, got in zip(self.shape, shape, strict=True))
        if not fits:
            wanted = "(" + ", ".join("-1" if size < 0 else str(size) for size in self.shape) + ")"
            raise BadRequest(f"input of shape {shape} does not match the model's shape {wanted} (-1 = any)", 422)


def cast(values: Any, dtype: np.dtype, what: str) -> np.ndarray:
    """``values`` as one array of ``dtype``; 422 when they are not numbers of that kind or are ragged."""
    try:
        if dtype.kind == "f":
            return np.asarray(values, dtype=dtype)
        return _cast_exact(np.asarray(values), dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"{what} does not cast to {dtype}: {first_line(str(exc))}", 422) from exc


def _cast_exact(raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # numpy would truncate 1.5 to 1 and read any non-empty string as True; MLflow refuses both.
    if dtype.kind == "b":
        if raw.dtype.kind != "b":
            raise ValueError(f"expected booleans, got {raw.dtype} values")
        return raw
    if raw.dtype.kind in "biu":
        return raw.astype(dtype)
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw) & (np.floor(raw) == raw)):
            raise ValueError("expected integers, got fractional or non-finite numbers")
        return raw.astype(dtype)
    if raw.dtype.kind == "U":
        return raw.astype(dtype)
    raise ValueError(f"expected integers, got {raw.dtype} values")


def to_list(output: Any, squeeze: bool) -> list[Any]:
    """An onnxruntime output as JSON-ready Python values (int/str labels, float numbers)."""
    if not isinstance(output, np.ndarray):
        return list(output)  # sequences (of maps) come back from onnxruntime as Python lists already
    if squeeze and output.ndim > 1 and output.shape[-1] == 1:
        output = output.reshape(output.shape[:-1])
    if output.ndim == 0:
        return [output.item()]
    return output.tolist()


# -- loading ------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, with every key the predictor relies on checked."""
    try:
        manifest = json.loads(_read_bytes(path))
    except ValueError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelError(f"{path}: format is {found!r}; this server reads {FORMAT!r}")
    for section in ("model", "onnx", "input", "output"):
        if not isinstance(manifest.get(section), dict):
            raise ModelError(f"{path}: missing the {section!r} section")
    _require(path, manifest, "model", "name", "version")
    _require(path, manifest, "onnx", "sha256")
    _require(path, manifest, "input", "kind", "onnx_name", "dtype")
    _require(path, manifest, "output", "kind", "onnx_name")
    spec_in, spec_out = manifest["input"], manifest["output"]
    if spec_in["dtype"] not in ORT_TYPES:
        raise ModelError(f"{path}: input dtype {spec_in['dtype']!r} is not one of {', '.join(ORT_TYPES)}")
    if spec_in["kind"] == "columns":
        columns = spec_in.get("columns")
        if not isinstance(columns, list) or not columns or \
                not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in columns):
            raise ModelError(f"{path}: input kind 'columns' needs a non-empty list of columns with names")
    elif spec_in["kind"] == "tensor":
        shape = spec_in.get("shape")
        if shape is not None and not (isinstance(shape, list) and all(isinstance(s, int) for s in shape)):
            raise ModelError(f"{path}: input shape must be a list of integers (-1 = any)")
    else:
        raise ModelError(f"{path}: input kind {spec_in['kind']!r} is not 'columns' or 'tensor'")
    if spec_out["kind"] not in ("label", "value"):
        raise ModelError(f"{path}: output kind {spec_out['kind']!r} is not 'label' or 'value'")
    return manifest


def check_sha256(data: bytes, expected: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    want = str(expected).lower().removeprefix("sha256:")
    if actual != want:
        raise ModelError(f"model.onnx has sha256 {actual} but the manifest says {want}; "
                         "refusing to serve a model that is not the one converted and checked")


def threads_from_env() -> int:
    """onnxruntime's intra-op threads: ``MLOPSFILE_EDGE_THREADS``, default 1 (0 lets onnxruntime pick)."""
    raw = os.environ.get(THREADS_ENV, "1").strip() or "1"
    try:
        threads = int(raw)
    except ValueError:
        threads = -1
    if threads < 0:
        raise ModelError(f"{THREADS_ENV}={raw!r} is not a whole number of threads (0 or more)")
    return threads


def open_session(onnx_bytes: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # One request's graph runs sequentially; concurrency comes from the server's threads.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # converter warnings would otherwise land in every container log
    try:
        return ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load model.onnx: {first_line(str(exc))}") from exc


def check_session(session: ort.InferenceSession, spec_in: dict[str, Any], spec_out: dict[str, Any]) -> None:
    """Refuse a manifest that names inputs, outputs or types the ONNX graph does not have."""
    inputs = {node.name: node for node in session.get_inputs()}
    if spec_in["onnx_name"] not in inputs:
        raise ModelError(f"model.onnx has no input {spec_in['onnx_name']!r}; it has {_names(inputs)}")
    if len(inputs) != 1:
        raise ModelError(f"model.onnx has {len(inputs)} inputs ({_names(inputs)}); the edge server feeds one")
    actual = inputs[spec_in["onnx_name"]].type
    if actual != ORT_TYPES[spec_in["dtype"]]:
        raise ModelError(f"model.onnx input {spec_in['onnx_name']!r} is {actual} but the manifest says "
                         f"{spec_in['dtype']}")
    outputs = [node.name for node in session.get_outputs()]
    if spec_out["onnx_name"] not in outputs:
        raise ModelError(f"model.onnx has no output {spec_out['onnx_name']!r}; it has {_names(outputs)}")


def first_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0][:500] if lines else "no details"


def _require(path: Path, manifest: dict[str, Any], section: str, *keys: str) -> None:
    missing = [key for key in keys if manifest[section].get(key) in (None, "")]
    if missing:
        raise ModelError(f"{path}: {section} is missing {', '.join(missing)}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _names(names: Iterable[Any]) -> str:
    listed = [repr(name) for name in names]
    if len(listed) > MAX_NAMES_IN_MESSAGE:
        listed = [*listed[:MAX_NAMES_IN_MESSAGE], f"and {len(listed) - MAX_NAMES_IN_MESSAGE} more"]
    return ", ".join(listed)

