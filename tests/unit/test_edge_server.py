"""runtime/edge: real ONNX models (made here with skl2onnx) scored by EdgeModel and served over HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from runtime.edge.predictor import EdgeModel, ModelError, cast
from runtime.edge.server import MAX_BODY_BYTES, EdgeHTTPServer, build_server
from runtime.scoring import BadRequest

REPO = Path(__file__).resolve().parents[2]
IRIS = load_iris()
COLUMNS: list[str] = list(IRIS.feature_names)
X: np.ndarray = IRIS.data
ROWS = X[::10]  # 15 rows, every class


@dataclass(frozen=True)
class Case:
    """An edge model directory and the scikit-learn model it was converted from."""

    path: Path
    model: Any

    def expected(self, rows: np.ndarray) -> list[Any]:
        return self.model.predict(rows).tolist()


def write_model_dir(directory: Path, onnx_bytes: bytes, spec_in: dict[str, Any], spec_out: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(onnx_bytes)
    manifest = {
        "format": "mlopsfile-edge/v1",
        "model": {"name": "iris", "version": "3", "uri": "models:/iris/3", "digest": "sha256:" + "ab" * 32},
        "onnx": {"sha256": hashlib.sha256(onnx_bytes).hexdigest(), "opset": 17, "quantized": False,
                 "flavor": "sklearn"},
        "input": spec_in,
        "output": spec_out,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2), encoding="utf-8")
    return directory


def classifier_case(directory: Path, targets: np.ndarray) -> Case:
    classifier = LogisticRegression(max_iter=500)
    pipeline = Pipeline([("scale", StandardScaler()), ("classify", classifier)]).fit(X, targets)
    onx = to_onnx(pipeline, initial_types=[("input", FloatTensorType([None, 4]))],
                  options={id(classifier): {"zipmap": False}}, target_opset=17)
    spec_in = {"kind": "columns", "onnx_name": "input", "dtype": "float32",
               "columns": [{"name": name, "type": "double"} for name in COLUMNS]}
    spec_out = {"kind": "label", "onnx_name": "label", "squeeze": False}
    return Case(write_model_dir(directory, onx.SerializeToString(), spec_in, spec_out), pipeline)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Case:
    return classifier_case(tmp_path_factory.mktemp("classifier"), IRIS.target)


@pytest.fixture(scope="module")
def named_classifier(tmp_path_factory: pytest.TempPathFactory) -> Case:
    return classifier_case(tmp_path_factory.mktemp("named"), IRIS.target_names[IRIS.target])


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """Petal width from the other three measurements, served as a tensor model."""
    model = LinearRegression().fit(X[:, :3], X[:, 3])
    onx = to_onnx(model, initial_types=[("input", FloatTensorType([None, 3]))], target_opset=17)
    spec_in = {"kind": "tensor", "onnx_name": "input", "dtype": "float32", "shape": [-1, 3]}
    spec_out = {"kind": "value", "onnx_name": "variable", "squeeze": True}
    return Case(write_model_dir(tmp_path_factory.mktemp("regressor"), onx.SerializeToString(), spec_in, spec_out),
                model)


@pytest.fixture(scope="module")
def iris_model(classifier: Case) -> EdgeModel:
    return EdgeModel(classifier.path)


def records(rows: np.ndarray, columns: list[str] = COLUMNS) -> list[dict[str, float]]:
    return [dict(zip(columns, row.tolist(), strict=True)) for row in rows]


def column_lists(rows: np.ndarray) -> dict[str, list[float]]:
    return {name: rows[:, index].tolist() for index, name in enumerate(COLUMNS)}


# -- the predictor ---------------------------------------------------------------------

PAYLOADS: dict[str, Callable[[np.ndarray], dict[str, Any]]] = {
    "dataframe_split": lambda rows: {"dataframe_split": {"columns": COLUMNS, "data": rows.tolist()}},
    "dataframe_split with index": lambda rows: {
        "dataframe_split": {"index": list(range(len(rows))), "columns": COLUMNS, "data": rows.tolist()}},
    "dataframe_records": lambda rows: {"dataframe_records": records(rows)},
    "inputs records": lambda rows: {"inputs": records(rows)},
    "instances records": lambda rows: {"instances": records(rows)},
    "inputs column lists": lambda rows: {"inputs": column_lists(rows)},
    "instances column lists": lambda rows: {"instances": column_lists(rows)},
    "reordered split": lambda rows: {
        "dataframe_split": {"columns": COLUMNS[::-1], "data": rows[:, ::-1].tolist()}},
    "reordered records": lambda rows: {"dataframe_records": records(rows[:, ::-1], COLUMNS[::-1])},
}


@pytest.mark.parametrize("form", PAYLOADS)
def test_every_payload_form_gives_sklearn_labels(form: str, iris_model: EdgeModel, classifier: Case) -> None:
    predictions = iris_model.predict(PAYLOADS[form](ROWS))
    assert predictions == classifier.expected(ROWS)
    assert all(type(label) is int for label in predictions)


def test_all_rows_match_sklearn(iris_model: EdgeModel, classifier: Case) -> None:
    assert iris_model.predict(PAYLOADS["dataframe_split"](X)) == classifier.expected(X)


def test_string_labels_stay_strings(named_classifier: Case) -> None:
    predictions = EdgeModel(named_classifier.path).predict({"dataframe_records": records(ROWS)})
    assert predictions == named_classifier.expected(ROWS)
    assert {type(label) for label in predictions} == {str}


def test_one_scalar_per_column_is_one_row(iris_model: EdgeModel, classifier: Case) -> None:
    payload = {"inputs": dict(zip(COLUMNS, X[100].tolist(), strict=True))}
    assert iris_model.predict(payload) == classifier.expected(X[100:101])


def test_payloads_built_from_a_pandas_frame(iris_model: EdgeModel, classifier: Case) -> None:
    import pandas as pd

    frame = pd.DataFrame(ROWS, columns=COLUMNS)
    assert iris_model.predict({"dataframe_split": frame.to_dict(orient="split")}) == classifier.expected(ROWS)
    assert iris_model.predict({"dataframe_records": frame.to_dict(orient="records")}) == classifier.expected(ROWS)
    assert iris_model.predict({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}) == classifier.expected(ROWS)


def test_no_rows_no_predictions(iris_model: EdgeModel) -> None:
    assert iris_model.predict({"dataframe_split": {"columns": COLUMNS, "data": []}}) == []
    assert iris_model.predict({"dataframe_records": []}) == []


def test_predict_body_answers_like_mlflow(iris_model: EdgeModel, classifier: Case) -> None:
    body = json.dumps(PAYLOADS["dataframe_split"](ROWS)).encode()
    assert json.loads(iris_model.predict_body(body)) == {"predictions": classifier.expected(ROWS)}


ROW = X[0].tolist()
BAD_REQUESTS: list[tuple[dict[str, Any], int, str]] = [
    ({"dataframe_split": {"columns": COLUMNS[:3], "data": [ROW[:3]]}}, 400, "missing input column"),
    ({"dataframe_split": {"columns": [*COLUMNS, "colour"], "data": [[*ROW, 1.0]]}}, 400, "unknown input column"),
    ({"dataframe_split": {"columns": [*COLUMNS, COLUMNS[0]], "data": [[*ROW, 1.0]]}}, 400, "duplicate"),
    ({"dataframe_split": {"data": [ROW]}}, 400, "needs 'columns'"),
    ({"dataframe_split": [ROW]}, 400, "must be an object"),
    ({"dataframe_records": [{**records(X[:1])[0], "colour": 1.0}]}, 400, "unknown input column(s): 'colour'"),
    ({"dataframe_records": [records(X[:1])[0], {COLUMNS[0]: 1.0}]}, 400, "missing input column"),
    ({"dataframe_records": [ROW]}, 400, "list of records"),
    ({"inputs": [ROW]}, 400, "list of records"),
    ({"instances": {**column_lists(X[:2]), "colour": [1, 2]}}, 400, "unknown input column"),
    ({"inputs": 3}, 400, "list of records"),
    ({"foo": 1}, 400, "exactly one of"),
    ({"inputs": [], "instances": []}, 400, "exactly one of"),
    ({"dataframe_split": {"columns": COLUMNS, "data": [["x", 1, 2, 3]]}}, 422, "does not cast to float32"),
    ({"dataframe_records": [{**records(X[:1])[0], COLUMNS[2]: "tall"}]}, 422, "does not cast to float32"),
    ({"inputs": {**column_lists(X[:1]), COLUMNS[1]: [{"a": 1}]}}, 422, "does not cast"),
    ({"dataframe_split": {"columns": COLUMNS, "data": [ROW, ROW[:3]]}}, 422, "does not cast"),
    ({"dataframe_split": {"columns": COLUMNS, "data": [ROW[:3]]}}, 422, "rows of 4 values"),
    ({"inputs": {**column_lists(X[:2]), COLUMNS[0]: [1.0]}}, 422, "does not cast"),
]


@pytest.mark.parametrize(("payload", "status", "message"), BAD_REQUESTS)
def test_bad_requests_are_told_apart(payload: dict[str, Any], status: int, message: str,
                                     iris_model: EdgeModel) -> None:
    with pytest.raises(BadRequest) as caught:
        iris_model.predict(payload)
    assert caught.value.status == status
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_body_that_is_not_json_is_a_400(iris_model: EdgeModel) -> None:
    with pytest.raises(BadRequest) as caught:
        iris_model.predict_body(b"{not json")
    assert caught.value.status == 400


def test_regression_values_match_sklearn(regressor: Case) -> None:
    model = EdgeModel(regressor.path)
    rows = X[::7, :3]
    for payload in ({"inputs": rows.tolist()}, {"instances": {"input": rows.tolist()}},
                    {"dataframe_split": {"columns": ["a", "b", "c"], "data": rows.tolist()}}):
        predictions = model.predict(payload)
        assert all(type(value) is float for value in predictions)  # squeezed: one float per row
        np.testing.assert_allclose(predictions, regressor.expected(rows), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("payload", "status"), [
    ({"inputs": [[1.0, 2.0]]}, 422),
    ({"inputs": [1.0, 2.0, 3.0]}, 422),
    ({"inputs": [[[1.0, 2.0, 3.0]]]}, 422),
    ({"inputs": [["a", 2.0, 3.0]]}, 422),
    ({"dataframe_records": [{"a": 1.0}]}, 400),
    ({"inputs": {"a": [[1.0, 2.0, 3.0]], "b": [[1.0, 2.0, 3.0]]}}, 400),
])
def test_tensor_shape_and_type_are_checked(payload: dict[str, Any], status: int, regressor: Case) -> None:
    with pytest.raises(BadRequest) as caught:
        EdgeModel(regressor.path).predict(payload)
    assert caught.value.status == status


def test_integer_and_boolean_casts_refuse_what_numpy_would_bend() -> None:
    assert cast([[1, 2], [3.0, 4.0]], np.dtype("int64"), "inputs").tolist() == [[1, 2], [3, 4]]
    for values, dtype in (([1.5], "int64"), (["x"], "int32"), (["yes"], "bool"), ([1], "bool"), ([None], "int64")):
        with pytest.raises(BadRequest) as caught:
            cast(values, np.dtype(dtype), "inputs")
        assert caught.value.status == 422


def test_metadata_describes_the_model(iris_model: EdgeModel, classifier: Case) -> None:
    meta = iris_model.metadata()
    manifest = json.loads((classifier.path / "manifest.json").read_text())
    assert meta["model_name"] == "iris" and meta["model_version"] == "3"
    assert meta["model_uri"] == "models:/iris/3"
    assert meta["model_digest"] == manifest["model"]["digest"]
    assert meta["onnx_sha256"] == hashlib.sha256((classifier.path / "model.onnx").read_bytes()).hexdigest()
    assert meta["quantized"] is False
    assert [c["name"] for c in meta["input"]["columns"]] == COLUMNS
    assert iris_model.manifest == manifest


def copy_dir(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("model.onnx", "manifest.json"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def edit_manifest(directory: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    edit(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_tampered_model_is_refused(classifier: Case, tmp_path: Path) -> None:
    directory = copy_dir(classifier.path, tmp_path / "model")
    with (directory / "model.onnx").open("ab") as onnx_file:
        onnx_file.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        EdgeModel(directory)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(format="mlopsfile-edge/v0"), "format"),
    (lambda m: m["input"].update(onnx_name="features"), "no input 'features'"),
    (lambda m: m["output"].update(onnx_name="scores"), "no output 'scores'"),
    (lambda m: m["input"].update(dtype="float64"), "tensor(float)"),
    (lambda m: m["input"].update(kind="image"), "kind"),
    (lambda m: m["input"].pop("columns"), "columns"),
])
def test_inconsistent_manifest_is_refused(edit: Callable[[dict[str, Any]], None], message: str,
                                          classifier: Case, tmp_path: Path) -> None:
    directory = copy_dir(classifier.path, tmp_path / "model")
    edit_manifest(directory, edit)
    with pytest.raises(ModelError, match=re.escape(message)):
        EdgeModel(directory)


def test_threads_come_from_the_environment(classifier: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPSFILE_EDGE_THREADS", "2")
    assert EdgeModel(classifier.path).threads == 2
    monkeypatch.setenv("MLOPSFILE_EDGE_THREADS", "many")
    with pytest.raises(ModelError, match="MLOPSFILE_EDGE_THREADS"):
        EdgeModel(classifier.path)


# -- the HTTP server (in a thread) -------------------------------------------------------


@pytest.fixture(scope="module")
def server(iris_model: EdgeModel) -> Iterator[EdgeHTTPServer]:
    edge = build_server(iris_model, "127.0.0.1", 0)
    thread = threading.Thread(target=edge.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield edge
    edge.shutdown()
    edge.server_close()
    thread.join(5)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    return Reply(response.status, response.headers, response.read())


@pytest.fixture
def connection(server: EdgeHTTPServer) -> Iterator[http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    yield conn
    conn.close()


def split_body(rows: np.ndarray) -> bytes:
    return json.dumps(PAYLOADS["dataframe_split"](rows)).encode()


@pytest.mark.parametrize("path", ["/predict", "/invocations"])
def test_scoring_routes(path: str, connection: http.client.HTTPConnection, classifier: Case) -> None:
    reply = call(connection, "POST", path, split_body(ROWS))
    assert reply.status == 200
    assert reply.json() == {"predictions": classifier.expected(ROWS)}
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-model-name"] == "iris"
    assert reply.headers["x-model-version"] == "3"


def test_health_and_metadata(connection: http.client.HTTPConnection, iris_model: EdgeModel) -> None:
    health = call(connection, "GET", "/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    metadata = call(connection, "GET", "/metadata")
    assert (metadata.status, metadata.json()) == (200, iris_model.metadata())
    head = call(connection, "HEAD", "/healthz")
    assert (head.status, head.body) == (200, b"")


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("GET", "/nowhere", None, 404, "no such endpoint '/nowhere'"),
    ("GET", "/predict", None, 405, "use POST for /predict"),
    ("POST", "/healthz", b"{}", 405, "use GET or HEAD for /healthz"),
    ("POST", "/predict", b"{not json", 400, "not valid JSON"),
    ("POST", "/predict", b'{"dataframe_records": [{"colour": 1}]}', 400, "missing input column"),
    ("POST", "/invocations", json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [["x", 1, 2, 3]]}}).encode(),
     422, "does not cast"),
])
def test_errors_are_json(method: str, path: str, body: bytes | None, status: int, message: str,
                         connection: http.client.HTTPConnection) -> None:
    reply = call(connection, method, path, body)
    assert reply.status == status
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()
    assert error["error_code"] == "BAD_REQUEST"
    assert message in error["message"]
    if status == 405:
        assert reply.headers["allow"] in ("POST", "GET, HEAD")


def test_wrong_content_type_is_a_415(connection: http.client.HTTPConnection) -> None:
    reply = call(connection, "POST", "/predict", split_body(ROWS), {"Content-Type": "text/csv"})
    assert reply.status == 415


def test_body_over_the_limit_is_a_413_without_reading_it(server: EdgeHTTPServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert response.headers["connection"] == "close"
    assert "limit" in json.loads(response.read())["message"]
    conn.close()


def test_chunked_bodies_are_read(connection: http.client.HTTPConnection, classifier: Case) -> None:
    body = split_body(ROWS)
    chunks = iter([body[:10], body[10:]])
    connection.request("POST", "/predict", body=chunks, encode_chunked=True,
                       headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read()) == {"predictions": classifier.expected(ROWS)}


def test_keep_alive_across_requests_and_client_errors(connection: http.client.HTTPConnection,
                                                      classifier: Case) -> None:
    call(connection, "GET", "/healthz")
    socket_before = connection.sock
    assert socket_before is not None
    for index in range(6):
        if index == 3:
            assert call(connection, "POST", "/predict", b"[1, 2]").status == 400
            continue
        reply = call(connection, "POST", "/predict", split_body(X[index:index + 1]))
        assert reply.status == 200
        assert reply.json()["predictions"] == classifier.expected(X[index:index + 1])
        assert "connection" not in reply.headers
    assert connection.sock is socket_before


def test_unexpected_failure_is_a_500_with_one_line(connection: http.client.HTTPConnection, server: EdgeHTTPServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(body: bytes) -> bytes:
        raise RuntimeError("graph exploded\nat node 7")

    monkeypatch.setattr(server.model, "predict_body", broken)
    reply = call(connection, "POST", "/predict", split_body(ROWS))
    assert reply.status == 500
    assert reply.json() == {"error_code": "INTERNAL_ERROR", "message": "RuntimeError: graph exploded"}
    assert b"Traceback" not in reply.body


def exchange(port: int, request: bytes) -> tuple[int, http.client.HTTPMessage, bytes, bool]:
    """Raw request bytes in; the final status, headers, body and whether the server then hung up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()  # skips any 100 Continue
        body = response.read()
        sock.settimeout(0.2)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return response.status, response.headers, body, closed


