"""ClusterAccess talks to the dashboard over one kept-alive connection; the batch driver submits and
stops jobs whose working directory is already on the cluster over the same REST API.

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

REFUSAL = "No available agent to submit job, please try again later."
TRACEBACK = ("Traceback (most recent call last):\n  File \"job_head.py\", line 1, in submit_job\n"
             "ValueError: Job with submission_id score-r1-abc already exists.\n")


class _Dashboard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections open, as Ray's dashboard does
    peers: ClassVar[list[tuple[str, int]]] = []  # each test's subclass gets a list of its own
    posted: ClassVar[list[tuple[str, dict[str, object]]]] = []
    refusals: ClassVar[list[int]] = [0]  # how many job submissions to refuse first, as a starting head does

    def do_GET(self) -> None:
        self.peers.append(self.client_address[:2])
        status, body = (200, json.dumps({"path": self.path}).encode()) if self.path != "/missing" else (404, b"no")
        self._answer(status, body)

    def do_POST(self) -> None:
        self.peers.append(self.client_address[:2])
        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.posted.append((self.path, sent))
        if self.path == "/api/jobs/" and self.refusals[0] > 0:
            self.refusals[0] -= 1
            self._answer(500, REFUSAL.encode())
        elif self.path == "/api/jobs/" and sent.get("submission_id") == "score-r1-abc":
            self._answer(400, TRACEBACK.encode())
        elif self.path == "/api/jobs/":
            self._answer(200, json.dumps({"submission_id": sent["submission_id"], "job_id": None}).encode())
        elif self.path.endswith("/stop") and "missing" not in self.path:
            self._answer(200, json.dumps({"stopped": True}).encode())
        else:
            self._answer(404, f"Job {self.path.split('/')[3]} does not exist".encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dashboard() -> Iterator[tuple[str, type[_Dashboard]]]:
    """The dashboard's URL, and its handler class, which records what it was sent."""
    handler = type("Handler", (_Dashboard,), {"peers": [], "posted": [], "refusals": [0]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _settings(root: Path, dashboard_url: str) -> Settings:
    return Settings(root=root, project="demo", specs=root / "specs", ray_address="127.0.0.1:6379",
                    ray_dashboard_url=dashboard_url, http_host="127.0.0.1", http_port=8000,
                    ray_num_cpus=None, tracking_uri="sqlite:///x.db", registry_uri=None, state_url="sqlite:///state.db")


def _access(root: Path, dashboard_url: str) -> ClusterAccess:
    return ClusterAccess(_settings(root, dashboard_url))


def test_reads_share_one_connection(tmp_path: Path, dashboard: tuple[str, type[_Dashboard]]) -> None:
    url, handler = dashboard
    access = _access(tmp_path, url)

    answers = [access.get_json(f"/api/jobs/{n}") for n in range(5)]

    assert answers == [{"path": f"/api/jobs/{n}"} for n in range(5)]
    assert len(handler.peers) == 5
    assert len(set(handler.peers)) == 1, f"each read opened its own connection: {handler.peers}"


def test_an_error_answer_names_the_path_and_the_next_read_still_works(
        tmp_path: Path, dashboard: tuple[str, type[_Dashboard]]) -> None:
    url, _ = dashboard
    access = _access(tmp_path, url)

    with pytest.raises(DriverError, match="answered 404 for /missing"):
        access.get_json("/missing")
    assert access.get_json("/api/version") == {"path": "/api/version"}


def test_a_post_sends_json_over_the_same_connection(tmp_path: Path,
                                                     dashboard: tuple[str, type[_Dashboard]]) -> None:
    url, handler = dashboard
    access = _access(tmp_path, url)

    access.get_json("/api/version")
    answer = access.post_json("/api/jobs/", {"entrypoint": "python -m x", "submission_id": "s-1"})

    assert answer == {"submission_id": "s-1", "job_id": None}
    assert len(set(handler.peers)) == 1


def test_a_traceback_answer_reads_as_its_last_line(tmp_path: Path, dashboard: tuple[str, type[_Dashboard]]) -> None:
    url, _ = dashboard
    access = _access(tmp_path, url)

    with pytest.raises(DriverError) as raised:
        access.post_json("/api/jobs/", {"entrypoint": "python -m x", "submission_id": "score-r1-abc"})

    assert str(raised.value).endswith("answered 400 for /api/jobs/: "
                                      "ValueError: Job with submission_id score-r1-abc already exists.")
    assert "\n" not in str(raised.value)


def _job(working_dir: str) -> dict[str, object]:
    return {"entrypoint": "python -m runtime.batch_job e30=", "submission_id": "score-r2-def",
            "runtime_env": {"working_dir": working_dir}, "metadata": {"owner": "mlopsfile", "resource": "deployment/score"}}


def test_a_job_whose_working_dir_is_on_the_cluster_is_one_post(
        tmp_path: Path, dashboard: tuple[str, type[_Dashboard]], monkeypatch: pytest.MonkeyPatch) -> None:
    from mlopsfile.drivers import batch

    url, handler = dashboard
    driver = batch.BatchDriver(_settings(tmp_path, url))
    monkeypatch.setattr(batch.time, "sleep", lambda _: None)
    handler.refusals[0] = 2  # a head whose job agent is still starting refuses a while

    job_id = driver._submit("score", **_job("local:///srv/runtime/0123"))

    assert job_id == "score-r2-def"
    jobs = [body for path, body in handler.posted if path == "/api/jobs/"]
    assert len(jobs) == 3
    assert jobs[-1] == _job("local:///srv/runtime/0123")


def test_stopping_a_job_is_a_post_and_a_missing_job_is_a_driver_error(
        tmp_path: Path, dashboard: tuple[str, type[_Dashboard]]) -> None:
    from mlopsfile.drivers.batch import BatchDriver

    url, handler = dashboard
    driver = BatchDriver(_settings(tmp_path, url))

    driver.stop("score-r2-def")
    with pytest.raises(DriverError, match=r"cannot stop job missing-1: .*Job missing-1 does not exist"):
        driver.stop("missing-1")
    assert [path for path, _ in handler.posted] == ["/api/jobs/score-r2-def/stop", "/api/jobs/missing-1/stop"]
