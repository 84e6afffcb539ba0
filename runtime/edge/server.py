"""The HTTP server of an edge container: MLflow scoring requests over HTTP/1.1 with keep-alive.

Routes match the online target and MLflow's scoring server: ``POST /predict`` and
``POST /invocations`` score, ``GET /healthz`` (and ``/``) answer liveness, ``GET /metadata``
describes the model. Every answer is JSON; errors are ``{"error_code", "message"}`` with
a one-line message. Nothing is logged per request. SIGTERM (``docker stop``) and SIGINT
stop accepting connections, let in-flight requests finish and exit 0.

Run: ``python -m runtime.edge.server --model-dir DIR --host H --port P``.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

from runtime.edge.predictor import EdgeModel, ModelError, first_line
from runtime.scoring import BadRequest

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
# Repeats of these would let a proxy and this server disagree on where a request ends.
SINGLE_HEADERS = frozenset({"content-length", "transfer-encoding", "host"})
PREDICT_PATHS = frozenset({"/predict", "/invocations"})
HEALTH_PATHS = frozenset({"/", "/healthz"})
METADATA_PATH = "/metadata"
HEALTH_BODY = b'{"status": "ok"}'
# A keep-alive connection idle this long is closed, so silent clients do not pin threads forever.
IDLE_TIMEOUT_S = 75.0
DRAIN_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.25

MODEL_DIR_ENV = "MLOPSFILE_EDGE_MODEL_DIR"
HOST_ENV = "MLOPSFILE_EDGE_HOST"
PORT_ENV = "MLOPSFILE_EDGE_PORT"
DEFAULT_MODEL_DIR = "/opt/mlopsfile-edge/model"
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8080

Headers = Sequence[tuple[str, str]]


class HttpError(Exception):
    """A request the server answers with an error before (or instead of) scoring it."""

    def __init__(self, status: int, message: str, *, close: bool = False, headers: Headers = ()) -> None:
        super().__init__(message)
        self.status = status
        self.close = close
        self.headers = headers


class RequestHeaders(dict[str, str]):
    """Request header fields by lower-case name; repeated fields are joined with ", "."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


def read_headers(rfile: BinaryIO) -> RequestHeaders:
    """The header section of a request, up to and including its blank line."""
    headers = RequestHeaders()
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise HttpError(431, f"a header line is longer than {MAX_HEADER_LINE} bytes")
        if line in (b"\r\n", b"\n", b""):
            if "content-length" in headers and "transfer-encoding" in headers:
                raise HttpError(400, "a request cannot have both Content-Length and Transfer-Encoding")
            return headers
        name, colon, value = line.decode("iso-8859-1").partition(":")
        # Folded lines and spaces before the colon are obsolete forms RFC 9112 says to reject.
        if not colon or not name or name != name.strip() or " " in name or "\t" in name:
            raise HttpError(400, f"malformed header line {line[:100]!r}")
        key, value = name.lower(), value.strip()
        if key not in headers:
            headers[key] = value
        elif key in SINGLE_HEADERS:
            if headers[key] != value:
                raise HttpError(400, f"conflicting {name} headers")
        else:
            headers[key] = f"{headers[key]}, {value}"
    raise HttpError(431, f"more than {MAX_HEADERS} header fields")


class EdgeHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server holding one model, counting in-flight requests for a graceful stop."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops connection bursts into SYN retries (a second each).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], model: EdgeModel) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.model = model
        self.metadata_body = json.dumps(model.metadata()).encode()
        self.model_headers: Headers = (("x-model-name", header_value(model.name)),
                                       ("x-model-version", header_value(model.version)))
        self.stopping = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, EdgeHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which stalls in a container without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @contextmanager
    def request_scope(self) -> Iterator[None]:
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until no request is being answered; False when ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return  # clients hanging up are routine, not faults
        log(f"connection from {client_address[0]} failed: {type(error).__name__}: {first_line(str(error))}")


class EdgeHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests; responses go out in a single write, headers and body together."""

    protocol_version = "HTTP/1.1"
    server_version = "mlopsfile-edge"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_S
    server: EdgeHTTPServer
    headers: RequestHeaders  # type: ignore[assignment]

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a line per request costs latency and floods the container log."""

    def parse_request(self) -> bool:
        """The request line and headers, by http.server's rules for HTTP/1.0 and 1.1.

        http.server parses headers with the email package, which costs about a third of
        a small scoring request; a plain reader does the same job here.
        """
        self.command = None  # type: ignore[assignment]
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) != 3:
            self.send_error(400, f"bad request line {self.requestline[:100]!r}")
            return False
        command, path, version = words
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            supported = "HTTP/1.0 and HTTP/1.1"
            self.send_error(505 if version.startswith("HTTP/") else 400,
                            f"unsupported protocol {version[:20]!r}; this server speaks {supported}")
            return False
        self.command, self.path, self.request_version = command, path, version
        try:
            self.headers = read_headers(self.rfile)
        except HttpError as exc:
            self.send_error(exc.status, str(exc))
            return False
        tokens = {token.strip() for token in self.headers.get("connection", "").lower().split(",")}
        self.close_connection = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        if version == "HTTP/1.1" and self.headers.get("expect", "").lower() == "100-continue":
            return self.handle_expect_100()
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Reached for requests too malformed to route; answer in JSON like everything else.
        self.close_connection = True
        self._send(code, error_body(message or HTTPStatus(code).phrase, code), ())

    def handle_expect_100(self) -> bool:
        try:
            self._content_length()
        except HttpError as exc:
            self.close_connection = True
            self._send(exc.status, error_body(str(exc), exc.status), exc.headers)
            return False
        return super().handle_expect_100()

    def _dispatch(self) -> None:
        self._body_read = False
        with self.server.request_scope():
            try:
                status, body, headers = self._route()
            except HttpError as exc:
                status, body, headers = exc.status, error_body(str(exc), exc.status), exc.headers
                self.close_connection = self.close_connection or exc.close
            except Exception as exc:
                message = f"{type(exc).__name__}: {first_line(str(exc))}"
                log(f"{self.command} {self.path} failed: {message}")
                status, body, headers = 500, error_body(message, 500), ()
            if not self._body_read and self._has_body():
                self.close_connection = True  # the unread body would be parsed as the next request
            self._send(status, body, headers)

    def _route(self) -> tuple[int, bytes, Headers]:
        path = self.path.split("?", 1)[0]
        if path in PREDICT_PATHS:
            self._allow(path, "POST")
            return self._predict()
        if path in HEALTH_PATHS:
            self._allow(path, "GET", "HEAD")
            return 200, HEALTH_BODY, ()
        if path == METADATA_PATH:
            self._allow(path, "GET", "HEAD")
            return 200, self.server.metadata_body, ()
        raise HttpError(404, f"no such endpoint {path!r}; POST to /predict or /invocations")

    def _allow(self, path: str, *methods: str) -> None:
        if self.command not in methods:
            allowed = ", ".join(methods)
            raise HttpError(405, f"use {' or '.join(methods)} for {path}", headers=(("Allow", allowed),))

    def _predict(self) -> tuple[int, bytes, Headers]:
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type not in ("", "application/json"):
            raise HttpError(415, f"unsupported content type {content_type!r}; send application/json",
                            headers=self.server.model_headers)
        body = self._read_body()
        try:
            return 200, self.server.model.predict_body(body), self.server.model_headers
        except BadRequest as exc:
            return exc.status, error_body(str(exc), exc.status), self.server.model_headers

    # -- request bodies -------------------------------------------------------------

    def _has_body(self) -> bool:
        return bool(self.headers.get("Transfer-Encoding")) or self.headers.get("Content-Length", "0").strip() != "0"

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        # int() would also take "+5", " 5" and "1_000", which other parsers on the path may not.
        if not (raw.isascii() and raw.isdigit()):
            raise HttpError(400, f"invalid Content-Length {raw[:40]!r}", close=True)
        length = int(raw)
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"request body of {length} bytes is over the limit of {MAX_BODY_BYTES}",
                            close=True)
        return length

    def _read_body(self) -> bytes:
        encoding = self.headers.get("Transfer-Encoding", "").strip().lower()
        if encoding == "chunked":
            body = self._read_chunked()
        elif encoding:
            raise HttpError(501, f"unsupported Transfer-Encoding {encoding!r}", close=True)
        else:
            length = self._content_length() or 0
            body = self.rfile.read(length)
            if len(body) < length:
                raise HttpError(400, "request body ended before Content-Length bytes", close=True)
        self._body_read = True
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "malformed chunked request body", close=True) from None
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise HttpError(413, f"request body is over the limit of {MAX_BODY_BYTES} bytes", close=True)
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise HttpError(400, "malformed chunked request body", close=True)
            chunks.append(chunk)
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields carry nothing the server uses
        return b"".join(chunks)

    # -- responses ------------------------------------------------------------------

    def _send(self, status: int, body: bytes, headers: Headers) -> None:
        if self.server.stopping.is_set():
            self.close_connection = True  # move keep-alive clients off a server that is going away
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {http_date()}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if getattr(self, "command", None) == "HEAD" else head + body)