SPLIT_ONE = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": X[:1].tolist()}}).encode()
RAW_REQUESTS: list[tuple[str, bytes, int, bool]] = [
    ("bad request line", b"NONSENSE\r\n\r\n", 400, True),
    ("HTTP/2", b"GET /healthz HTTP/2.0\r\n\r\n", 505, True),
    ("HTTP/1.0 closes", b"GET /healthz HTTP/1.0\r\n\r\n", 200, True),
    ("HTTP/1.0 keep-alive", b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, False),
    ("Connection: close", b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, True),
    ("conflicting lengths", b"POST /predict HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, True),
    ("length and chunked", b"POST /predict HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
     400, True),
    ("signed length", b"POST /predict HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}", 400, True),
    ("folded header", b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, True),
    ("expect, too large", b"POST /predict HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 999999999\r\n\r\n",
     413, True),
    ("expect, fine", b"POST /predict HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: "
     + str(len(SPLIT_ONE)).encode() + b"\r\n\r\n" + SPLIT_ONE, 200, False),
]


@pytest.mark.parametrize(("case", "request_bytes", "status", "closes"), RAW_REQUESTS)
def test_raw_protocol_handling(case: str, request_bytes: bytes, status: int, closes: bool,
                               server: EdgeHTTPServer) -> None:
    got_status, headers, body, closed = exchange(server.port, request_bytes)
    assert (got_status, closed) == (status, closes)
    assert headers["content-type"] == "application/json"
    json.loads(body)
    if case == "HTTP/1.0 keep-alive":
        assert headers["connection"] == "keep-alive"


# -- the server process ----------------------------------------------------------------


def start_server(model_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLOPSFILE_EDGE_THREADS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.edge.server", "--model-dir", str(model_dir), "--host", "127.0.0.1",
         "--port", "0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def read_line(stream: Any, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.1)
        if ready:
            return stream.readline()
    raise AssertionError("the server printed nothing in time")


def test_process_serves_then_exits_0_on_sigterm(classifier: Case) -> None:
    process = start_server(classifier.path)
    try:
        started = read_line(process.stderr)
        match = re.search(r"serving model iris version 3 .* on http://127\.0\.0\.1:(\d+)", started)
        assert match, started
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=5)
        for path in ("/invocations", "/predict"):
            reply = call(conn, "POST", path, split_body(ROWS))
            assert (reply.status, reply.json()) == (200, {"predictions": classifier.expected(ROWS)})
        conn.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert process.stderr.read() == ""  # nothing logged per request
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_process_refuses_a_tampered_model(classifier: Case, tmp_path: Path) -> None:
    directory = copy_dir(classifier.path, tmp_path / "model")
    edit_manifest(directory, lambda m: m["onnx"].update(sha256="0" * 64))
    process = start_server(directory)
    _, errors = process.communicate(timeout=20)
    assert process.returncode == 1
    assert "sha256" in errors and "Traceback" not in errors
    assert len(errors.strip().splitlines()) == 1


def test_edge_code_imports_no_mlflow_pandas_or_control_plane() -> None:
    probe = ("import sys, runtime.edge.server; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'pandas', 'mlopsfile', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.strip() == "[]"
