"""runtime/scoring.py: the fast parsing path gives exactly what MLflow's parser gives, or steps aside."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.types import ColSpec, Schema

from runtime.scoring import BadRequest, RequestParser, parse_payload

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
FLOAT_SCHEMA = Schema([ColSpec("double", name) for name in COLUMNS])
MIXED_SCHEMA = Schema([ColSpec("double", "x"), ColSpec("string", "label")])


def body(payload: object) -> bytes:
    return json.dumps(payload).encode()


GOOD = [
    {"dataframe_split": {"columns": COLUMNS, "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3, 5.2, 2.3]]}},
    {"dataframe_records": [dict(zip(COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))]},
    {"dataframe_records": [dict(zip(COLUMNS, [5, 3, 1, 0], strict=True))]},  # ints are accepted for doubles
    {"dataframe_records": [dict(zip(reversed(COLUMNS), [0.2, 1.4, 3.5, 5.1], strict=True))]},
]


@pytest.mark.parametrize("payload", GOOD)
def test_fast_path_matches_mlflow_parser(payload: dict) -> None:
    fast = RequestParser(FLOAT_SCHEMA).parse(body(payload)).data
    slow = parse_payload(body(payload), FLOAT_SCHEMA).data
    pd.testing.assert_frame_equal(fast, slow[COLUMNS].astype("float64"))
    assert list(fast.dtypes) == ["float64"] * 4


BAD = [
    {"dataframe_split": {"columns": COLUMNS, "data": [["x", 3.5, 1.4, 0.2]]}},
    {"dataframe_records": [{"sepal_length": "x", "sepal_width": 1, "petal_length": 1, "petal_width": 1}]},
    {"dataframe_records": [{"sepal_length": 1.0}]},
    {"dataframe_split": {"columns": ["a"], "data": [[1]]}},
    {"foo": 1},
    [1, 2],
]


@pytest.mark.parametrize("payload", BAD)
def test_rejections_keep_mlflow_messages(payload: object) -> None:
    parser = RequestParser(FLOAT_SCHEMA)
    try:
        parsed = parser.parse(body(payload))
    except BadRequest as fast_error:
        with pytest.raises(BadRequest) as slow_error:
            parse_payload(body(payload), FLOAT_SCHEMA)
        assert str(fast_error) == str(slow_error.value)
        return
    # Anything the fast path let through must be what MLflow's parser produces too.
    slow = parse_payload(body(payload), FLOAT_SCHEMA).data
    assert len(parsed.data) == len(slow)


def test_only_single_float_width_schemas_take_the_fast_path() -> None:
    assert RequestParser(FLOAT_SCHEMA).columns == COLUMNS
    assert RequestParser(MIXED_SCHEMA).columns is None
    assert RequestParser(None).columns is None
    mixed = RequestParser(MIXED_SCHEMA).parse(body({"dataframe_records": [{"x": 1.5, "label": "a"}]})).data
    assert mixed.to_dict("records") == [{"x": 1.5, "label": "a"}]


def test_not_json_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        RequestParser(FLOAT_SCHEMA).parse(b"nope")
