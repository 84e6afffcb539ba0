"""Parity: does the edge model predict what the original MLflow model predicts?

Both sides get the same scoring payload: the original through MLflow's own request
parsing and pyfunc ``predict`` (what the online target serves), the edge model through
``runtime.edge.predictor.EdgeModel`` (exactly what the edge container serves). Labels
must be equal; numbers must satisfy ``abs(onnx - original) <= atol + rtol * abs(original)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlopsfile.errors import EdgeConversionError
from runtime.scoring import PAYLOAD_KEYS

WORST_ROWS = 5
STRING_CHOICES = ("a", "b", "c")


@dataclass(frozen=True)
class ParityRow:
    """One row where the two models disagree."""

    index: int
    input: Any
    original: Any
    onnx: Any
    abs_diff: float | None = None


@dataclass(frozen=True)
class ParityReport:
    """What a parity check found; ``summary()`` says it in one line."""

    kind: str
    rows: int
    label_mismatches: int
    out_of_tolerance: int
    max_abs_diff: float | None
    atol: float
    rtol: float
    worst_rows: tuple[ParityRow, ...]
    passed: bool
    onnx_bytes: int
    original_onnx_bytes: int | None = None
    quantized: bool = False
    problem: str | None = None

    def summary(self) -> str:
        size = f"model.onnx {human_bytes(self.onnx_bytes)}"
        if self.quantized:
            before = "" if self.original_onnx_bytes is None else f", {human_bytes(self.original_onnx_bytes)} before"
            size += f" (int8{before})"
        verdict = "parity passed" if self.passed else "parity FAILED"
        if self.problem:
            return f"{verdict}: {self.problem}; {size}"
        first = self.worst_rows[0] if self.worst_rows else None
        if self.kind == "label":
            if first is None:
                return f"{verdict}: {self.rows}/{self.rows} labels equal; {size}"
            found = f"{self.label_mismatches} of {self.rows} labels differ"
            return f"{verdict}: {found} (row {first.index}: original {first.original!r}, onnx {first.onnx!r}); {size}"
        tolerance = f"atol={self.atol:g} rtol={self.rtol:g}"
        biggest = "" if self.max_abs_diff is None else f", max |diff| {self.max_abs_diff:.3g}"
        if first is None:
            return f"{verdict}: {self.rows} rows within {tolerance}{biggest}; {size}"
        return f"{verdict}: {self.out_of_tolerance} of {self.rows} rows beyond {tolerance}{biggest} (worst: row {first.index}); {size}"


def sample_payload(local_dir: Path, rows: int, reference: Path | None, seed: int) -> dict[str, Any]:
    """The parity sample as a scoring payload: the reference file, else the input example, else generated rows."""
    mlmodel = _mlmodel(local_dir)
    schema = mlmodel.signature.inputs if mlmodel.signature is not None else None
    if reference is not None:
        return reference_payload(Path(reference), schema)
    example = mlmodel.load_input_example(str(local_dir)) if mlmodel.saved_input_example_info else None
    if example is not None:
        return example_payload(example)
    if schema is None:
        raise EdgeConversionError(
            f"{local_dir}: the model has no signature and no input example; name a parity reference file"
        )
    return generated_payload(schema, rows, seed)


def sample_origin(local_dir: Path, reference: Path | None) -> str:
    """Where ``sample_payload`` takes its rows from, in words."""
    if reference is not None:
        return f"reference {Path(reference).name}"
    return "input example" if _mlmodel(local_dir).saved_input_example_info else "generated"


def reference_payload(path: Path, schema: Any) -> dict[str, Any]:
    """A reference file as a payload: a JSON scoring request as is, a table restricted to the signature's columns."""
    import pandas as pd

    from runtime.scoring import BadRequest, decode_request

    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            decoded = decode_request(path.read_bytes())
            key = next(key for key in PAYLOAD_KEYS if key in decoded)
            return {key: decoded[key]}
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise EdgeConversionError(f"parity reference {path}: expected a .csv, .parquet or .json file")
    except BadRequest as exc:
        raise EdgeConversionError(f"parity reference {path} is not a scoring request: {exc}") from exc
    except OSError as exc:
        raise EdgeConversionError(f"cannot read parity reference {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise EdgeConversionError(f"cannot read parity reference {path}: {reason}") from exc
    if schema is not None and not schema.is_tensor_spec() and schema.has_input_names():
        names = schema.input_names()
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise EdgeConversionError(f"parity reference {path} lacks the model's column(s) {', '.join(map(repr, missing))}")
        # Extra columns (a label, an id) are dropped: the edge server refuses unknown columns.
        return frame_payload(frame[names])
    return {"inputs": frame.to_numpy().tolist()}


def example_payload(example: Any) -> dict[str, Any]:
    """An MLflow input example (frame, array, dict of arrays or list) as a payload."""
    import numpy as np
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        return frame_payload(example)
    if isinstance(example, np.ndarray):
        return {"inputs": example.tolist()}
    if isinstance(example, dict):
        return {"inputs": {key: np.asarray(value).tolist() for key, value in example.items()}}
    return {"inputs": json.loads(json.dumps(example, default=str))}


def frame_payload(frame: Any) -> dict[str, Any]:
    """A frame as ``dataframe_split`` with plain JSON values."""
    split = frame.to_dict(orient="split", index=False)
    return {"dataframe_split": {"columns": [str(name) for name in split["columns"]], "data": split["data"]}}


def generated_payload(schema: Any, rows: int, seed: int) -> dict[str, Any]:
    """Seeded rows of plausible values: standard normal floats, integers 0..9, tensors of the signature's shape."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if schema.is_tensor_spec():
        specs = list(schema.inputs)
        tensors = {spec.name or str(i): _tensor(rng, spec, rows) for i, spec in enumerate(specs)}
        if len(tensors) == 1:
            return {"inputs": next(iter(tensors.values()))}
        return {"inputs": tensors}
    names, columns = [], []
    for spec in schema.inputs:
        kind = getattr(spec.type, "name", str(spec.type))
        names.append(spec.name)
        columns.append(_column(rng, kind, spec.name, rows))
    return {"dataframe_split": {"columns": names, "data": [list(row) for row in zip(*columns, strict=True)]}}


def _column(rng: Any, kind: str, name: str, rows: int) -> list[Any]:
    import numpy as np

    if kind == "double":
        return rng.standard_normal(rows).tolist()
    if kind == "float":
        return rng.standard_normal(rows).astype(np.float32).tolist()
    if kind in ("long", "integer"):
        return rng.integers(0, 10, rows).tolist()
    if kind == "boolean":
        return rng.integers(0, 2, rows).astype(bool).tolist()
    if kind == "string":
        return [STRING_CHOICES[i] for i in rng.integers(0, len(STRING_CHOICES), rows)]
    raise EdgeConversionError(f"cannot generate values for column {name!r} of type {kind}; name a parity reference file")


def _tensor(rng: Any, spec: Any, rows: int) -> list[Any]:
    import numpy as np

    dtype = np.dtype(spec.type)
    # The first -1 is the batch; any other free axis gets one entry.
    shape = [rows if i == 0 and size == -1 else (1 if size == -1 else size) for i, size in enumerate(spec.shape)]
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype).tolist()
    if dtype.kind in "iu":
        return rng.integers(0, 10, shape).astype(dtype).tolist()
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool).tolist()
    raise EdgeConversionError(f"cannot generate a tensor of {dtype}; name a parity reference file")


def check_parity(
    local_dir: Path,
    edge_dir: Path,
    payload: dict[str, Any],
    atol: float,
    rtol: float,
    *,
    original_onnx_bytes: int | None = None,
) -> ParityReport:
    """Score ``payload`` with both models and compare, row by row."""
    import mlflow.pyfunc

    from runtime.edge.predictor import EdgeModel, ModelError
    from runtime.scoring import BadRequest, parse_decoded

    try:
        edge = EdgeModel(Path(edge_dir))
    except ModelError as exc:
        raise EdgeConversionError(f"the edge model in {edge_dir} does not load: {exc}") from exc
    manifest = edge.manifest
    original_model = mlflow.pyfunc.load_model(str(local_dir))
    try:
        parsed = parse_decoded(payload, original_model.metadata.get_input_schema())
        original = original_model.predict(parsed.data)
    except BadRequest as exc:
        raise EdgeConversionError(f"the original model refuses the parity sample: {exc}") from exc
    try:
        predicted = edge.predict(payload)
    except BadRequest as exc:
        raise EdgeConversionError(f"the edge model refuses the parity sample: {exc}") from exc
    return compare(
        payload,
        original,
        predicted,
        kind=manifest["output"]["kind"],
        output_name=manifest["output"]["onnx_name"],
        atol=atol,
        rtol=rtol,
        onnx_bytes=(Path(edge_dir) / "model.onnx").stat().st_size,
        original_onnx_bytes=original_onnx_bytes,
        quantized=bool(manifest["onnx"].get("quantized", False)),
    )


def compare(
    payload: dict[str, Any],
    original: Any,
    predicted: list[Any],
    *,
    kind: str,
    output_name: str,
    atol: float,
    rtol: float,
    onnx_bytes: int,
    original_onnx_bytes: int | None = None,
    quantized: bool = False,
) -> ParityReport:
    """The report for two sets of predictions of the same payload."""
    import numpy as np

    report = {
        "kind": kind, "atol": atol, "rtol": rtol, "onnx_bytes": onnx_bytes,
        "original_onnx_bytes": original_onnx_bytes, "quantized": quantized,
    }
    rows = len(predicted)
    expected = np.asarray(_prediction_values(original, output_name), dtype=object if kind == "label" else None)
    actual = np.asarray(predicted, dtype=object if kind == "label" else None)
    if rows == 0 or expected.size != actual.size or expected.size % rows:
        problem = f"the original gives {expected.size} values, the edge model {actual.size} for {rows} rows"
        return ParityReport(rows=rows, label_mismatches=0, out_of_tolerance=0, max_abs_diff=None, worst_rows=(),
                            passed=False, problem=problem, **report)
    expected, actual = expected.reshape(rows, -1), actual.reshape(rows, -1)
    if kind == "label":
        left, right = expected.tolist(), actual.tolist()
        bad = [i for i in range(rows) if left[i] != right[i]]
        worst = tuple(ParityRow(i, _input_row(payload, i), _unwrap(left[i]), _unwrap(right[i])) for i in bad[:WORST_ROWS])
        return ParityReport(rows=rows, label_mismatches=len(bad), out_of_tolerance=0, max_abs_diff=None,
                            worst_rows=worst, passed=not bad, **report)
    try:
        b, a = expected.astype(np.float64), actual.astype(np.float64)
    except (TypeError, ValueError):
        problem = "the predictions are not numbers on both sides"
        return ParityReport(rows=rows, label_mismatches=0, out_of_tolerance=0, max_abs_diff=None, worst_rows=(),
                            passed=False, problem=problem, **report)
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        diff = np.where(both_nan, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
    beyond = diff > atol + rtol * np.abs(np.nan_to_num(b))
    row_diff = diff.max(axis=1)
    failing = np.flatnonzero(beyond.any(axis=1))
    order = failing[np.argsort(-row_diff[failing], kind="stable")][:WORST_ROWS]
    worst = tuple(
        ParityRow(int(i), _input_row(payload, int(i)), _unwrap(b[i].tolist()), _unwrap(a[i].tolist()), float(row_diff[i]))
        for i in order
    )
    largest = float(diff.max()) if diff.size else 0.0
    return ParityReport(rows=rows, label_mismatches=0, out_of_tolerance=len(failing),
                        max_abs_diff=largest if math.isfinite(largest) else None,
                        worst_rows=worst, passed=len(failing) == 0, **report)


def _prediction_values(original: Any, output_name: str) -> Any:
    """The original's predictions as an array: the ONNX-named output when MLflow returns several."""
    import numpy as np
    import pandas as pd

    if isinstance(original, dict):
        original = original.get(output_name, next(iter(original.values())) if len(original) == 1 else None)
        if original is None:
            raise EdgeConversionError(f"the original model returns no output named {output_name!r}")
    if isinstance(original, pd.DataFrame):
        if output_name in original.columns:
            original = original[output_name]
        elif original.shape[1] == 1:
            original = original.iloc[:, 0]
        else:
            original = original.to_numpy()
    if isinstance(original, pd.Series):
        original = original.to_numpy()
    return np.asarray(original)


def _input_row(payload: dict[str, Any], index: int) -> Any:
    """Row ``index`` of the payload, as a user would recognise it (column -> value, or the tensor slice)."""
    key = next((key for key in PAYLOAD_KEYS if key in payload), None)
    value = payload.get(key) if key else None
    try:
        if key == "dataframe_split":
            return dict(zip(value["columns"], value["data"][index], strict=False))
        if isinstance(value, dict):
            return {name: column[index] for name, column in value.items()}
        return value[index]
    except (KeyError, IndexError, TypeError):
        return None


def _unwrap(row: list[Any]) -> Any:
    return row[0] if len(row) == 1 else row


def _mlmodel(local_dir: Path) -> Any:
    from mlflow.models import Model

    if not (Path(local_dir) / "MLmodel").is_file():
        raise EdgeConversionError(f"no MLmodel file in {local_dir}; is this an MLflow model?")
    return Model.load(str(local_dir))


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
