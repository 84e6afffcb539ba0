"""ClusterAccess reads the dashboard over one kept-alive connection.

apply polls a running job's state twice a second; a fresh HTTP client per poll cost about 20 ms of
CPU (it builds a TLS context even for plain http), CPU the job it waits for then lacked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from mlopsfile.config import Settings
from mlopsfile.drivers.ray_cluster import ClusterAccess
from mlopsfile.errors import DriverError


class _Dashboard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections open, as Ray's dashboard does
    peers: ClassVar[list[tuple[str, int]]] = []  # each test's subclass gets a list of its own

    def do_GET(self) -> None:
        self.peers.append(self.client_address[:2])
        status, body = (200, json.dumps({"path": self.path}).encode()) if self.path != "/missing" else (404, b"no")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dashboard() -> Iterator[tuple[str, list[tuple[str, int]]]]:
    peers: ClassVar[list[tuple[str, int]]] = []  # each test's subclass gets a list of its own
    handler = type("Handler", (_Dashboard,), {"peers": peers})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", peers
    finally:
        server.shutdown()
        server.server_close()


def _access(root: Path, dashboard_url: str) -> ClusterAccess:
    return ClusterAccess(Settings(root=root, project="demo", specs=root / "specs", ray_address="127.0.0.1:6379",
                                  ray_dashboard_url=dashboard_url, http_host="127.0.0.1", http_port=8000,
                                  ray_num_cpus=None, tracking_uri="sqlite:///x.db", registry_uri=None,
                                  state_url="sqlite:///state.db"))


def test_reads_share_one_connection(tmp_path: Path, dashboard: tuple[str, list[tuple[str, int]]]) -> None:
    url, peers = dashboard
    access = _access(tmp_path, url)

    answers = [access.get_json(f"/api/jobs/{n}") for n in range(5)]

    assert answers == [{"path": f"/api/jobs/{n}"} for n in range(5)]
    assert len(peers) == 5
    assert len(set(peers)) == 1, f"each read opened its own connection: {peers}"


def test_an_error_answer_names_the_path_and_the_next_read_still_works(
        tmp_path: Path, dashboard: tuple[str, list[tuple[str, int]]]) -> None:
    url, _ = dashboard
    access = _access(tmp_path, url)

    with pytest.raises(DriverError, match="answered 404 for /missing"):
        access.get_json("/missing")
    assert access.get_json("/api/version") == {"path": "/api/version"}
