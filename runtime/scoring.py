"""MLflow scoring payloads in, predictions out, with client mistakes told apart from faults."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any


class BadRequest(Exception):
    """The request does not match the scoring protocol or the model signature (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


PAYLOAD_KEYS = ("dataframe_split", "dataframe_records", "inputs", "instances")


@dataclass
class ParsedRequest:
    data: Any
    params: dict[str, Any] | None


FLOAT_TYPES = {"double": "float64", "float": "float32"}


class RequestParser:
    """Parses scoring requests for one model signature.

    When every input column is a float of one width (the common case for tabular
    models), a request naming exactly those columns is turned into a frame with one numpy
    call; MLflow's general, column-by-column parser costs several times more per request
    and is kept for everything else, including every request that would be rejected, so
    error messages stay MLflow's.
    """

    def __init__(self, input_schema: Any) -> None:
        self.input_schema = input_schema
        self.columns: list[str] | None = None
        self.dtype: str | None = None
        inputs = getattr(input_schema, "inputs", None)
        if input_schema is None or not inputs or input_schema.is_tensor_spec() or not input_schema.has_input_names():
            return
        dtypes = {FLOAT_TYPES.get(getattr(spec.type, "name", "")) for spec in inputs}
        if len(dtypes) == 1 and None not in dtypes and all(getattr(spec, "required", True) for spec in inputs):
            self.columns = [spec.name for spec in inputs]
            self.dtype = dtypes.pop()

    def parse(self, body: bytes) -> ParsedRequest:
        decoded = decode_request(body)
        if self.columns is not None and len(decoded) == 1:
            frame = self._fast_frame(decoded)
            if frame is not None:
                return ParsedRequest(data=frame, params=None)
        return parse_decoded(decoded, self.input_schema)

    def _fast_frame(self, decoded: dict[str, Any]) -> Any:
        import numpy as np
        import pandas as pd

        columns = self.columns
        assert columns is not None
        if "dataframe_split" in decoded:
            split = decoded["dataframe_split"]
            if not isinstance(split, dict) or split.get("columns") != columns or set(split) - {"columns", "data", "index"}:
                return None
            rows = split.get("data")
        elif "dataframe_records" in decoded:
            records = decoded["dataframe_records"]
            if not isinstance(records, list) or not records:
                return None
            try:
                if any(len(record) != len(columns) for record in records):
                    return None
                rows = [[record[name] for name in columns] for record in records]
            except (KeyError, TypeError):
                return None
        else:
            return None
        try:
            array = np.asarray(rows, dtype=self.dtype)
        except (ValueError, TypeError):
            return None
        if array.ndim != 2 or array.shape[1] != len(columns) or array.shape[0] == 0:
            return None
        return pd.DataFrame(array, columns=columns)


def decode_request(body: bytes) -> dict[str, Any]:
    """The JSON object of a scoring request, with exactly one payload key."""
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(decoded, dict):
        raise BadRequest(f"request body must be a JSON object with one of {', '.join(PAYLOAD_KEYS)}")
    keys = [key for key in PAYLOAD_KEYS if key in decoded]
    if len(keys) != 1:
        raise BadRequest(f"request must have exactly one of {', '.join(PAYLOAD_KEYS)}; got keys {sorted(decoded)}")
    unexpected = set(decoded) - set(PAYLOAD_KEYS) - {"params"}
    if unexpected:
        raise BadRequest(f"unexpected keys in request: {', '.join(sorted(unexpected))}")
    params = decoded.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadRequest("'params' must be a JSON object")
    return decoded


def parse_decoded(decoded: dict[str, Any], input_schema: Any) -> ParsedRequest:
    """MLflow's own parsing of a decoded request against the signature."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    keys = [key for key in PAYLOAD_KEYS if key in decoded]
    params = decoded.get("params")
    try:
        data = infer_and_parse_data({keys[0]: decoded[keys[0]]}, input_schema)
    except MlflowException as exc:
        raise BadRequest(_first_line(exc.message)) from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise BadRequest(f"cannot read {keys[0]}: {exc}") from exc
    return ParsedRequest(data=data, params=params)


def parse_payload(body: bytes, input_schema: Any) -> ParsedRequest:
    """Decode an MLflow scoring request body (JSON) into model input."""
    return parse_decoded(decode_request(body), input_schema)


def predict(model: Any, data: Any, params: dict[str, Any] | None) -> Any:
    """Score with the signature enforced; input errors become BadRequest."""
    from mlflow.exceptions import MlflowException

    try:
        return model.predict(data, params=params) if params else model.predict(data)
    except MlflowException as exc:
        status = exc.get_http_status_code()
        if 400 <= status < 500:
            raise BadRequest(_first_line(exc.message), 422 if status == 400 else status) from exc
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise BadRequest(f"input does not fit the model: {_first_line(str(exc))}", 422) from exc


def predictions_json(predictions: Any) -> bytes:
    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = io.StringIO()
    predictions_to_json(predictions, out)
    return out.getvalue().encode()


def _first_line(message: str) -> str:
    message = str(message)
    if message.startswith("Failed to enforce schema") and "Error: " in message:
        # MLflow embeds the whole input frame before the reason; the reason is what helps.
        message = "input does not match the model signature: " + message.split("Error: ", 1)[1]
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return " ".join(lines[:3])[:500] if lines else "invalid input"
