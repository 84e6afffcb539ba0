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
    rows: int | None


def parse_payload(body: bytes, input_schema: Any) -> ParsedRequest:
    """Decode an MLflow scoring request body (JSON) into model input."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

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
    try:
        data = infer_and_parse_data({keys[0]: decoded[keys[0]]}, input_schema)
    except MlflowException as exc:
        raise BadRequest(_first_line(exc.message)) from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise BadRequest(f"cannot read {keys[0]}: {exc}") from exc
    return ParsedRequest(data=data, params=params, rows=len(data) if hasattr(data, "__len__") else None)


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