def error_body(message: str, status: int) -> bytes:
    code = "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
    return json.dumps({"error_code": code, "message": first_line(message)}).encode()


_date: tuple[int, str] = (-1, "")


def http_date() -> str:
    """The Date header, formatted at most once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


def header_value(text: str) -> str:
    """``text`` safe for an HTTP header: latin-1, no control characters."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return cleaned.encode("latin-1", "replace").decode("latin-1")


def log(message: str) -> None:
    print(f"mlopsfile-edge: {message}", file=sys.stderr, flush=True)


def build_server(model: EdgeModel, host: str, port: int) -> EdgeHTTPServer:
    """A server bound to ``host:port`` (0 picks a free port), not yet serving."""
    return EdgeHTTPServer((host, port), model)


def serve(server: EdgeHTTPServer, drain_timeout: float = DRAIN_TIMEOUT_S) -> None:
    """Serve until SIGTERM or SIGINT, then let in-flight requests finish. Call from the main thread."""

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stopping.set()
        # shutdown() waits for serve_forever, which this very thread runs: ask from another one.
        threading.Thread(target=server.shutdown, name="edge-shutdown", daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever(poll_interval=POLL_INTERVAL_S)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stopping.set()
        if not server.drain(drain_timeout):
            log(f"stopped with requests still in flight after {drain_timeout:g}s")
        server.server_close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime.edge.server",
                                     description="Serve an edge model directory (model.onnx + manifest.json).")
    parser.add_argument("--model-dir", type=Path, default=os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR,
                        help=f"the model directory (env {MODEL_DIR_ENV}, default {DEFAULT_MODEL_DIR})")
    parser.add_argument("--host", default=os.environ.get(HOST_ENV) or DEFAULT_HOST,
                        help=f"address to listen on (env {HOST_ENV}, default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=os.environ.get(PORT_ENV) or DEFAULT_PORT,
                        help=f"port to listen on, 0 for any free one (env {PORT_ENV}, default {DEFAULT_PORT})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = EdgeModel(args.model_dir)
    except ModelError as exc:
        log(f"cannot serve {args.model_dir}: {exc}")
        return 1
    try:
        server = build_server(model, args.host, args.port)
    except OSError as exc:
        log(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1
    host = f"[{args.host}]" if ":" in args.host else args.host
    log(f"serving model {model.name} version {model.version} ({model.metadata()['model_uri']}) "
        f"on http://{host}:{server.port} with {model.threads} onnxruntime thread(s)")
    serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
